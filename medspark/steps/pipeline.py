"""Validated image-processing pipelines built from YAML: an ordered list of steps.

A step is written `{step: NAME, PARAM: VALUE, ...}` (also `{NAME: {PARAM: VALUE}}` or just
`NAME`). Names resolve through `STEPS` (`registry.py`), a registry of pure functions and their
pydantic parameter models (`params.py`); unknown steps and unknown or mistyped parameters are
rejected before any pixel is touched, with one message line per problem naming the step index,
name and parameter.

`Pipeline.apply(image, spacing, mask)` threads (image, spacing, mask) through the steps:
geometry steps move the mask with nearest-neighbour, segmentation steps create or refine it,
intensity and filter steps may compute their statistics inside it. `Pipeline.hash()` is a
sha256 of the canonical JSON of the validated steps (defaults filled in, key order irrelevant),
suitable for naming cached outputs. Nothing here imports Spark: a Spark job validates the
configuration on the driver and applies the same Pipeline object inside its tasks.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import core_schema

from medspark.image import Spacing, check_image, check_spacing
from medspark.segment import morphology
from medspark.steps.params import AugmentConfig, Params
from medspark.steps.registry import PIPELINE_PARAMS, SEGMENT_KINDS, STEPS, StepSpec

PIPELINE_FORMAT = 1
"""Bumped when a step's behaviour changes, so hashes of old outputs stop matching."""


class PipelineConfigError(ValueError):
    """An invalid pipeline configuration; the message lists every problem, one per line."""


class StepError(ValueError):
    """A step failed on one image; names the step so the Spark layer can report it."""

    def __init__(self, message: str, index: int, step: str):
        super().__init__(message)
        self.index, self.step = index, step

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the extra arguments
        return (type(self), (str(self), self.index, self.step))


# ------------------------------------------------------------------------------ validation

def _fmt_param_errors(err: ValidationError, params: type[Params]) -> list[str]:
    """One line per parameter from a pydantic error (union alternatives merged)."""
    by_param: dict[str, list[str]] = {}
    order: list[str] = []
    for e in err.errors(include_url=False):
        loc = e["loc"]
        key = str(loc[0]) if loc else ""
        if key not in by_param:
            by_param[key] = []
            order.append(key)
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(params.model_fields) or "none"
            msg = f"unknown parameter (allowed: {allowed})"
        elif e["type"] == "missing":
            msg = "required parameter is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if loc:
                msg += f" (got {e.get('input')!r})"
        if msg not in by_param[key]:
            by_param[key].append(msg)
    return [
        (f"parameter {key!r}: " if key else "") + "; or ".join(by_param[key]) for key in order
    ]


def _split_entry(entry: Any) -> tuple[Any, dict[str, Any]]:
    """(name, params) from `NAME`, `{step: NAME, ...}` or `{NAME: {...}}`."""
    if isinstance(entry, str):
        return entry, {}
    if not isinstance(entry, Mapping):
        raise PipelineConfigError(
            f"expected a mapping like {{step: NAME, ...}}, got {type(entry).__name__}"
        )
    if "step" in entry:
        rest = {k: v for k, v in entry.items() if k != "step"}
        return entry["step"], rest
    if len(entry) == 1:
        ((name, params),) = entry.items()
        if params is None:
            return name, {}
        if isinstance(params, Mapping):
            return name, dict(params)
    raise PipelineConfigError("missing the 'step' key (write {step: NAME, PARAM: VALUE, ...})")


def _validate_entry(
    entry: Any, kinds: frozenset[str] | None
) -> tuple[str, Params]:
    name, raw = _split_entry(entry)
    if not isinstance(name, str):
        raise PipelineConfigError(f"step name must be a string, got {name!r}")
    spec = STEPS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, STEPS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PipelineConfigError(
            f"unknown step {name!r}{hint}; known steps: {', '.join(sorted(STEPS))}"
        )
    if kinds is not None and spec.kind not in kinds:
        raise PipelineConfigError(
            f"{name!r} is a step of kind {spec.kind!r}, not allowed here (allowed kinds: "
            f"{', '.join(sorted(kinds))})"
        )
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise PipelineConfigError(f"parameter names must be strings, got {bad_keys!r}")
    try:
        return name, spec.params.model_validate(raw)
    except ValidationError as e:
        raise PipelineConfigError("\n".join(_fmt_param_errors(e, spec.params))) from None


# -------------------------------------------------------------------------------- pipeline

class Pipeline:
    """An ordered, validated chain of registered steps; immutable and picklable.

    Build with `Pipeline.from_config([...])`; usable as a pydantic field type (a YAML list).
    """

    def __init__(self, steps: Sequence[tuple[str, Params]] = ()):
        self._steps: tuple[tuple[str, Params], ...] = tuple(steps)
        for name, params in self._steps:
            if name not in STEPS or not isinstance(params, STEPS[name].params):
                raise PipelineConfigError(f"step {name!r}: not registered with these params")
        self._calls = [
            (STEPS[name], params.model_dump(exclude=set(PIPELINE_PARAMS)), params)
            for name, params in self._steps
        ]

    @classmethod
    def from_config(
        cls,
        config: Sequence[Any] | None,
        *,
        section: str = "pipeline",
        kinds: frozenset[str] | None = None,
    ) -> Pipeline:
        """Validate a list of step entries (as loaded from YAML). Raises PipelineConfigError
        listing every problem as `SECTION step I (NAME): ...`. `kinds` restricts step kinds
        (e.g. SEGMENT_KINDS for a `segment` section)."""
        if config is None:
            return cls()
        if isinstance(config, str | bytes) or not isinstance(config, Sequence):
            raise PipelineConfigError(
                f"{section}: expected a list of steps, got {type(config).__name__}"
            )
        steps, problems = [], []
        for index, entry in enumerate(config):
            try:
                steps.append(_validate_entry(entry, kinds))
            except PipelineConfigError as e:
                label = _entry_label(entry)
                for line in str(e).splitlines():
                    problems.append(f"{section} step {index}{label}: {line}")
        if problems:
            raise PipelineConfigError("\n".join(problems))
        return cls(steps)

    # --- introspection
    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._steps]

    @property
    def steps(self) -> tuple[tuple[str, Params], ...]:
        return self._steps

    @property
    def makes_mask(self) -> bool:
        """True if some step creates a mask."""
        return any(STEPS[n].kind == "mask" for n in self.names)

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[tuple[str, Params]]:
        return iter(self._steps)

    def __add__(self, other: Pipeline) -> Pipeline:
        return Pipeline(self._steps + other._steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(self.hash())

    def __repr__(self) -> str:
        return f"Pipeline({self.names})"

    def to_config(self) -> list[dict[str, Any]]:
        """The canonical, JSON-ready form: `{step: NAME, ...all params with defaults}`."""
        return [{"step": name, **p.model_dump(mode="json")} for name, p in self._steps]

    def canonical_json(self) -> str:
        doc = {"medspark_pipeline": PIPELINE_FORMAT, "steps": self.to_config()}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def hash(self) -> str:
        """sha256 hex of the canonical JSON: stable across key order, processes and runs."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    # --- pickling via the canonical config (cheap, and robust to registry objects)
    def __getstate__(self) -> list[dict[str, Any]]:
        return self.to_config()

    def __setstate__(self, state: list[dict[str, Any]]) -> None:
        self.__init__(Pipeline.from_config(state)._steps)

    # --- pydantic field support
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda p: p.to_config()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "object"}}

    @classmethod
    def _coerce(cls, value: Any) -> Pipeline:
        return value if isinstance(value, Pipeline) else cls.from_config(value)

    # --- execution
    def apply(
        self, image: np.ndarray, spacing: Spacing = None, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, Spacing, np.ndarray | None]:
        """Run every step on one image; returns (image, spacing, mask or None).

        A failing step raises StepError naming it (the original error is its __cause__).
        """
        image = check_image(image)
        spacing = check_spacing(spacing)
        if mask is not None:
            mask = np.ascontiguousarray(morphology.as_mask(mask))
            if mask.shape != image.shape[:2]:
                raise ValueError(f"mask shape {mask.shape} does not match image {image.shape}")
        for index, (spec, kwargs, params) in enumerate(self._calls):
            try:
                image, spacing, mask = _run(spec, kwargs, params, image, spacing, mask)
            except Exception as e:  # re-raised with the step's name and index
                message = f"step {index} ({spec.name}): {type(e).__name__}: {e}"
                raise StepError(message, index, spec.name) from e
        return image, spacing, mask


def _entry_label(entry: Any) -> str:
    try:
        name, _ = _split_entry(entry)
    except PipelineConfigError:
        return ""
    return f" ({name})" if isinstance(name, str) else ""


def _need_mask(mask: np.ndarray | None, spec: StepSpec) -> np.ndarray:
    if mask is None:
        raise ValueError(
            f"{spec.name} needs a mask: put a segmentation step (e.g. lung_mask) before it "
            "or pass mask="
        )
    return mask


def _run(
    spec: StepSpec,
    kwargs: dict[str, Any],
    params: Params,
    image: np.ndarray,
    spacing: Spacing,
    mask: np.ndarray | None,
) -> tuple[np.ndarray, Spacing, np.ndarray | None]:
    """One step on (image, spacing, mask)."""
    kw = dict(kwargs)
    if getattr(params, "within_mask", False) or spec.needs_mask:
        kw["mask"] = _need_mask(mask, spec)
    if spec.kind == "geometry":
        new_image, new_spacing = spec.fn(image, spacing, **kw)
        if mask is not None:
            moved, _ = spec.fn(mask.view(np.uint8), spacing, **{**kw, **spec.mask_overrides})
            mask = moved > 0
        return new_image, new_spacing, mask
    if spec.kind in ("intensity", "filter"):
        new_image, new_spacing = spec.fn(image, spacing, **kw)
        return new_image, new_spacing, mask
    if spec.kind == "mask_op":
        return image, spacing, spec.fn(_need_mask(mask, spec), spacing, **kw)
    new = np.asarray(spec.fn(image, spacing, **kw), dtype=bool)
    combine = getattr(params, "combine", "replace")
    if mask is not None and combine == "and":
        new = new & mask
    elif mask is not None and combine == "or":
        new = new | mask
    return image, spacing, new


# ------------------------------------------------------------------------ whole config

class ProcessingConfig(BaseModel):
    """The imaging sections of a job's YAML.

    segment: mask steps run first, on the pixels as stored (HU for CT), which HU-based steps
    need; preprocess: any steps, run next on image and mask together; augment: optional seeded
    copies of the result.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: Pipeline = Field(
        default_factory=Pipeline, description="mask steps, run first on the stored pixels")
    preprocess: Pipeline = Field(
        default_factory=Pipeline, description="any steps, run next on image and mask together")
    augment: AugmentConfig | None = Field(
        None, description="seeded copies of each processed image; none when omitted")

    @field_validator("segment", mode="before")
    @classmethod
    def _segment_steps(cls, v: Any) -> Any:
        if isinstance(v, Pipeline):
            bad = [n for n in v.names if STEPS[n].kind not in SEGMENT_KINDS]
            if bad:
                raise PipelineConfigError(f"segment: not segmentation steps: {bad}")
            return v
        return Pipeline.from_config(v, section="segment", kinds=SEGMENT_KINDS)

    @field_validator("preprocess", mode="before")
    @classmethod
    def _preprocess_steps(cls, v: Any) -> Any:
        return v if isinstance(v, Pipeline) else Pipeline.from_config(v, section="preprocess")

    def pipeline(self) -> Pipeline:
        """segment followed by preprocess, as one chain."""
        return self.segment + self.preprocess

    def hash(self) -> str:
        """sha256 of the canonical JSON of all three sections."""
        doc = {
            "medspark_pipeline": PIPELINE_FORMAT,
            "segment": self.segment.to_config(),
            "preprocess": self.preprocess.to_config(),
            "augment": None if self.augment is None else self.augment.model_dump(mode="json"),
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()
