"""medspark.features vs pyradiomics 3.0.1 (the reference implementation), feature by feature.

pyradiomics gets each plane as a (1, rows, cols) SimpleITK image with ``force2D=True,
force2Ddimension=0`` and only the ``Original`` image type; every feature must agree within
1e-6 relative or 1e-9 absolute. Images: a real CT slice (pydicom's CT_small.dcm, in HU) and
random images, under several masks and settings.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import radiomics  # a plain import on purpose: a missing pyradiomics must fail the suite
import SimpleITK as sitk
from pydicom import dcmread
from pydicom.data import get_testdata_file
from radiomics import featureextractor
from radiomics.shape2D import RadiomicsShape2D

from medspark.features import FAMILIES, extract, feature_names, glrlm, glszm

radiomics.setVerbosity(logging.ERROR)
RTOL, ATOL = 1e-6, 1e-9


def pyradiomics_features(image: np.ndarray, roi: np.ndarray, spacing=(1.0, 1.0), label: int = 1,
                         families=FAMILIES, **settings) -> dict[str, float]:
    """pyradiomics' extractor on one plane; keys without the ``original_`` prefix.

    The plane is padded with one background pixel all round, because pyradiomics refuses a mask
    without background; padding moves nothing, as the extractor crops to the ROI anyway.
    """
    img = np.pad(np.nan_to_num(np.asarray(image, dtype=np.float64)), 1)
    msk = np.pad(roi.astype(np.uint8) * label, 1)
    sitk_image = sitk.GetImageFromArray(img[None])
    sitk_image.SetSpacing((float(spacing[1]), float(spacing[0]), 1.0))
    sitk_mask = sitk.GetImageFromArray(msk[None])
    sitk_mask.CopyInformation(sitk_image)
    extractor = featureextractor.RadiomicsFeatureExtractor(
        force2D=True, force2Ddimension=0, label=label, **settings)
    extractor.disableAllFeatures()
    for family in families:
        extractor.enableFeatureClassByName(family)
    with warnings.catch_warnings():  # pyradiomics' own "Mean of empty slice" etc.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = extractor.execute(sitk_image, sitk_mask)
    return {k.removeprefix("original_"): float(v) for k, v in result.items()
            if k.startswith("original_")}


def assert_parity(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert set(ours) == set(ref), sorted(set(ours) ^ set(ref))
    bad = []
    for name, expected in ref.items():
        got = ours[name]
        if np.isnan(expected) and np.isnan(got):
            continue
        if not np.isclose(got, expected, rtol=RTOL, atol=ATOL):
            bad.append(f"{name}: ours={got!r} pyradiomics={expected!r}")
    assert not bad, "\n".join(bad)


# ---- images and masks -------------------------------------------------------------------------

def ct_slice() -> tuple[np.ndarray, tuple[float, float]]:
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return hu, (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))


def make_mask(kind: str, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols]
    if kind == "disk":
        return (yy - rows * 0.5) ** 2 + (xx - cols * 0.45) ** 2 < (0.3 * min(shape)) ** 2
    if kind == "rectangle":
        return (yy >= rows // 5) & (yy < rows * 3 // 4) & (xx >= cols // 3) & (xx < cols - 7)
    if kind == "blob":  # irregular: several components, holes and ragged edges
        rng = np.random.default_rng(11)
        noise = rng.normal(size=shape)
        kernel = np.ones(9) / 9
        for axis in (0, 1):
            noise = np.apply_along_axis(np.convolve, axis, noise, kernel, mode="same")
        return noise > 0.05
    if kind == "border":  # touches all four image edges
        return (((yy < rows // 3) & (xx < cols // 2)) | (xx >= cols - 6)
                | ((yy >= rows - 4) & (xx > cols // 4)))
    raise ValueError(kind)


MASKS = ("disk", "rectangle", "blob", "border")
SETTINGS = {
    "default": {},
    "binWidth10": {"binWidth": 10},
    "binCount16": {"binCount": 16},
    "binCount32": {"binCount": 32},
    "distances12": {"distances": [1, 2]},
    "asymmetric": {"symmetricalGLCM": False},
    "manhattan": {"weightingNorm": "manhattan"},
    "euclidean": {"weightingNorm": "euclidean"},
    "infinity": {"weightingNorm": "infinity"},
    "no_weighting": {"weightingNorm": "no_weighting"},
    "gldm_a1": {"gldm_a": 1},
    "shift": {"voxelArrayShift": 1000},
}


@pytest.fixture(scope="module")
def ct():
    return ct_slice()


# ---- the parity cases -------------------------------------------------------------------------

@pytest.mark.parametrize("mask_kind", MASKS)
def test_ct_slice_masks(ct, mask_kind):
    image, spacing = ct
    roi = make_mask(mask_kind, image.shape)
    assert_parity(extract(image, roi, spacing=spacing),
                  pyradiomics_features(image, roi, spacing))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_ct_slice_settings(ct, name):
    image, _ = ct
    roi = make_mask("blob", image.shape)
    spacing = (0.7, 0.55)  # anisotropic: exercises the distance weighting and shape
    assert_parity(extract(image, roi, spacing=spacing, **SETTINGS[name]),
                  pyradiomics_features(image, roi, spacing, **SETTINGS[name]))


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("settings", ["binWidth10", "distances12", "asymmetric"])
def test_uniform_integer_image(mask_kind, settings):
    image = np.random.default_rng(5).integers(0, 256, (72, 80)).astype(np.int16)
    roi = make_mask(mask_kind, image.shape)
    assert_parity(extract(image, roi, **SETTINGS[settings]),
                  pyradiomics_features(image, roi, **SETTINGS[settings]))


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("settings", ["default", "binCount32", "euclidean", "gldm_a1"])
def test_normal_float_image(mask_kind, settings):
    image = np.random.default_rng(6).normal(40.0, 120.0, (80, 72))
    roi = make_mask(mask_kind, image.shape)
    assert_parity(extract(image, roi, spacing=(1.2, 0.8), **SETTINGS[settings]),
                  pyradiomics_features(image, roi, (1.2, 0.8), **SETTINGS[settings]))


def test_no_mask_is_whole_plane(ct):
    image, spacing = ct
    assert_parity(extract(image, spacing=spacing),
                  pyradiomics_features(image, np.ones(image.shape, bool), spacing))


def test_label_selects_roi(ct):
    image, spacing = ct
    labels = make_mask("disk", image.shape).astype(np.uint8) * 2
    labels[make_mask("rectangle", image.shape) & (labels == 0)] = 1
    assert_parity(extract(image, labels, spacing=spacing, label=2),
                  pyradiomics_features(image, labels == 2, spacing, label=2))


def test_nan_pixels_are_left_out_of_the_roi(ct):
    image, spacing = ct
    image = image.copy()
    roi = make_mask("disk", image.shape)
    image[40:44, 30:90] = np.nan
    image[::17, ::13] = np.nan
    assert_parity(extract(image, roi, spacing=spacing),
                  pyradiomics_features(image, roi & np.isfinite(image), spacing))


@pytest.mark.parametrize("settings", ["default", "binCount16"])
@pytest.mark.parametrize("case", ["constant", "on_bin_edge", "zeros", "two_levels",
                                  "checkerboard"])
def test_flat_and_binary_images(case, settings):
    yy, xx = np.mgrid[:40, :40]
    image = {"constant": np.full((40, 40), 123.0), "on_bin_edge": np.full((40, 40), 75.0),
             "zeros": np.zeros((40, 40)), "two_levels": (xx > 20) * 100.0,
             "checkerboard": ((xx + yy) % 2) * 100.0}[case]
    roi = make_mask("disk", image.shape)
    assert_parity(extract(image, roi, **SETTINGS[settings]),
                  pyradiomics_features(image, roi, **SETTINGS[settings]))


@pytest.mark.parametrize("pattern", ["sparse", "diagonal", "two_pixels", "row"])
def test_thin_and_sparse_rois(pattern):
    image = np.random.default_rng(8).normal(0.0, 50.0, (32, 32))
    roi = np.zeros(image.shape, bool)
    settings = {}
    if pattern == "sparse":  # no two ROI pixels adjacent: every GLCM angle is empty
        roi[::3, ::3] = True
    elif pattern == "diagonal":
        roi[np.arange(12), np.arange(12) + 3] = True
    elif pattern == "two_pixels":
        roi[5, 5] = roi[6, 6] = True
    else:
        roi[5, 3:25] = True
        settings = {"minimumROIDimensions": 1}
    assert_parity(extract(image, roi, **settings), pyradiomics_features(image, roi, **settings))


def test_single_column_roi_shape_matches_the_shape2d_class():
    """pyradiomics' extractor skips shape2D for a one-column ROI (it checks the x size where it
    means the out-of-plane one); medspark computes it, equal to RadiomicsShape2D itself."""
    image = np.random.default_rng(9).normal(0.0, 50.0, (32, 32))
    roi = np.zeros(image.shape, bool)
    roi[3:20, 5] = True
    ours = extract(image, roi, minimumROIDimensions=1)
    ref = pyradiomics_features(image, roi, minimumROIDimensions=1)
    assert not any(k.startswith("shape2D_") for k in ref)
    assert_parity({k: v for k, v in ours.items() if not k.startswith("shape2D_")}, ref)

    cropped = roi[3:20, 5:6].astype(np.uint8)[None]
    sitk_mask = sitk.GetImageFromArray(cropped)
    sitk_image = sitk.GetImageFromArray(image[3:20, 5:6][None])
    shape = RadiomicsShape2D(sitk_image, sitk_mask, force2D=True, force2Ddimension=0)
    ref_shape = {f"shape2D_{k}": float(v) for k, v in shape.execute().items()}
    assert_parity({k: v for k, v in ours.items() if k.startswith("shape2D_")}, ref_shape)


def test_output_keys_follow_pyradiomics_names(ct):
    image, spacing = ct
    feats = extract(image, make_mask("disk", image.shape), spacing=spacing)
    assert list(feats) == feature_names()
    counts = {fam: sum(k.startswith(fam + "_") for k in feats) for fam in FAMILIES}
    assert counts == {"firstorder": 18, "shape2D": 9, "glcm": 24, "glrlm": 16, "glszm": 16,
                      "gldm": 14, "ngtdm": 5}
    assert all(isinstance(v, float) for v in feats.values())


def test_families_argument_selects_families(ct):
    image, spacing = ct
    roi = make_mask("disk", image.shape)
    full = extract(image, roi, spacing=spacing)
    some = extract(image, roi, spacing=spacing, families=["ngtdm", "firstorder"])
    assert list(some) == feature_names(["firstorder", "ngtdm"])
    assert all(some[k] == full[k] for k in some)


@pytest.mark.parametrize("module", [glrlm, glszm])
def test_sparse_size_columns_match(ct, module, monkeypatch):
    """With thousands of grey levels, GLRLM/GLSZM keep only the run lengths / zone sizes that
    occur; forcing that path on an ordinary plane must not change any value."""
    monkeypatch.setattr(module, "DENSE_LIMIT", 0)
    image, spacing = ct
    roi = make_mask("blob", image.shape)
    family = module.__name__.rsplit(".", 1)[1]
    ours = extract(image, roi, spacing=spacing, families=[family], binWidth=5)
    ref = pyradiomics_features(image, roi, spacing, binWidth=5)
    assert_parity(ours, {k: v for k, v in ref.items() if k.startswith(family + "_")})


@pytest.mark.parametrize("settings", [{"binWidth": 25}, {"binWidth": 10}, {"binWidth": 0.3},
                                      {"binWidth": 7}, {"binCount": 16}, {"binCount": 5}])
def test_discretisation_matches_pyradiomics_binning(settings):
    from radiomics import imageoperations

    from medspark.features.discretize import discretize

    rng = np.random.default_rng(12)
    samples = [rng.normal(0, 300, 5000), rng.integers(-1024, 3000, 5000).astype(float),
               np.round(rng.normal(40, 30, 5000) / 5) * 5, np.full(50, 75.0), np.full(50, 3.3)]
    for values in samples:
        ref, _ = imageoperations.binImage(values, None, **settings)
        got = discretize(values, settings.get("binWidth", 25), settings.get("binCount"))
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("settings", ["default", "asymmetric", "distances12"])
def test_disconnected_grey_level_groups(settings):
    """Two ROI parts with disjoint grey levels: the GLCM splits into blocks and MCC's largest
    eigenvalues coincide (1, 1) up to pyradiomics' eps; the second must still match."""
    rng = np.random.default_rng(13)
    image = np.where(np.arange(64)[None, :] < 32, rng.normal(100, 20, (48, 64)),
                     rng.normal(900, 20, (48, 64)))
    yy, xx = np.mgrid[:48, :64]
    roi = ((yy - 24) ** 2 + (xx - 14) ** 2 < 120) | ((yy - 24) ** 2 + (xx - 50) ** 2 < 120)
    assert_parity(extract(image, roi, **SETTINGS[settings]),
                  pyradiomics_features(image, roi, **SETTINGS[settings]))


def test_many_grey_levels():
    """~12000 grey levels up to ~30000 (wider than int16 once offset per angle): GLRLM, GLSZM
    and GLDM still match (pyradiomics' GLCM/NGTDM would need gigabytes here)."""
    image = np.random.default_rng(14).integers(0, 30000, (120, 120)).astype(float)
    roi = np.ones(image.shape, bool)
    families = ["glrlm", "glszm", "gldm"]
    ours = extract(image, roi, families=families, binWidth=1)
    assert 3 * len(np.unique(image)) > np.iinfo(np.int16).max
    assert_parity(ours, pyradiomics_features(image, roi, families=families, binWidth=1))
