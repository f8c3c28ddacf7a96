"""Grey Level Dependence Matrix features, pyradiomics 3.0.1 ``RadiomicsGLDM`` (2D).

A neighbour (every in-plane offset at the ``distances``, both directions) is dependent when it
lies in the ROI and its grey level differs by at most ``gldm_a``. Dependences are counted with
shifted array views, one comparison per pair of pixels credited to both (the relation is
symmetric), and binned with ``numpy.bincount`` over the grey levels present.
"""

from __future__ import annotations

import numpy as np

from medspark.features.angles import angles as make_angles
from medspark.features.angles import shifted_pairs
from medspark.features.settings import Settings
from medspark.features.texture import Plane

NAMES = ("DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized",
         "DependenceVariance", "GrayLevelNonUniformity", "GrayLevelVariance",
         "HighGrayLevelEmphasis", "LargeDependenceEmphasis",
         "LargeDependenceHighGrayLevelEmphasis", "LargeDependenceLowGrayLevelEmphasis",
         "LowGrayLevelEmphasis", "SmallDependenceEmphasis",
         "SmallDependenceHighGrayLevelEmphasis", "SmallDependenceLowGrayLevelEmphasis")

EPS = np.spacing(1)


def matrix(plane: Plane, settings: Settings) -> np.ndarray | None:
    """Dependence matrix, shape ``(G, 2 * angles + 1)``; ``None`` if no offset fits."""
    offsets = make_angles(plane.shape, settings.distances, bidirectional=True)
    if len(offsets) == 0:
        return None
    # Dependence is symmetric, so each uni-directional offset is compared once and credited
    # to both pixels of the pair (only ROI pixels' counts are read back).
    levels = plane.levels
    dep = np.zeros(plane.shape, dtype=np.uint8 if len(offsets) < 255 else np.int32)
    alpha = settings.gldm_a
    for dy, dx in offsets[: len(offsets) // 2]:
        centre, neighbour = shifted_pairs(plane.shape, int(dy), int(dx))
        a, b = levels[centre], levels[neighbour]
        # alpha 0: equal levels (pairs of two outside pixels are never read back)
        dependent = (a == b) if alpha == 0 else (a > 0) & (b > 0) & (np.abs(a - b) <= alpha)
        dep[centre] += dependent
        dep[neighbour] += dependent
    width = 2 * len(offsets) + 1
    code = (plane.roi_ranks - 1) * width + np.take(dep.ravel(), plane.index)
    counts = np.bincount(code, minlength=plane.n_levels * width)
    return counts.reshape(plane.n_levels, width).astype(np.float64)


def features(p: np.ndarray, plane: Plane) -> dict[str, float]:
    """All GLDM features from the dependence matrix ``p`` (G, D)."""
    jvec = np.arange(1, p.shape[1] + 1, dtype=np.float64)
    pd = p.sum(axis=0)
    pg = p.sum(axis=1)
    used = pd != 0
    p, jvec, pd = p[:, used], jvec[used], pd[used]
    nz = pd.sum() or 1.0
    ivec = plane.grey_levels.astype(np.float64)

    i2 = ivec[:, None] ** 2
    j2 = jvec[None, :] ** 2
    pg_n = pg / nz
    pd_n = pd / nz
    p_n = p / nz
    u_i = np.sum(pg_n * ivec)
    u_j = np.sum(pd_n * jvec)
    values = {
        "DependenceEntropy": -np.sum(p_n * np.log2(p_n + EPS)),
        "DependenceNonUniformity": np.sum(pd ** 2) / nz,
        "DependenceNonUniformityNormalized": np.sum(pd ** 2) / nz ** 2,
        "DependenceVariance": np.sum(pd_n * (jvec - u_j) ** 2),
        "GrayLevelNonUniformity": np.sum(pg ** 2) / nz,
        "GrayLevelVariance": np.sum(pg_n * (ivec - u_i) ** 2),
        "HighGrayLevelEmphasis": np.sum(pg * ivec ** 2) / nz,
        "LargeDependenceEmphasis": np.sum(pd * jvec ** 2) / nz,
        "LargeDependenceHighGrayLevelEmphasis": np.sum(p * (j2 * i2)) / nz,
        "LargeDependenceLowGrayLevelEmphasis": np.sum(p * j2 / i2) / nz,
        "LowGrayLevelEmphasis": np.sum(pg / ivec ** 2) / nz,
        "SmallDependenceEmphasis": np.sum(pd / jvec ** 2) / nz,
        "SmallDependenceHighGrayLevelEmphasis": np.sum(p * i2 / j2) / nz,
        "SmallDependenceLowGrayLevelEmphasis": np.sum(p / (i2 * j2)) / nz,
    }
    return {name: float(values[name]) for name in NAMES}


def compute(plane: Plane, settings: Settings) -> dict[str, float]:
    """GLDM features of ``plane``; all NaN when no offset fits (pyradiomics fails there)."""
    p = matrix(plane, settings)
    if p is None:
        return dict.fromkeys(NAMES, np.nan)
    return features(p, plane)
