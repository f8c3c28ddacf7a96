"""Grey Level Size Zone Matrix features, pyradiomics 3.0.1 ``RadiomicsGLSZM`` (2D).

Zones are 8-connected groups of ROI pixels with one grey level. ``skimage.measure.label`` labels
the regions of equal value of the whole grey-level image in a single pass (0 = outside the ROI
is background), so no per-grey-level loop is needed; zone sizes come from ``numpy.bincount``.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as label_regions

from medspark.features.texture import Plane

NAMES = ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
         "HighGrayLevelZoneEmphasis", "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis",
         "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity",
         "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis",
         "SmallAreaHighGrayLevelEmphasis", "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy",
         "ZonePercentage", "ZoneVariance")

EPS = np.spacing(1)
DENSE_LIMIT = 2 ** 22  # matrix elements up to which all zone sizes 1..max get a column


def matrix(plane: Plane) -> tuple[np.ndarray, np.ndarray]:
    """Size-zone matrix over present grey levels, and the zone size of each column.

    Columns are sizes 1..max, as in pyradiomics; if that matrix would be huge (many grey
    levels and a very large zone), only the sizes that occur are kept (same feature values).
    """
    zones = np.take(label_regions(plane.ranks, background=0, connectivity=2).ravel(),
                    plane.index)  # zone label of each ROI pixel
    size = np.bincount(zones)
    # Every pixel of a zone has the zone's rank, so the rank sum / size is exact.
    rank = (np.bincount(zones, weights=plane.roi_ranks) / np.maximum(size, 1))[1:]
    rank, size = rank.astype(np.intp), size[1:]
    n_levels, max_size = plane.n_levels, int(size.max())
    if n_levels * max_size <= DENSE_LIMIT:
        columns = np.arange(1, max_size + 1)
        col = size - 1
    else:
        columns, col = np.unique(size, return_inverse=True)
    counts = np.bincount((rank - 1) * len(columns) + col, minlength=n_levels * len(columns))
    return counts.reshape(n_levels, len(columns)).astype(np.float64), columns


def features(p: np.ndarray, sizes: np.ndarray, plane: Plane) -> dict[str, float]:
    """All GLSZM features from the size-zone matrix ``p`` (G, S) with column ``sizes``."""
    ps = p.sum(axis=0)
    pg = p.sum(axis=1)
    ivec = plane.grey_levels.astype(np.float64)
    jvec = np.asarray(sizes, dtype=np.float64)
    nz = p.sum() or 1.0
    n_pix = np.sum(ps * jvec) or 1.0
    used = ps != 0
    p, ps, jvec = p[:, used], ps[used], jvec[used]

    i2 = ivec[:, None] ** 2
    j2 = jvec[None, :] ** 2
    pg_n = pg / nz
    ps_n = ps / nz
    p_n = p / nz
    u_i = np.sum(pg_n * ivec)
    u_j = np.sum(ps_n * jvec)
    values = {
        "GrayLevelNonUniformity": np.sum(pg ** 2) / nz,
        "GrayLevelNonUniformityNormalized": np.sum(pg ** 2) / nz ** 2,
        "GrayLevelVariance": np.sum(pg_n * (ivec - u_i) ** 2),
        "HighGrayLevelZoneEmphasis": np.sum(pg * ivec ** 2) / nz,
        "LargeAreaEmphasis": np.sum(ps * jvec ** 2) / nz,
        "LargeAreaHighGrayLevelEmphasis": np.sum(p * i2 * j2) / nz,
        "LargeAreaLowGrayLevelEmphasis": np.sum(p * j2 / i2) / nz,
        "LowGrayLevelZoneEmphasis": np.sum(pg / ivec ** 2) / nz,
        "SizeZoneNonUniformity": np.sum(ps ** 2) / nz,
        "SizeZoneNonUniformityNormalized": np.sum(ps ** 2) / nz ** 2,
        "SmallAreaEmphasis": np.sum(ps / jvec ** 2) / nz,
        "SmallAreaHighGrayLevelEmphasis": np.sum(p * i2 / j2) / nz,
        "SmallAreaLowGrayLevelEmphasis": np.sum(p / (i2 * j2)) / nz,
        "ZoneEntropy": -np.sum(p_n * np.log2(p_n + EPS)),
        "ZonePercentage": nz / n_pix,
        "ZoneVariance": np.sum(ps_n * (jvec - u_j) ** 2),
    }
    return {name: float(values[name]) for name in NAMES}


def compute(plane: Plane) -> dict[str, float]:
    """GLSZM features of ``plane``."""
    return features(*matrix(plane), plane)
