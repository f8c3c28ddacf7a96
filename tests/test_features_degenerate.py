"""Degenerate planes and bad input: defined results (never an exception or a warning) for the
former, a clear ``ValueError`` for the latter."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from medspark.features import extract, feature_names

ALL = feature_names()
FAMILY_COUNTS = {"glcm": 24, "gldm": 14, "ngtdm": 5}


def disk(size: int = 24, radius: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius ** 2


def quiet_extract(*args, **kwargs) -> dict[str, float]:
    """``extract`` with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return extract(*args, **kwargs)


def ramp(shape=(24, 24)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape) % 97


def all_nan(feats: dict[str, float]) -> bool:
    return list(feats) == ALL and all(np.isnan(v) for v in feats.values())


def test_empty_mask_gives_all_nan():
    assert all_nan(quiet_extract(ramp(), np.zeros((24, 24), bool)))


def test_label_absent_from_mask_gives_all_nan():
    assert all_nan(quiet_extract(ramp(), disk().astype(np.uint8), label=3))


def test_one_pixel_mask_gives_all_nan():
    """pyradiomics refuses a single-voxel ROI; medspark returns NaN for every feature."""
    roi = np.zeros((24, 24), bool)
    roi[4, 7] = True
    assert all_nan(quiet_extract(ramp(), roi))


def test_one_row_roi_needs_minimum_roi_dimensions_1():
    roi = np.zeros((24, 24), bool)
    roi[4, 2:20] = True
    assert all_nan(quiet_extract(ramp(), roi))  # default minimumROIDimensions=2
    feats = quiet_extract(ramp(), roi, minimumROIDimensions=1)
    assert feats["shape2D_PixelSurface"] == 18.0
    assert feats["firstorder_Mean"] == pytest.approx(float(ramp()[4, 2:20].mean()))


def test_minimum_roi_size_is_exclusive_like_pyradiomics():
    roi = disk()
    n = int(roi.sum())
    assert all_nan(quiet_extract(ramp(), roi, minimumROISize=n))
    assert not np.isnan(quiet_extract(ramp(), roi, minimumROISize=n - 1)["firstorder_Mean"])


@pytest.mark.parametrize("value", [0.0, 7.0, -1024.0, 0.1])
def test_constant_image_has_defined_values(value):
    feats = quiet_extract(np.full((24, 24), value), disk())
    assert all(np.isfinite(v) for v in feats.values())
    assert abs(feats["firstorder_Variance"]) < 1e-30  # 0.1 is inexact: the mean is off by an ulp
    assert feats["firstorder_Range"] == 0.0
    assert feats["firstorder_Uniformity"] == 1.0
    assert abs(feats["firstorder_Entropy"]) < 1e-15
    assert feats["glcm_JointEnergy"] == 1.0
    assert feats["glcm_Contrast"] == 0.0
    assert feats["glcm_Correlation"] == 1.0  # pyradiomics' value for a flat region
    assert feats["glcm_MCC"] == 1.0  # a single grey level
    assert feats["glszm_GrayLevelVariance"] == 0.0
    assert feats["ngtdm_Coarseness"] == 1e6  # pyradiomics' cap when sum(p_i s_i) == 0
    assert feats["ngtdm_Busyness"] == 0.0


def test_all_zero_image():
    feats = quiet_extract(np.zeros((24, 24)), disk())
    assert feats["firstorder_Energy"] == 0.0
    assert feats["firstorder_RootMeanSquared"] == 0.0
    assert feats["firstorder_Skewness"] == 0.0
    assert feats["firstorder_Kurtosis"] == 0.0
    assert all(np.isfinite(v) for v in feats.values())


def test_no_mask_on_all_zero_image():
    feats = quiet_extract(np.zeros((16, 16), np.uint8))
    assert feats["shape2D_PixelSurface"] == 256.0
    assert feats["firstorder_Maximum"] == 0.0


def test_nan_pixels_are_excluded_from_the_roi():
    image = ramp()
    roi = disk()
    holes = np.zeros_like(roi)
    holes[10:13, 5:15] = True
    with_nan = image.copy()
    with_nan[holes] = np.nan
    assert quiet_extract(with_nan, roi) == quiet_extract(image, roi & ~holes)
    with_inf = image.copy()
    with_inf[holes] = np.inf
    assert quiet_extract(with_inf, roi) == quiet_extract(image, roi & ~holes)


def test_all_nan_image_gives_all_nan():
    assert all_nan(quiet_extract(np.full((24, 24), np.nan), disk()))
    assert all_nan(quiet_extract(np.full((24, 24), np.nan)))


def test_two_pixel_roi():
    roi = np.zeros((24, 24), bool)
    roi[5, 5] = roi[6, 6] = True
    feats = quiet_extract(ramp(), roi)
    assert np.isnan(feats["firstorder_RobustMeanAbsoluteDeviation"])  # no pixel in [p10, p90]
    assert feats["glcm_JointEnergy"] == 0.5  # one diagonal pair, counted both ways


@pytest.mark.parametrize("distances", [[3], [5, 7]])
def test_distances_beyond_the_roi_give_nan_for_those_families(distances):
    roi = np.zeros((24, 24), bool)
    roi[5:8, 5:8] = True  # 3x3 bounding box: offsets >= 3 do not fit
    feats = quiet_extract(ramp(), roi, distances=distances)
    for name, value in feats.items():
        family = name.split("_")[0]
        assert np.isnan(value) == (family in FAMILY_COUNTS), name


def test_roi_without_adjacent_pixels():
    roi = np.zeros((24, 24), bool)
    roi[::4, ::4] = True
    feats = quiet_extract(ramp(), roi)
    assert all(np.isnan(feats[n]) for n in ALL if n.startswith("glcm_"))
    assert feats["glszm_ZonePercentage"] == 1.0  # every pixel is its own zone
    assert feats["ngtdm_Coarseness"] == 1e6


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint16, np.float32, bool])
def test_any_numeric_dtype(dtype):
    image = (ramp() % 2 if dtype is bool else ramp()).astype(dtype)
    feats = quiet_extract(image, disk())
    assert list(feats) == ALL
    assert feats["firstorder_Mean"] == pytest.approx(float(image[disk()].astype(float).mean()))


def test_boolean_mask_and_integer_mask_agree():
    roi = disk()
    assert quiet_extract(ramp(), roi) == quiet_extract(ramp(), roi.astype(np.int32))


# ---- bad input --------------------------------------------------------------------------------

def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="'binwidth'.*did you mean 'binWidth'"):
        extract(ramp(), disk(), binwidth=10)
    with pytest.raises(ValueError, match="'resampledPixelSpacing' is not supported"):
        extract(ramp(), disk(), resampledPixelSpacing=[1, 1, 0])


@pytest.mark.parametrize("settings", [
    {"binWidth": 0}, {"binWidth": -5}, {"binCount": 0}, {"binCount": 2.5},
    {"distances": []}, {"distances": [0]}, {"distances": 1}, {"symmetricalGLCM": "yes"},
    {"weightingNorm": "chebyshev"}, {"gldm_a": -1}, {"gldm_a": 0.5}, {"force2Ddimension": 1},
    {"minimumROIDimensions": 0}, {"minimumROISize": 0}, {"label": 1.5},
])
def test_invalid_setting_values(settings):
    (name,) = settings
    with pytest.raises(ValueError, match=name):
        extract(ramp(), disk(), **settings)


def test_bad_arrays():
    with pytest.raises(ValueError, match="2D"):
        extract(np.zeros((2, 24, 24)))
    with pytest.raises(ValueError, match="does not match"):
        extract(ramp(), np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="numeric"):
        extract(np.full((4, 4), "a"))
    for spacing in [(0.0, 1.0), 1.0, (1.0, 1.0, 1.0), ("a", 1)]:
        with pytest.raises(ValueError, match="spacing"):
            extract(ramp(), disk(), spacing=spacing)
    with pytest.raises(ValueError, match="unknown feature family 'shape'"):
        extract(ramp(), disk(), families=["shape"])


def test_thousands_of_grey_levels_stay_bounded():
    """A tiny bin width on wide-range data gives ~40000 levels: pyradiomics runs out of memory;
    medspark returns NaN for GLCM and the pairwise NGTDM features and computes the rest."""
    image = np.random.default_rng(0).normal(0.0, 1e5, (200, 200))
    feats = quiet_extract(image, binWidth=0.5)
    nan = {name for name, value in feats.items() if np.isnan(value)}
    assert nan == {n for n in ALL if n.startswith("glcm_")} | {
        "ngtdm_Busyness", "ngtdm_Complexity", "ngtdm_Contrast", "ngtdm_Strength"}
    assert feats["glszm_ZonePercentage"] > 0.9  # nearly every pixel is its own zone


def test_keep_freed_memory_is_applied_once_and_changes_no_value():
    from medspark.features import allocator

    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() is first  # idempotent
    assert isinstance(first, bool)
    assert quiet_extract(ramp(), disk()) == quiet_extract(ramp(), disk())
