"""The step registry: every pipeline step by name, with its function and parameter model.

`STEPS` maps a name to a `StepSpec` (the pure function from `medspark.preprocess` or
`medspark.segment`, its pydantic parameter model from `params.py`, and how the pipeline calls
it). It lives above both packages, so they never import each other; another package may add
steps with `register_step`. `list_steps()` describes every step and parameter (what the docs'
parameter tables are generated from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from medspark.preprocess import filters, geometry, intensity
from medspark.segment import anatomy, components, edges, morphology, threshold
from medspark.steps.params import (
    AdaptiveParams,
    ApplyMaskParams,
    BilateralParams,
    BodyMaskParams,
    CannyParams,
    CastParams,
    CenterCropParams,
    ClaheParams,
    ClipParams,
    ConnectivityParams,
    ContrastStretchParams,
    CropParams,
    EqualizeParams,
    FlipParams,
    GammaParams,
    GaussianParams,
    HURangeParams,
    LaplacianParams,
    LungMaskParams,
    MedianParams,
    MinAreaParams,
    MinMaxParams,
    MorphParams,
    NLMeansParams,
    NoParams,
    OtsuParams,
    PadParams,
    Params,
    PercentileParams,
    ResampleParams,
    ResizeParams,
    RotateParams,
    SobelParams,
    ThresholdParams,
    TopKParams,
    UnsharpParams,
    WindowParams,
    ZScoreParams,
)

StepKind = Literal["geometry", "intensity", "filter", "mask", "mask_op"]
SEGMENT_KINDS: frozenset[str] = frozenset({"mask", "mask_op"})
PIPELINE_PARAMS: frozenset[str] = frozenset({"within_mask", "combine"})
"""Parameters the pipeline consumes itself (mask statistics, mask merging), not the function."""


@dataclass(frozen=True)
class StepSpec:
    """A registered step: its function, parameter model and how the pipeline calls it.

    kind: geometry (image, spacing) -> (image, spacing), replayed on the mask with
    `mask_overrides`; intensity/filter (image, spacing) -> (image, spacing); mask
    (image, spacing) -> mask; mask_op (mask, spacing) -> mask.
    """

    name: str
    fn: Callable[..., Any]
    params: type[Params]
    kind: StepKind
    mask_overrides: Mapping[str, Any] = field(default_factory=dict)
    needs_mask: bool = False

    @property
    def summary(self) -> str:
        """The first paragraph of the function's docstring, on one line."""
        first = (self.fn.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(line.strip() for line in first.splitlines())


STEPS: dict[str, StepSpec] = {}


def register_step(spec: StepSpec, *, replace: bool = False) -> StepSpec:
    """Add a step to the registry (another package may register its own)."""
    if spec.name in STEPS and not replace:
        raise ValueError(f"step {spec.name!r} is already registered")
    STEPS[spec.name] = spec
    return spec


def _register_builtin() -> None:
    g, i, f = geometry, intensity, filters
    nearest = {"interpolation": "nearest"}
    for spec in (
        StepSpec("resize", g.resize, ResizeParams, "geometry", {**nearest, "pad_value": 0.0}),
        StepSpec("resample", g.resample, ResampleParams, "geometry", nearest),
        StepSpec("crop", g.crop, CropParams, "geometry"),
        StepSpec("center_crop", g.center_crop, CenterCropParams, "geometry", {"pad_value": 0.0}),
        StepSpec("pad", g.pad, PadParams, "geometry", {"value": 0.0}),
        StepSpec("rotate", g.rotate, RotateParams, "geometry", {**nearest, "value": 0.0}),
        StepSpec("flip", g.flip, FlipParams, "geometry"),
        StepSpec("window", i.window, WindowParams, "intensity"),
        StepSpec("clip", i.clip, ClipParams, "intensity"),
        StepSpec("minmax", i.minmax, MinMaxParams, "intensity"),
        StepSpec("zscore", i.zscore, ZScoreParams, "intensity"),
        StepSpec("percentile", i.percentile_normalize, PercentileParams, "intensity"),
        StepSpec("contrast_stretch", i.contrast_stretch, ContrastStretchParams, "intensity"),
        StepSpec("gamma", i.gamma, GammaParams, "intensity"),
        StepSpec("equalize_hist", i.equalize_hist, EqualizeParams, "intensity"),
        StepSpec("clahe", i.clahe, ClaheParams, "intensity"),
        StepSpec("cast", i.cast, CastParams, "intensity"),
        StepSpec("apply_mask", i.apply_mask, ApplyMaskParams, "intensity", needs_mask=True),
        StepSpec("gaussian", f.gaussian, GaussianParams, "filter"),
        StepSpec("median", f.median, MedianParams, "filter"),
        StepSpec("bilateral", f.bilateral, BilateralParams, "filter"),
        StepSpec("nl_means", f.nl_means, NLMeansParams, "filter"),
        StepSpec("unsharp_mask", f.unsharp_mask, UnsharpParams, "filter"),
        StepSpec("laplacian_sharpen", f.laplacian_sharpen, LaplacianParams, "filter"),
        StepSpec("sobel_magnitude", f.sobel_magnitude, NoParams, "filter"),
        StepSpec("threshold", threshold.fixed, ThresholdParams, "mask"),
        StepSpec("hu_range", threshold.hu_range, HURangeParams, "mask"),
        StepSpec("otsu", threshold.otsu, OtsuParams, "mask"),
        StepSpec("adaptive_threshold", threshold.adaptive, AdaptiveParams, "mask"),
        StepSpec("canny", edges.canny, CannyParams, "mask"),
        StepSpec("sobel_edges", edges.sobel, SobelParams, "mask"),
        StepSpec("body_mask", anatomy.body_mask, BodyMaskParams, "mask"),
        StepSpec("lung_mask", anatomy.lung_mask, LungMaskParams, "mask"),
        StepSpec("erode", morphology.erode, MorphParams, "mask_op"),
        StepSpec("dilate", morphology.dilate, MorphParams, "mask_op"),
        StepSpec("open", morphology.opening, MorphParams, "mask_op"),
        StepSpec("close", morphology.closing, MorphParams, "mask_op"),
        StepSpec("fill_holes", morphology.fill_holes, NoParams, "mask_op"),
        StepSpec("largest_component", components.largest, ConnectivityParams, "mask_op"),
        StepSpec("top_k_components", components.top_k, TopKParams, "mask_op"),
        StepSpec("min_area", components.min_area, MinAreaParams, "mask_op"),
        StepSpec("clear_border", components.clear_border, ConnectivityParams, "mask_op"),
    ):
        register_step(spec)


_register_builtin()


def list_steps() -> list[dict[str, Any]]:
    """Name, kind, summary and parameters of every step; a parameter is described by
    `required`, `default`, `description` (what it means, its units) and `schema` (its JSON
    schema: type, bounds, allowed values)."""
    out = []
    for name, spec in sorted(STEPS.items()):
        schema = spec.params.model_json_schema()
        required = set(schema.get("required", []))
        params = {
            p: {"required": p in required, "default": prop.get("default"),
                "description": prop.get("description"),
                "schema": {k: v for k, v in prop.items()
                           if k not in ("default", "title", "description")}}
            for p, prop in schema.get("properties", {}).items()
        }
        out.append({"name": name, "kind": spec.kind, "summary": spec.summary, "params": params})
    return out
