"""Parameter models of the pipeline steps and of the `augment` section.

One strict pydantic model per step: no unknown keys, no silent coercion ("2" is not a number),
lists from YAML accepted for tuple fields, defaults equal to the step function's. Values are
normalised (an int `size` becomes [size, size]) so equal configurations hash equally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from medspark.preprocess import augment as aug
from medspark.preprocess import intensity
from medspark.preprocess._common import Spacing
from medspark.segment import threshold


def _pair_of(v: Any) -> Any:
    return (v, v) if isinstance(v, int | float) else v


def _odd(v: int) -> int:
    if v % 2 == 0:
        raise ValueError("must be an odd integer")
    return v


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if not v[0] < v[1]:
        raise ValueError("needs low < high")
    return v


PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Percent = Annotated[float, Field(ge=0, le=100)]
Prob = Annotated[float, Field(ge=0, le=1)]
OddInt = Annotated[int, Field(ge=1), AfterValidator(_odd)]
Size = Annotated[tuple[PosInt, PosInt] | PosInt, AfterValidator(_pair_of)]
SpacingMM = Annotated[tuple[PosFloat, PosFloat] | PosFloat, AfterValidator(_pair_of)]
Range = tuple[float, float]
OrderedRange = Annotated[tuple[float, float], AfterValidator(_ordered)]
Units = Literal["px", "mm"]
Interpolation = Literal["auto", "nearest", "linear", "cubic", "area", "lanczos"]
WarpInterpolation = Literal["nearest", "linear", "cubic", "lanczos"]
Fill = Literal["constant", "edge", "reflect"]
Foreground = Literal["bright", "dark"]
Connectivity = Literal[4, 8]


class Params(BaseModel):
    """Base of every step's parameters: strict types (no "3" for 3), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _lists_to_tuples(cls, data: Any) -> Any:
        # YAML gives lists; strict mode only accepts tuples for tuple fields
        if isinstance(data, Mapping):
            return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return data


class MaskAwareParams(Params):
    within_mask: bool = Field(False, description="compute statistics inside the current mask")


class MaskParams(Params):
    combine: Literal["replace", "and", "or"] = Field(
        "replace", description="how the new mask merges with an existing one"
    )


def _bounds_check(lower: float | None, upper: float | None, step: str) -> None:
    if lower is None and upper is None:
        raise ValueError(f"{step} needs lower, upper or both")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"lower ({lower}) is above upper ({upper})")


# geometry
class ResizeParams(Params):
    size: Size
    keep_aspect: bool = False
    interpolation: Interpolation = "auto"
    pad_value: float = 0.0


class ResampleParams(Params):
    target_spacing: SpacingMM
    interpolation: Interpolation = "auto"


class CropParams(Params):
    top: NonNegInt
    left: NonNegInt
    height: PosInt
    width: PosInt


class CenterCropParams(Params):
    size: Size
    pad_value: float = 0.0


class PadParams(Params):
    size: Size
    mode: Fill = "constant"
    value: float = 0.0


class RotateParams(Params):
    angle: float
    interpolation: WarpInterpolation = "linear"
    fill: Fill = "constant"
    value: float = 0.0


class FlipParams(Params):
    axis: Literal["horizontal", "vertical", "both"] = "horizontal"


# intensity
class WindowParams(Params):
    preset: Literal[tuple(intensity.WINDOW_PRESETS)] | None = None  # type: ignore[valid-type]
    center: float | None = None
    width: PosFloat | None = None
    out_range: Range = (0.0, 1.0)

    @model_validator(mode="after")
    def _preset_xor_center_width(self) -> WindowParams:
        explicit = (self.center is not None, self.width is not None)
        if self.preset is not None and any(explicit):
            raise ValueError("give either preset or center + width, not both")
        if self.preset is None and not all(explicit):
            raise ValueError("give a preset (e.g. lung) or both center and width")
        return self


class ClipParams(Params):
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ClipParams:
        _bounds_check(self.lower, self.upper, "clip")
        return self


class MinMaxParams(MaskAwareParams):
    out_range: Range = (0.0, 1.0)


class ZScoreParams(MaskAwareParams):
    pass


class _PercentileRange(MaskAwareParams):
    lower: Percent
    upper: Percent

    @model_validator(mode="after")
    def _ordered_percentiles(self) -> _PercentileRange:
        if not self.lower < self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self


class PercentileParams(_PercentileRange):
    lower: Percent = 1.0
    upper: Percent = 99.0
    clip: bool = False


class ContrastStretchParams(_PercentileRange):
    lower: Percent = 2.0
    upper: Percent = 98.0
    out_range: Range = (0.0, 1.0)


class GammaParams(Params):
    gamma: PosFloat
    gain: PosFloat = 1.0


class EqualizeParams(MaskAwareParams):
    nbins: Annotated[int, Field(ge=2)] = 256


class ClaheParams(Params):
    clip_limit: PosFloat = 2.0
    tile_grid: Size = (8, 8)
    in_range: OrderedRange | None = None


class CastParams(Params):
    dtype: Literal[intensity.CAST_DTYPES]  # type: ignore[valid-type]
    scale: float = 1.0
    offset: float = 0.0


class ApplyMaskParams(Params):
    fill: float = 0.0


# filters
class GaussianParams(Params):
    sigma: PosFloat = 1.0
    units: Units = "px"


class MedianParams(Params):
    size: OddInt = 3


class BilateralParams(Params):
    sigma_color: PosFloat | None = None
    sigma_space: PosFloat = 3.0
    diameter: NonNegInt = 0


class NLMeansParams(Params):
    h: PosFloat = 0.8
    patch_size: PosInt = 5
    patch_distance: PosInt = 6
    sigma: PosFloat | None = None


class UnsharpParams(Params):
    sigma: PosFloat = 1.0
    amount: NonNegFloat = 1.0
    units: Units = "px"


class LaplacianParams(Params):
    strength: NonNegFloat = 0.5
    ksize: Literal[1, 3, 5] = 1


class NoParams(Params):
    pass


# segmentation: mask producers
class ThresholdParams(MaskParams):
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdParams:
        _bounds_check(self.lower, self.upper, "threshold")
        return self


class HURangeParams(MaskParams):
    preset: Literal[tuple(threshold.HU_PRESETS)] | None = None  # type: ignore[valid-type]
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _preset_xor_bounds(self) -> HURangeParams:
        if self.preset is not None:
            if self.lower is not None or self.upper is not None:
                raise ValueError("give either preset or lower/upper, not both")
        elif self.lower is None and self.upper is None:
            raise ValueError("give a preset (e.g. fat) or lower/upper bounds")
        else:
            _bounds_check(self.lower, self.upper, "hu_range")
        return self


class OtsuParams(MaskParams):
    nbins: Annotated[int, Field(ge=2)] = 256
    foreground: Foreground = "bright"
    within_mask: bool = False


class AdaptiveParams(MaskParams):
    block_size: Annotated[int, Field(ge=3), AfterValidator(_odd)] = 35
    offset: float = 0.0
    method: Literal["gaussian", "mean", "median"] = "gaussian"
    foreground: Foreground = "bright"


class CannyParams(MaskParams):
    sigma: PosFloat = 1.0
    low: NonNegFloat = 0.1
    high: NonNegFloat = 0.2
    use_quantiles: bool = False

    @model_validator(mode="after")
    def _thresholds(self) -> CannyParams:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.use_quantiles and self.high > 1:
            raise ValueError("with use_quantiles, low and high are quantiles in [0, 1]")
        return self


class SobelParams(MaskParams):
    threshold: NonNegFloat | None = None
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> SobelParams:
        if self.threshold is not None and self.quantile is not None:
            raise ValueError("give threshold or quantile, not both")
        return self


class BodyMaskParams(MaskParams):
    threshold: float = -500.0
    open_radius: NonNegFloat = 5.0
    units: Units = "mm"


class LungMaskParams(MaskParams):
    threshold: float = -400.0
    body_threshold: float = -500.0
    body_open_radius: NonNegFloat = 5.0
    close_radius: NonNegFloat = 5.0
    min_area_fraction: Prob = 0.1
    max_components: PosInt = 2
    units: Units = "mm"


# segmentation: mask operations
class MorphParams(Params):
    radius: NonNegFloat = 1.0
    units: Units = "px"


class ConnectivityParams(Params):
    connectivity: Connectivity = 8


class TopKParams(ConnectivityParams):
    k: PosInt


class MinAreaParams(ConnectivityParams):
    area: PosFloat
    units: Units = "px"


class AugmentConfig(Params):
    """The `augment` section: how many seeded copies per image and what varies."""

    n_copies: NonNegInt = 1
    seed: int = 0
    rotation_deg: Annotated[float, Field(ge=0, le=180)] = 10.0
    flip_horizontal: Prob = 0.5
    flip_vertical: Prob = 0.0
    shift: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    scale: tuple[PosFloat, PosFloat] = (0.95, 1.05)
    brightness: NonNegFloat = 0.0
    contrast: Annotated[float, Field(ge=0, lt=1)] = 0.0
    noise_std: NonNegFloat = 0.0
    interpolation: WarpInterpolation = "linear"
    fill: Fill = "constant"
    value: float = 0.0

    @field_validator("scale")
    @classmethod
    def _scale_order(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError("scale needs low <= high")
        return v

    def variation(self) -> dict[str, Any]:
        """Keyword arguments of `augment_once` (everything but n_copies and seed)."""
        return self.model_dump(exclude={"n_copies", "seed"})

    def copy_of(
        self, image: np.ndarray, spacing: Spacing, image_id: str, copy: int,
        mask: np.ndarray | None = None,
    ) -> aug.Augmented:
        """Copy number `copy` of one image: what a Spark task emits as one extra row."""
        s = aug.augment_seed(image_id, copy, self.seed)
        img, sp, m = aug.augment_once(image, spacing, s, mask=mask, **self.variation())
        return aug.Augmented(img, sp, m, copy, s)

    def apply(
        self, image: np.ndarray, spacing: Spacing, image_id: str, mask: np.ndarray | None = None
    ) -> list[aug.Augmented]:
        """All `n_copies` copies of one image."""
        return [self.copy_of(image, spacing, image_id, k, mask) for k in range(self.n_copies)]
