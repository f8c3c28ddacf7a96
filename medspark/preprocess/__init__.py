"""Pure image preprocessing (numpy / OpenCV / scikit-image), no Spark.

Steps are `f(image, spacing, **params) -> (image, spacing)`: `geometry` (resize, resample,
crop, pad, rotate, flip; dtype kept, spacing updated), `intensity` (window, normalise,
equalise; float32 out), `filters` (denoise, sharpen; float32 out) and `augment` (seeded
random variants). `pipeline` validates a YAML list of steps into a `Pipeline` whose `apply`
runs them on (image, spacing, mask). See docs/preprocess.md.
"""

from medspark.preprocess._common import Spacing

# the function augment() stays in its module: re-exporting it would hide the module
from medspark.preprocess.augment import Augmented, augment_once, augment_seed
from medspark.preprocess.pipeline import (
    STEPS,
    AugmentConfig,
    Pipeline,
    PipelineConfigError,
    ProcessingConfig,
    StepError,
    StepSpec,
    list_steps,
    register_step,
)

__all__ = [
    "STEPS",
    "AugmentConfig",
    "Augmented",
    "Pipeline",
    "PipelineConfigError",
    "ProcessingConfig",
    "Spacing",
    "StepError",
    "StepSpec",
    "augment_once",
    "augment_seed",
    "list_steps",
    "register_step",
]
