"""In-plane neighbour offsets ("angles") and distance weights, as pyradiomics generates them.

pyradiomics (``cmatrices.build_angles`` with ``force2D=True, force2Ddimension=0``) takes every
offset ``(dy, dx)`` whose infinity norm is one of ``distances`` and that fits in the ROI bounding
box (``|dy| < rows``, ``|dx| < cols``), in descending lexicographic order; uni-directional
matrices (GLCM, GLRLM) keep the first half, i.e. ``dy > 0`` or ``dy == 0 and dx > 0``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np


def angles(shape: tuple[int, int], distances: Sequence[int] = (1,), bidirectional: bool = False
           ) -> np.ndarray:
    """Offsets ``(dy, dx)`` as a read-only ``(Na, 2)`` int array; may be empty if nothing fits."""
    return _angles(tuple(shape), tuple(distances), bool(bidirectional))


@functools.lru_cache(maxsize=256)
def _angles(shape: tuple[int, int], distances: tuple[int, ...], bidirectional: bool
            ) -> np.ndarray:
    rows, cols = shape
    dmax = max(distances)
    wanted = set(distances)
    out = [(dy, dx)
           for dy in range(dmax, -dmax - 1, -1) if abs(dy) < rows
           for dx in range(dmax, -dmax - 1, -1) if abs(dx) < cols
           and max(abs(dy), abs(dx)) in wanted]
    if not bidirectional:
        out = [(dy, dx) for dy, dx in out if dy > 0 or (dy == 0 and dx > 0)]
    result = np.array(out, dtype=np.int64).reshape(-1, 2)
    result.flags.writeable = False  # shared by the cache
    return result


def weights(offsets: np.ndarray, spacing: tuple[float, float], norm: str, exponential: bool
            ) -> np.ndarray:
    """Per-angle weights for ``weightingNorm``.

    GLCM uses ``exp(-d**2)`` (``exponential=True``); GLRLM uses the distance ``d`` itself.
    ``no_weighting`` gives 1 for every angle (matrices are summed).
    """
    scaled = np.abs(offsets) * np.asarray(spacing, dtype=np.float64)
    if norm == "no_weighting":
        return np.ones(len(offsets))
    if norm == "infinity":
        dist = scaled.max(axis=1)
        return np.exp(-dist ** 2) if exponential else dist
    if norm == "euclidean":
        sq = np.sum(scaled ** 2, axis=1)
        return np.exp(-sq) if exponential else np.sqrt(sq)
    if norm == "manhattan":
        dist = scaled.sum(axis=1)
        return np.exp(-dist ** 2) if exponential else dist
    raise ValueError(f"unknown weightingNorm {norm!r}")


def shifted_pairs(shape: tuple[int, int], dy: int, dx: int) -> tuple[tuple[slice, slice],
                                                                      tuple[slice, slice]]:
    """Slices ``(centre, neighbour)`` so ``a[centre]`` and ``a[neighbour]`` pair each pixel with
    the pixel ``(dy, dx)`` away, over every position where both lie inside ``shape``."""
    rows, cols = shape
    centre = (slice(max(0, -dy), rows - max(0, dy)), slice(max(0, -dx), cols - max(0, dx)))
    neighbour = (slice(max(0, dy), rows + min(0, dy)), slice(max(0, dx), cols + min(0, dx)))
    return centre, neighbour
