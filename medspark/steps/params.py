"""Parameter models of the pipeline steps and of the `augment` section.

One strict pydantic model per step: no unknown keys, no silent coercion ("2" is not a number),
lists from YAML accepted for tuple fields, defaults equal to the step function's. Values are
normalised (an int `size` becomes [size, size]) so equal configurations hash equally. Every
field carries a `description` (what it means, its units), which `list_steps()` and the
parameter tables of docs/preprocess.md (`python -m medspark.steps.docs`) show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from medspark.image import Spacing
from medspark.preprocess import augment as aug
from medspark.preprocess import intensity
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

# descriptions several models share
_SIZE = "output size in pixels, (rows, cols); an integer means square"
_INTERPOLATION = "auto is area when shrinking, linear when enlarging; masks follow with nearest"
_WARP_INTERPOLATION = "how pixels are interpolated; masks follow with nearest"
_FILL = "value of the pixels the step adds or uncovers (e.g. -1000 for HU images)"
_FILL_MODE = ("how uncovered pixels are filled: constant (with `value`), edge (repeat the "
              "border pixel) or reflect (mirror the image)")
_OUT_RANGE = "(low, high) the result is mapped onto"
_FOREGROUND = "bright: the mask is the pixels above the threshold; dark: those below it"
_LENGTH_UNITS = "px, or mm (converted per axis with the pixel spacing, which must be known)"
_CONNECTIVITY = "4 (edge neighbours) or 8 (edges and corners) connected components"
_HU_LOWER = "lowest value kept, inclusive (image units: HU for CT); omit for no lower bound"
_HU_UPPER = "highest value kept, inclusive (image units: HU for CT); omit for no upper bound"


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
    within_mask: bool = Field(
        False, description="compute the statistics over the current mask's pixels only (error "
        "if there is no mask or it is empty)")


class MaskParams(Params):
    combine: Literal["replace", "and", "or"] = Field(
        "replace", description="how the new mask merges with an existing one: replace it, or "
        "keep pixels in both (and) or in either (or)")


def _bounds_check(lower: float | None, upper: float | None, step: str) -> None:
    if lower is None and upper is None:
        raise ValueError(f"{step} needs lower, upper or both")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"lower ({lower}) is above upper ({upper})")


# geometry
class ResizeParams(Params):
    size: Size = Field(description=_SIZE)
    keep_aspect: bool = Field(
        False, description="scale by the smaller of the two factors and pad the rest, centred, "
        "with `pad_value`, so anatomy is not distorted")
    interpolation: Interpolation = Field("auto", description=_INTERPOLATION)
    pad_value: float = Field(0.0, description=_FILL + "; used with keep_aspect")


class ResampleParams(Params):
    target_spacing: SpacingMM = Field(
        description="new pixel spacing in mm, (row, col); a number means isotropic")
    interpolation: Interpolation = Field("auto", description=_INTERPOLATION)


class CropParams(Params):
    top: NonNegInt = Field(description="first row of the box, in pixels")
    left: NonNegInt = Field(description="first column of the box, in pixels")
    height: PosInt = Field(description="rows in the box (fewer where it passes the image edge)")
    width: PosInt = Field(description="columns in the box (fewer where it passes the image edge)")


class CenterCropParams(Params):
    size: Size = Field(description=_SIZE + "; smaller images are padded up to it")
    pad_value: float = Field(0.0, description=_FILL)


class PadParams(Params):
    size: Size = Field(description="minimum output size in pixels, (rows, cols); an integer "
                       "means square; larger dimensions are kept")
    mode: Fill = Field("constant", description=_FILL_MODE)
    value: float = Field(0.0, description=_FILL + "; used with mode constant")


class RotateParams(Params):
    angle: float = Field(description="rotation in degrees, counter-clockwise, about the centre")
    interpolation: WarpInterpolation = Field("linear", description=_WARP_INTERPOLATION)
    fill: Fill = Field("constant", description=_FILL_MODE)
    value: float = Field(0.0, description=_FILL + "; used with fill constant")


class FlipParams(Params):
    axis: Literal["horizontal", "vertical", "both"] = Field(
        "horizontal", description="horizontal (left-right), vertical (top-bottom) or both")


# intensity
class WindowParams(Params):
    preset: Literal[tuple(intensity.WINDOW_PRESETS)] | None = Field(  # type: ignore[valid-type]
        None, description="a named CT window (table below); give it or center + width")
    center: float | None = Field(None, description="window centre in image units (HU for CT)")
    width: PosFloat | None = Field(None, description="window width in image units (HU for CT)")
    out_range: Range = Field((0.0, 1.0), description=_OUT_RANGE + "; the centre maps to its "
                             "middle and values outside the window are clipped")

    @model_validator(mode="after")
    def _preset_xor_center_width(self) -> WindowParams:
        explicit = (self.center is not None, self.width is not None)
        if self.preset is not None and any(explicit):
            raise ValueError("give either preset or center + width, not both")
        if self.preset is None and not all(explicit):
            raise ValueError("give a preset (e.g. lung) or both center and width")
        return self


class ClipParams(Params):
    lower: float | None = Field(None, description="values below become this; omit for no bound")
    upper: float | None = Field(None, description="values above become this; omit for no bound")

    @model_validator(mode="after")
    def _bounds(self) -> ClipParams:
        _bounds_check(self.lower, self.upper, "clip")
        return self


class MinMaxParams(MaskAwareParams):
    out_range: Range = Field((0.0, 1.0), description=_OUT_RANGE + ": min goes to low, max to "
                             "high")


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
    lower: Percent = Field(1.0, description="percentile (0-100) that maps to 0")
    upper: Percent = Field(99.0, description="percentile (0-100) that maps to 1")
    clip: bool = Field(False, description="clip the result to [0, 1]; otherwise values beyond "
                       "the percentiles stay beyond")


class ContrastStretchParams(_PercentileRange):
    lower: Percent = Field(2.0, description="percentile (0-100) that maps to the low end")
    upper: Percent = Field(98.0, description="percentile (0-100) that maps to the high end")
    out_range: Range = Field((0.0, 1.0), description=_OUT_RANGE + ", clipped")


class GammaParams(Params):
    gamma: PosFloat = Field(description="exponent: below 1 brightens dark regions, above 1 "
                            "darkens them")
    gain: PosFloat = Field(1.0, description="factor applied after the power")


class EqualizeParams(MaskAwareParams):
    nbins: Annotated[int, Field(ge=2)] = Field(256, description="histogram bins")


class ClaheParams(Params):
    clip_limit: PosFloat = Field(
        2.0, description="OpenCV's contrast limit, relative to a uniform histogram (2-4 is "
        "typical; higher gives more contrast and more noise)")
    tile_grid: Size = Field((8, 8), description="tiles the image is divided into, (rows, cols); "
                            "an integer means square")
    in_range: OrderedRange | None = Field(
        None, description="(low, high) input values mapped to the 8 bits CLAHE works on; "
        "default: [0, 1] for floats already within it, else the image's min..max (uint8 is "
        "used as is)")


class CastParams(Params):
    dtype: Literal[intensity.CAST_DTYPES] = Field(  # type: ignore[valid-type]
        description="output dtype; integers are rounded and saturated")
    scale: float = Field(1.0, description="factor applied before the conversion (e.g. 255 to "
                         "store a [0, 1] image as uint8)")
    offset: float = Field(0.0, description="added after `scale`, before the conversion")


class ApplyMaskParams(Params):
    fill: float = Field(0.0, description="value of the pixels outside the mask")


# filters
class GaussianParams(Params):
    sigma: PosFloat = Field(1.0, description="standard deviation of the Gaussian, in `units`")
    units: Units = Field("px", description=_LENGTH_UNITS)


class MedianParams(Params):
    size: OddInt = Field(3, description="window side in pixels (odd); above 5 on non-uint8 "
                         "images it is much slower")


class BilateralParams(Params):
    sigma_color: PosFloat | None = Field(
        None, description="range sigma in image units (HU for CT): differences well above it "
        "are edges and are kept; default: 2x the estimated noise std")
    sigma_space: PosFloat = Field(3.0, description="spatial sigma in pixels")
    diameter: NonNegInt = Field(0, description="neighbourhood diameter in pixels; 0 derives it "
                                "from sigma_space")


class NLMeansParams(Params):
    h: PosFloat = Field(0.8, description="filter strength relative to the noise: the strength "
                        "is h * sigma, so h is scale-free (0.6-1.0 is typical)")
    patch_size: PosInt = Field(5, description="side of the patches compared, in pixels")
    patch_distance: PosInt = Field(6, description="search radius for similar patches, in "
                                   "pixels")
    sigma: PosFloat | None = Field(None, description="noise std in image units; default: "
                                   "estimated per channel")


class UnsharpParams(Params):
    sigma: PosFloat = Field(1.0, description="standard deviation of the blur that is "
                            "subtracted, in `units`")
    amount: NonNegFloat = Field(1.0, description="weight of the detail added back: "
                                "x + amount * (x - blur(x))")
    units: Units = Field("px", description=_LENGTH_UNITS)


class LaplacianParams(Params):
    strength: NonNegFloat = Field(0.5, description="weight of the Laplacian subtracted: "
                                  "x - strength * Laplacian(x)")
    ksize: Literal[1, 3, 5] = Field(1, description="OpenCV aperture of the Laplacian (1, 3 or "
                                    "5 pixels)")


class NoParams(Params):
    pass


# segmentation: mask producers
class ThresholdParams(MaskParams):
    lower: float | None = Field(None, description=_HU_LOWER)
    upper: float | None = Field(None, description=_HU_UPPER)

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdParams:
        _bounds_check(self.lower, self.upper, "threshold")
        return self


class HURangeParams(MaskParams):
    preset: Literal[tuple(threshold.HU_PRESETS)] | None = Field(  # type: ignore[valid-type]
        None, description="a tissue range: air, lung, fat, muscle or bone; give it or "
        "lower/upper")
    lower: float | None = Field(None, description=_HU_LOWER)
    upper: float | None = Field(None, description=_HU_UPPER)

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
    nbins: Annotated[int, Field(ge=2)] = Field(256, description="histogram bins Otsu's "
                                               "threshold is searched over")
    foreground: Foreground = Field("bright", description=_FOREGROUND)
    within_mask: bool = Field(False, description="take the threshold from the current mask's "
                              "pixels and keep the result inside that mask")


class AdaptiveParams(MaskParams):
    block_size: Annotated[int, Field(ge=3), AfterValidator(_odd)] = Field(
        35, description="side of the neighbourhood the local threshold comes from, in pixels "
        "(odd)")
    offset: float = Field(0.0, description="margin beyond the local mean, in image units; "
                          "positive is stricter for either foreground (the opposite sign of "
                          "skimage's and OpenCV's constant)")
    method: Literal["gaussian", "mean", "median"] = Field(
        "gaussian", description="how the local mean is computed")
    foreground: Foreground = Field("bright", description=_FOREGROUND)


class CannyParams(MaskParams):
    sigma: PosFloat = Field(1.0, description="Gaussian smoothing before the gradient, in "
                            "pixels")
    low: NonNegFloat = Field(0.1, description="hysteresis low threshold, as a fraction of the "
                             "image's intensity range (a quantile with use_quantiles)")
    high: NonNegFloat = Field(0.2, description="hysteresis high threshold, as a fraction of the "
                              "image's intensity range (a quantile with use_quantiles)")
    use_quantiles: bool = Field(False, description="read low and high as quantiles of the "
                                "gradient magnitude, in [0, 1]")

    @model_validator(mode="after")
    def _thresholds(self) -> CannyParams:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.use_quantiles and self.high > 1:
            raise ValueError("with use_quantiles, low and high are quantiles in [0, 1]")
        return self


class SobelParams(MaskParams):
    threshold: NonNegFloat | None = Field(
        None, description="gradient magnitude (image units per pixel) above which a pixel is "
        "an edge; with neither this nor quantile, Otsu's threshold of the magnitudes")
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="use this quantile of the gradient magnitudes as the threshold")

    @model_validator(mode="after")
    def _one_rule(self) -> SobelParams:
        if self.threshold is not None and self.quantile is not None:
            raise ValueError("give threshold or quantile, not both")
        return self


class BodyMaskParams(MaskParams):
    threshold: float = Field(-500.0, description="HU above which a pixel may be body")
    open_radius: NonNegFloat = Field(
        5.0, description="radius of the opening, in `units`, that cuts the table and thin "
        "bridges to it (anything thinner than about twice the radius)")
    units: Units = Field("mm", description=_LENGTH_UNITS)


class LungMaskParams(MaskParams):
    threshold: float = Field(-400.0, description="HU below which a pixel inside the body may "
                             "be lung")
    body_threshold: float = Field(-500.0, description="`threshold` of the body mask the lungs "
                                  "must lie in")
    body_open_radius: NonNegFloat = Field(5.0, description="`open_radius` of that body mask, "
                                          "in `units`")
    close_radius: NonNegFloat = Field(
        5.0, description="radius of the closing that takes vessels and juxtapleural nodules "
        "into the lung, in `units`")
    min_area_fraction: Prob = Field(
        0.1, description="a candidate is kept only with at least this fraction of the largest "
        "one's area (drops the trachea and gas pockets)")
    max_components: PosInt = Field(2, description="most components kept, largest first")
    units: Units = Field("mm", description=_LENGTH_UNITS)


# segmentation: mask operations
class MorphParams(Params):
    radius: NonNegFloat = Field(1.0, description="radius of the disk, in `units` (an ellipse in "
                                "pixels when the spacing is anisotropic); 0 is a single pixel")
    units: Units = Field("px", description=_LENGTH_UNITS)


class ConnectivityParams(Params):
    connectivity: Connectivity = Field(8, description=_CONNECTIVITY)


class TopKParams(ConnectivityParams):
    k: PosInt = Field(description="how many of the largest components to keep")


class MinAreaParams(ConnectivityParams):
    area: PosFloat = Field(description="smallest area kept: a pixel count (units px) or mm^2 "
                           "(units mm)")
    units: Units = Field("px", description="px (pixel count) or mm (mm^2, converted with the "
                         "pixel spacing, which must be known)")


class AugmentConfig(Params):
    """The `augment` section: how many seeded copies per image and what varies."""

    n_copies: NonNegInt = Field(1, description="copies per image")
    seed: int = Field(0, description="base seed of the run; copy k of an image uses "
                      "augment_seed(image_id, k, seed)")
    rotation_deg: Annotated[float, Field(ge=0, le=180)] = Field(
        10.0, description="rotation uniform in +-rotation_deg degrees (done in mm space)")
    flip_horizontal: Prob = Field(0.5, description="probability of a left-right flip")
    flip_vertical: Prob = Field(0.0, description="probability of a top-bottom flip")
    shift: Annotated[float, Field(ge=0, le=0.5)] = Field(
        0.05, description="shift uniform in +-shift x size, per axis")
    scale: tuple[PosFloat, PosFloat] = Field(
        (0.95, 1.05), description="(low, high) zoom range; the spacing becomes spacing / zoom")
    brightness: NonNegFloat = Field(
        0.0, description="additive shift uniform in +-brightness x (max - min) of the image")
    contrast: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="contrast factor uniform in 1 +- contrast, about the mean")
    noise_std: NonNegFloat = Field(
        0.0, description="std of added Gaussian noise, as a fraction of (max - min)")
    interpolation: WarpInterpolation = Field("linear", description=_WARP_INTERPOLATION)
    fill: Fill = Field("constant", description=_FILL_MODE)
    value: float = Field(0.0, description=_FILL + "; used with fill constant")

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
