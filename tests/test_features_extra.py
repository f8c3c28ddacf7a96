"""The non-pyradiomics families: intensity histogram, LBP histogram, HOG statistics."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from medspark.features import check_settings, extract, feature_names


def roi(shape=(64, 64)) -> np.ndarray:
    """A rectangle away from the border (LBP compares with neighbours outside the image)."""
    mask = np.zeros(shape, bool)
    mask[4:shape[0] - 8, 5:shape[1] - 14] = True
    return mask


def test_histogram_matches_numpy_over_the_roi():
    img = np.random.default_rng(1).normal(0, 50, (64, 64))
    mask = roi()
    got = extract(img, mask, families=["histogram"], histogramBins=10,
                  histogramRange=[-100, 100])
    counts, _ = np.histogram(np.clip(img[mask], -100, 100), bins=10, range=(-100, 100))
    np.testing.assert_allclose([got[f"histogram_Bin{i:02d}"] for i in range(10)],
                               counts / mask.sum(), rtol=1e-12)
    assert sum(got.values()) == pytest.approx(1.0)


def test_lbp_histogram_counts_uniform_codes_inside_the_roi():
    img = np.random.default_rng(2).integers(0, 50, (64, 64)).astype(float)
    mask = roi()
    got = extract(img, mask, families=["lbp"])
    codes = local_binary_pattern(img.astype(np.int64), 8, 1.0, method="uniform")[mask]
    want = np.bincount(codes.astype(int), minlength=10) / mask.sum()
    np.testing.assert_allclose([got[f"lbp_Bin{i:02d}"] for i in range(10)], want)
    flat = extract(np.full((32, 32), 7.0), roi((32, 32)), families=["lbp"])
    assert flat["lbp_Bin08"] == 1.0  # every neighbour >= centre: the all-ones pattern


def test_hog_orientation_follows_the_gradient():
    cols = np.tile(np.arange(64, dtype=float), (64, 1))  # brightness grows left to right
    got = extract(cols, families=["hog"])
    orient = [got[f"hog_Orientation{i}"] for i in range(9)]
    assert int(np.argmax(orient)) == 0 and got["hog_Maximum"] > 0
    rows = cols.T  # grows top to bottom: gradient at 90 degrees
    assert int(np.argmax([extract(rows, families=["hog"])[f"hog_Orientation{i}"]
                          for i in range(9)])) == 4


def test_names_settings_and_degenerate_input():
    names = feature_names(["glcm", "hog", "histogram"], histogramBins=4)
    assert names[:24] == feature_names(["glcm"]) and names[24:28] == [
        "histogram_Bin00", "histogram_Bin01", "histogram_Bin02", "histogram_Bin03"]
    assert names[-1] == "hog_Orientation8"
    assert len(feature_names()) == 102  # extras are opt-in: the default is pyradiomics' set
    empty = extract(np.ones((16, 16)), np.zeros((16, 16)), families=["lbp", "hog"])
    assert all(np.isnan(v) for v in empty.values())
    tiny = np.zeros((16, 16), bool)
    tiny[3:5, 3:6] = True
    assert np.isfinite(list(extract(np.arange(256.0).reshape(16, 16), tiny,
                                    families=["hog"]).values())).all()
    with pytest.raises(ValueError, match="histogramBins"):
        check_settings({"histogramBins": 1})
    with pytest.raises(ValueError, match="binWidht"):
        check_settings({"binWidht": 5})
