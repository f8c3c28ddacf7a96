"""pyradiomics-named extraction settings: defaults and validation.

Names and defaults follow pyradiomics 3.0.1 (``RadiomicsFeatureExtractor`` defaults plus the
per-class defaults). Validation happens once, up front, so a typo such as ``binwidth`` fails with
a ``ValueError`` naming it instead of being silently ignored as pyradiomics would.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Every supported setting and its default (pyradiomics 3.0.1 values).
DEFAULTS: dict[str, Any] = {
    "binWidth": 25,
    "binCount": None,
    "distances": (1,),
    "symmetricalGLCM": True,
    "weightingNorm": None,
    "gldm_a": 0,
    "voxelArrayShift": 0,
    "label": 1,
    "force2D": True,
    "force2Ddimension": 0,
    "minimumROIDimensions": 2,
    "minimumROISize": None,
    "additionalInfo": True,
}

WEIGHTING_NORMS = ("manhattan", "euclidean", "infinity", "no_weighting")

#: pyradiomics settings that exist but change the image (resampling, filters, ...); out of scope
#: for a per-plane feature core, so they are refused with a clear message rather than ignored.
UNSUPPORTED = frozenset({
    "normalize", "normalizeScale", "removeOutliers", "resampledPixelSpacing", "interpolator",
    "preCrop", "padDistance", "resegmentRange", "resegmentMode", "resegmentShape",
    "geometryTolerance", "correctMask", "label_channel", "voxelBased", "kernelRadius",
    "maskedKernel", "initValue", "voxelBatch", "resampledMaskSpacing",
})


@dataclass(frozen=True)
class Settings:
    """Validated settings; attribute names match the pyradiomics setting names."""

    binWidth: float
    binCount: int | None
    distances: tuple[int, ...]
    symmetricalGLCM: bool
    weightingNorm: str | None
    gldm_a: int
    voxelArrayShift: float
    label: int
    force2D: bool
    force2Ddimension: int
    minimumROIDimensions: int
    minimumROISize: int | None
    additionalInfo: bool


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _unknown(name: str) -> ValueError:
    if name in UNSUPPORTED:
        return ValueError(f"pyradiomics setting {name!r} is not supported by medspark.features "
                          "(it preprocesses the image; do that before extract())")
    hint = difflib.get_close_matches(name, list(DEFAULTS), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return ValueError(f"unknown feature setting {name!r}{suggestion} "
                      f"(valid: {', '.join(sorted(DEFAULTS))})")


def _check(name: str, ok: bool, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"setting {name!r} must be {expected}, got {value!r}")


def validate(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Merge ``overrides`` into :data:`DEFAULTS` and check every value; raise ``ValueError``."""
    values = dict(DEFAULTS)
    for name, value in (overrides or {}).items():
        if name not in DEFAULTS:
            raise _unknown(name)
        values[name] = value

    bw = values["binWidth"]
    _check("binWidth", _is_number(bw) and bw > 0, "a positive number", bw)
    bc = values["binCount"]
    _check("binCount", bc is None or (_is_int(bc) and bc > 0), "None or a positive integer", bc)
    dist = values["distances"]
    _check("distances", isinstance(dist, Sequence) and not isinstance(dist, str) and len(dist) > 0
           and all(_is_int(d) and d >= 1 for d in dist), "a non-empty list of integers >= 1", dist)
    values["distances"] = tuple(int(d) for d in dist)
    for flag in ("symmetricalGLCM", "force2D", "additionalInfo"):
        _check(flag, isinstance(values[flag], bool), "True or False", values[flag])
    norm = values["weightingNorm"]
    _check("weightingNorm", norm is None or norm in WEIGHTING_NORMS,
           f"None or one of {WEIGHTING_NORMS}", norm)
    _check("gldm_a", _is_int(values["gldm_a"]) and values["gldm_a"] >= 0,
           "an integer >= 0", values["gldm_a"])
    _check("voxelArrayShift", _is_number(values["voxelArrayShift"]), "a number",
           values["voxelArrayShift"])
    _check("label", _is_int(values["label"]), "an integer", values["label"])
    _check("force2Ddimension", values["force2Ddimension"] == 0,
           "0 (a plane is always 2D: the out-of-plane axis is dimension 0)",
           values["force2Ddimension"])
    dims = values["minimumROIDimensions"]
    _check("minimumROIDimensions", _is_int(dims) and 1 <= dims <= 3, "1, 2 or 3", dims)
    size = values["minimumROISize"]
    _check("minimumROISize", size is None or (_is_int(size) and size > 0),
           "None or a positive integer", size)
    return Settings(**values)
