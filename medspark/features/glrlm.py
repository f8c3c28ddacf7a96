"""Grey Level Run Length Matrix features, pyradiomics 3.0.1 ``RadiomicsGLRLM`` (2D).

For each of the 4 in-plane directions the grey-level image (0 outside the ROI) is re-arranged
(transposed, or sheared for the diagonals) so that its lines become rows; runs are the maximal
constant, non-zero stretches of a row, found from start/end marks with ``numpy.flatnonzero``
and binned into the (grey level, run length) matrix with ``numpy.bincount``. As in pyradiomics,
a direction in which no line holds more than one ROI pixel is dropped, empty directions are
removed and features are averaged over directions.
"""

from __future__ import annotations

import numpy as np

from medspark.features.angles import angles as make_angles
from medspark.features.angles import weights
from medspark.features.settings import Settings
from medspark.features.texture import Plane, nanmean

NAMES = ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
         "HighGrayLevelRunEmphasis", "LongRunEmphasis", "LongRunHighGrayLevelEmphasis",
         "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis", "RunEntropy",
         "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunPercentage",
         "RunVariance", "ShortRunEmphasis", "ShortRunHighGrayLevelEmphasis",
         "ShortRunLowGrayLevelEmphasis")

EPS = np.spacing(1)
DENSE_LIMIT = 2 ** 22  # matrix elements up to which all run lengths 1..longest get a column


def _lines(levels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Re-arrange ``levels`` so every line along ``(dy, dx)`` is one row (0-padded)."""
    rows, cols = levels.shape
    if dy == 0:  # horizontal: lines are rows
        return levels
    if dx == 0:  # vertical: lines are columns
        return levels.T
    # Diagonals: zero-pad each row by rows - 1 and read with a row stride one longer (c - r
    # constant) or one shorter (c + r constant); positions off the image land in the padding.
    width = cols + rows - 1
    padded = np.zeros((rows + 1, width), dtype=levels.dtype)
    if dx > 0:
        padded[:rows, rows - 1:] = levels
        step = width + 1
    else:
        padded[:rows, :cols] = levels
        step = width - 1
    item = padded.itemsize
    view = np.lib.stride_tricks.as_strided(padded, shape=(rows + cols - 1, rows),
                                           strides=(item, step * item), writeable=False)
    return np.ascontiguousarray(view)


def _runs(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Rank and length of every run along the rows of ``lines``, and whether any row holds
    more than one ROI pixel. A run starts (ends) at an ROI pixel whose left (right) neighbour
    differs; starts and ends pair up in row-major order."""
    lines = np.ascontiguousarray(lines)
    differs = lines[:, 1:] != lines[:, :-1]
    inside = lines != 0
    start = inside.copy()
    start[:, 1:] &= differs
    inside[:, :-1] &= differs  # now: run ends
    first = np.flatnonzero(start)
    length = np.flatnonzero(inside) - first + 1
    # A row holds 2+ ROI pixels iff some run is longer than 1 or two runs share a row.
    multi = bool(length.max(initial=0) > 1
                 or np.any(np.diff(first // lines.shape[1]) == 0))
    return np.take(lines.ravel(), first), length, multi


def matrix(plane: Plane, settings: Settings, spacing: tuple[float, float]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Run-length matrices ``(angles, G, R)`` over present grey levels, and the run length of
    each column. pyradiomics allocates lengths 1..max(shape) and deletes the empty ones; here
    the columns stop at the longest run, or, if that matrix would still be huge (thousands of
    grey levels), only the lengths that occur are kept. Feature values are the same."""
    offsets = make_angles(plane.shape, (1,), bidirectional=False)
    n_angles, n_levels = len(offsets), plane.n_levels
    heads, lengths = [np.zeros(0, dtype=np.intp)], [np.zeros(0, dtype=np.intp)]
    for a, (dy, dx) in enumerate(offsets):
        rank, length, multi = _runs(_lines(plane.ranks, int(dy), int(dx)))
        if multi:  # else pyradiomics zeroes the angle's length-1 runs, i.e. all of them
            heads.append(rank.astype(np.intp) + (a * n_levels - 1))  # angle * G + rank - 1
            lengths.append(length)
    head, length = np.concatenate(heads), np.concatenate(lengths)
    longest = int(length.max(initial=1))
    if n_angles * n_levels * longest <= DENSE_LIMIT:
        columns = np.arange(1, longest + 1)
        column = length - 1
    else:
        columns, column = np.unique(length, return_inverse=True)
    counts = np.bincount(head * len(columns) + column,
                         minlength=n_angles * n_levels * len(columns))
    mats = counts.reshape(n_angles, n_levels, len(columns)).astype(np.float64)
    if settings.weightingNorm is not None:
        w = weights(offsets, spacing, settings.weightingNorm, exponential=False)
        mats = np.sum(mats * w[:, None, None], axis=0, keepdims=True)
    return mats, columns


def features(p: np.ndarray, lengths: np.ndarray, plane: Plane) -> dict[str, float]:
    """All GLRLM features from run-length matrices ``p`` (angles, G, R) with column
    ``lengths``."""
    nr_runs = p.sum(axis=(1, 2))
    if len(p) > 1:
        nonempty = nr_runs != 0
        p, nr_runs = p[nonempty], nr_runs[nonempty]
    nr_runs[nr_runs == 0] = np.nan
    pr = p.sum(axis=1)  # (A, R)
    pg = p.sum(axis=2)  # (A, G)
    ivec = plane.grey_levels.astype(np.float64)
    jvec = np.asarray(lengths, dtype=np.float64)
    used = pr.sum(axis=0) != 0
    p, pr, jvec = p[:, :, used], pr[:, used], jvec[used]

    i2, j2 = ivec * ivec, jvec * jvec
    n = nr_runs[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        pg_n, pr_n = pg / n, pr / n
        p_n = p / n[:, :, None]
        dev_i = ivec - np.sum(pg_n * ivec, axis=1, keepdims=True)
        dev_j = jvec - np.sum(pr_n * jvec, axis=1, keepdims=True)
        by_grey = pg @ np.stack([np.ones_like(ivec), i2, 1 / i2], axis=1)  # (A, 3)
        by_length = pr @ np.stack([jvec, j2, 1 / j2], axis=1)  # (A, 3)
        joint = np.einsum("agr,gr->a", p, i2[:, None] * j2)
        joint = np.stack([joint,
                          np.einsum("agr,gr->a", p, j2 / i2[:, None]),
                          np.einsum("agr,gr->a", p, i2[:, None] / j2),
                          np.einsum("agr,gr->a", p, 1 / (i2[:, None] * j2))], axis=1)
        n = n[:, 0]
        per_angle = np.stack([
            np.sum(pg * pg, axis=1) / n,  # GrayLevelNonUniformity
            np.sum(pg * pg, axis=1) / n ** 2,  # GrayLevelNonUniformityNormalized
            np.sum(pg_n * dev_i * dev_i, axis=1),  # GrayLevelVariance
            by_grey[:, 1] / n,  # HighGrayLevelRunEmphasis
            by_length[:, 1] / n,  # LongRunEmphasis
            joint[:, 0] / n,  # LongRunHighGrayLevelEmphasis
            joint[:, 1] / n,  # LongRunLowGrayLevelEmphasis
            by_grey[:, 2] / n,  # LowGrayLevelRunEmphasis
            -np.sum(p_n * np.log2(p_n + EPS), axis=(1, 2)),  # RunEntropy
            np.sum(pr * pr, axis=1) / n,  # RunLengthNonUniformity
            np.sum(pr * pr, axis=1) / n ** 2,  # RunLengthNonUniformityNormalized
            n / by_length[:, 0],  # RunPercentage
            np.sum(pr_n * dev_j * dev_j, axis=1),  # RunVariance
            by_length[:, 2] / n,  # ShortRunEmphasis
            joint[:, 2] / n,  # ShortRunHighGrayLevelEmphasis
            joint[:, 3] / n,  # ShortRunLowGrayLevelEmphasis
        ])
        return dict(zip(NAMES, nanmean(per_angle, axis=1).tolist(), strict=True))


def compute(plane: Plane, settings: Settings, spacing: tuple[float, float]) -> dict[str, float]:
    """GLRLM features of ``plane``."""
    return features(*matrix(plane, settings, spacing), plane)
