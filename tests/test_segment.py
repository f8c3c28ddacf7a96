"""Segmentation: thresholds, edges, morphology, components and CT body/lung masks."""

from __future__ import annotations

import numpy as np
import pytest

from medspark.segment import anatomy, components, edges, morphology
from medspark.segment import threshold as th

SPACING = (0.7, 0.7)


def ellipse(shape, center, axes):
    r, c = np.ogrid[: shape[0], : shape[1]]
    return ((r - center[0]) / axes[0]) ** 2 + ((c - center[1]) / axes[1]) ** 2 <= 1


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def chest_ct(seed: int = 0, bridge: bool = False, lungs: bool = True, noise: float = 25.0):
    """Synthetic 512x512 chest CT slice in HU (int16) and its ground-truth regions.

    Air -1000, body ellipse 40 HU with a 700 HU bone ring, two lungs around -850 HU with
    vessels (60 HU dots) and a nodule touching the pleura, a small trachea (-1000 HU), a table
    bar 14 px under the body (optionally joined to it by a thin cushion bridge), and noise.
    """
    shape = (512, 512)
    rng = np.random.default_rng(seed)
    img = np.full(shape, -1000.0)
    body = ellipse(shape, (256, 256), (150, 200))
    img[body] = 40
    ring = ellipse(shape, (256, 256), (140, 190)) & ~ellipse(shape, (256, 256), (132, 182))
    img[ring] = 700
    lung = np.zeros(shape, bool)
    if lungs:
        lung = ellipse(shape, (250, 170), (90, 60)) | ellipse(shape, (250, 342), (90, 60))
        img[lung] = -850
        for _ in range(40):  # vessels inside the lungs
            r, c = rng.integers(170, 330), rng.choice([rng.integers(125, 215),
                                                       rng.integers(297, 387)])
            if lung[r, c]:
                img[ellipse(shape, (r, c), (2, 2)) & lung] = 60
        img[ellipse(shape, (250, 110), (5, 5)) & lung] = 30  # juxtapleural nodule, 3.5 mm
        img[ellipse(shape, (140, 256), (6, 6))] = -1000  # trachea
    table = np.zeros(shape, bool)
    table[420:428, 80:432] = True
    img[table] = 200
    if bridge:
        img[400:420, 250:254] = 0
    img += rng.normal(0, noise, shape)
    return img.astype(np.int16), body, lung, table


# ---------------------------------------------------------------------------- thresholds

def test_fixed_threshold_and_hu_range():
    x = np.array([[-1000, -500, -100, 0, 100, 500]], np.int16)
    np.testing.assert_array_equal(th.fixed(x, None, lower=-100, upper=100), [[0, 0, 1, 1, 1, 0]])
    np.testing.assert_array_equal(th.fixed(x, None, upper=-500), [[1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(th.hu_range(x, None, preset="fat"), [[0, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(th.hu_range(x, None, preset="bone"), [[0, 0, 0, 0, 0, 1]])
    with pytest.raises(ValueError, match="not both"):
        th.hu_range(x, None, preset="fat", lower=0)
    with pytest.raises(ValueError, match="lower, upper"):
        th.fixed(x, None)


def test_otsu_separates_two_levels():
    rng = np.random.default_rng(1)
    truth = ellipse((128, 128), (64, 64), (30, 40))
    img = np.where(truth, 200.0, 10.0) + rng.normal(0, 5, truth.shape)
    mask = th.otsu(img, None)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, truth)
    np.testing.assert_array_equal(th.otsu(img, None, foreground="dark"), ~truth)


def test_otsu_within_mask_uses_only_masked_pixels():
    img = np.zeros((64, 64), np.float32)
    img[:, 32:] = 1000  # a huge bright region outside the mask would dominate a global Otsu
    img[10:20, 5:15] = 50
    left = np.zeros(img.shape, bool)
    left[:, :32] = True
    mask = th.otsu(img, None, mask=left)
    expected = np.zeros(img.shape, bool)
    expected[10:20, 5:15] = True
    np.testing.assert_array_equal(mask, expected)
    assert th.otsu(np.full((8, 8), 3.0), None).sum() == 0


def test_adaptive_threshold_copes_with_uneven_illumination():
    r, c = np.mgrid[:200, :200]
    truth = np.zeros((200, 200), bool)
    for rr in range(20, 200, 40):
        for cc in range(20, 200, 40):
            truth[rr - 6 : rr + 6, cc - 6 : cc + 6] = True
    img = 2.0 * c + 40.0 * truth  # strong gradient, small local contrast
    global_mask = th.otsu(img, None)
    local_mask = th.adaptive(img, None, block_size=31, offset=5)  # 5 above the local mean
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    assert iou(local_mask, truth) > 0.8 > iou(global_mask, truth)
    dark = th.adaptive(-img, None, block_size=31, offset=5, foreground="dark")
    np.testing.assert_array_equal(dark, local_mask)


def test_rgb_input_is_reduced_to_luma():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:24, 8:24] = (200, 180, 160)
    mask = th.otsu(rgb, None)
    assert mask.shape == (32, 32) and mask.sum() == 256


# ---------------------------------------------------------------------------- edges

def _square(scale: float = 1.0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((100, 100))
    img[30:70, 30:70] = 1.0
    boundary = morphology.dilate(img > 0, None, radius=2) & ~morphology.erode(img > 0, None,
                                                                            radius=2)
    return img * scale + offset, boundary


def test_canny_finds_square_boundary_in_any_units():
    img, boundary = _square()
    e = edges.canny(img, None, sigma=1.0)
    assert e.sum() > 100 and not (e & ~boundary).any()
    hu, _ = _square(scale=1000, offset=-500)
    np.testing.assert_array_equal(edges.canny(hu, None), e)
    assert edges.canny(np.zeros((20, 20)), None).sum() == 0
    q = edges.canny(img, None, low=0.9, high=0.95, use_quantiles=True)
    assert q.sum() > 0 and not (q & ~boundary).any()


def test_sobel_edges_threshold_quantile_and_otsu():
    img, boundary = _square(scale=100)
    for kw in ({"threshold": 20.0}, {"quantile": 0.9}, {}):
        e = edges.sobel(img, None, **kw)
        assert e.sum() > 100 and not (e & ~boundary).any(), kw
    with pytest.raises(ValueError, match="not both"):
        edges.sobel(img, None, threshold=1.0, quantile=0.5)


# ---------------------------------------------------------------------------- morphology

def test_open_removes_specks_close_fills_gaps_fill_holes():
    blob = ellipse((100, 100), (50, 50), (30, 30))
    specks = blob.copy()
    specks[5, 5] = specks[90, 10] = True
    opened = morphology.opening(specks, None, radius=2)
    assert not opened[5, 5] and not opened[90, 10]
    assert abs(int(opened.sum()) - int(blob.sum())) < 0.02 * blob.sum()
    gap = blob.copy()
    gap[:, 49:51] = False
    closed = morphology.closing(gap, None, radius=2)
    assert closed[50, 49] and closed[50, 50]
    ring = blob & ~ellipse((100, 100), (50, 50), (20, 20))
    filled = morphology.fill_holes(ring, None)
    np.testing.assert_array_equal(filled, blob)


def test_erode_dilate_and_mm_radius():
    blob = ellipse((101, 101), (50, 50), (20, 20))
    assert morphology.erode(blob, None, radius=3).sum() < blob.sum()
    assert morphology.dilate(blob, None, radius=3).sum() > blob.sum()
    np.testing.assert_array_equal(morphology.dilate(blob, None, radius=0), blob)
    point = np.zeros((41, 41), bool)
    point[20, 20] = True
    grown = morphology.dilate(point, (1.0, 0.5), radius=4, units="mm")  # 4 rows x 8 cols px
    rows, cols = np.nonzero(grown)
    assert rows.max() - rows.min() == 8 and cols.max() - cols.min() == 16
    with pytest.raises(ValueError, match="spacing"):
        morphology.dilate(point, None, radius=4, units="mm")


def test_masks_accept_uint8_input():
    m = np.zeros((20, 20), np.uint8)
    m[5:15, 5:15] = 255
    assert morphology.erode(m, None, radius=1).sum() == 64


# ---------------------------------------------------------------------------- components

def _blobs() -> np.ndarray:
    m = np.zeros((100, 100), bool)
    m[5:25, 5:25] = True  # 400 px
    m[40:50, 40:50] = True  # 100 px
    m[70:76, 70:76] = True  # 36 px
    m[0:3, 90:100] = True  # 30 px, touching the border
    return m


def test_largest_and_top_k():
    m = _blobs()
    assert components.largest(m).sum() == 400
    top2 = components.top_k(m, k=2)
    assert top2.sum() == 500 and top2[45, 45] and not top2[72, 72]
    assert components.top_k(m, k=10).sum() == m.sum()
    assert components.largest(np.zeros((5, 5), bool)).sum() == 0


def test_min_area_in_px_and_mm():
    m = _blobs()
    assert components.min_area(m, area=100).sum() == 500
    # 0.5 x 0.5 mm pixels: 25 mm^2 = 100 px
    assert components.min_area(m, (0.5, 0.5), area=25, units="mm").sum() == 500


def test_clear_border_and_connectivity():
    m = _blobs()
    assert components.clear_border(m).sum() == 536
    diagonal = np.eye(6, dtype=bool)
    assert components.largest(diagonal, connectivity=8).sum() == 6
    assert components.largest(diagonal, connectivity=4).sum() == 1


# ---------------------------------------------------------------------------- anatomy

@pytest.mark.parametrize("bridge", [False, True])
def test_body_mask_excludes_table_and_air(bridge):
    img, body, lung, table = chest_ct(bridge=bridge)
    mask = anatomy.body_mask(img, SPACING)
    assert mask.dtype == np.bool_
    assert (mask & table).sum() == 0
    assert dice(mask, body) > 0.98
    assert (mask & ~body).sum() < 0.005 * body.sum()  # hardly any air
    assert mask[lung].all()  # lungs are inside the body (holes filled)


def test_lung_mask_matches_synthetic_lungs():
    for seed in range(3):
        img, _, lung, table = chest_ct(seed=seed, bridge=seed == 1)
        mask = anatomy.lung_mask(img, SPACING)
        assert dice(mask, lung) >= 0.97, seed
        assert not mask[140, 256]  # trachea dropped
        assert mask[250, 114]  # the juxtapleural nodule is (mostly) closed into the lung
        assert (mask & table).sum() == 0


def test_lung_mask_after_downsampling_with_px_units():
    img, _, lung, _ = chest_ct(noise=10)
    small = img[::2, ::2]
    mask = anatomy.lung_mask(small, None, units="px", body_open_radius=3, close_radius=1)
    assert dice(mask, lung[::2, ::2]) >= 0.95


def test_lung_mask_empty_without_lungs_and_needs_spacing_for_mm():
    img, *_ = chest_ct(lungs=False)
    assert anatomy.lung_mask(img, SPACING).sum() == 0
    with pytest.raises(ValueError, match="spacing"):
        anatomy.lung_mask(img, None)
