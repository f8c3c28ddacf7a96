"""The pipeline step registry and the validated YAML pipeline, above `medspark.preprocess` and
`medspark.segment`.

Those two packages hold the pure step functions and import neither this package nor each
other's registry; this one registers their functions by name (`registry.py`) with one strict
pydantic parameter model each (`params.py`), and `pipeline.py` validates a YAML list of steps
into a `Pipeline` whose `apply` runs them on (image, spacing, mask). See docs/preprocess.md.
"""

from medspark.steps.params import AugmentConfig, Params
from medspark.steps.pipeline import (
    PIPELINE_FORMAT,
    Pipeline,
    PipelineConfigError,
    ProcessingConfig,
    StepError,
)
from medspark.steps.registry import SEGMENT_KINDS, STEPS, StepSpec, list_steps, register_step

__all__ = [
    "PIPELINE_FORMAT",
    "SEGMENT_KINDS",
    "STEPS",
    "AugmentConfig",
    "Params",
    "Pipeline",
    "PipelineConfigError",
    "ProcessingConfig",
    "StepError",
    "StepSpec",
    "list_steps",
    "register_step",
]
