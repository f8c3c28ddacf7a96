"""Grey-level discretisation exactly as pyradiomics 3.0.1 (``imageoperations.getBinEdges``).

Fixed bin width: edges start at the largest multiple of ``binWidth`` <= the ROI minimum (bins are
aligned to 0, *not* to the ROI minimum as in IBSI) and run to ``max + 2 * binWidth``, so every bin
is half-open ``[lower, upper)``. Fixed bin count: ``numpy.histogram`` edges with the last edge
raised by 1 so the maximum falls in the top bin. Levels are 1-based like ``numpy.digitize``.
"""

from __future__ import annotations

import numpy as np


def bin_edges(values: np.ndarray, bin_width: float = 25, bin_count: int | None = None
              ) -> np.ndarray:
    """Bin edges for the ROI ``values`` (1-D, finite, non-empty), as pyradiomics computes them."""
    if bin_count is not None:
        edges = np.histogram_bin_edges(values, bin_count)
        edges[-1] += 1
        return edges
    minimum = values.min()
    low = minimum - (minimum % bin_width)
    edges = np.arange(low, values.max() + 2 * bin_width, bin_width)
    if len(edges) == 1:  # flat region on a bin boundary: one bin, like numpy.histogram would
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return np.asarray(edges, dtype=np.float64)


def _digitize_inside(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``numpy.digitize`` for ``edges[0] <= values < edges[-1]`` and (near-)uniform edges, O(n).

    A first guess from the mean bin width is corrected against the actual edges, so the result
    is identical to ``numpy.digitize`` (including values on an edge) at a fraction of the cost.
    """
    n = len(edges)
    step = (edges[-2] - edges[0]) / (n - 2) if n > 2 else edges[1] - edges[0]
    k = np.floor((values - edges[0]) / step).astype(np.intp)
    np.clip(k, 0, n - 2, out=k)
    upper = edges[1:]
    for _ in range(n):  # each pass moves every wrong guess one bin; one pass is the norm
        down = values < np.take(edges, k)  # never at k = 0, as values >= edges[0]
        up = values >= np.take(upper, k)  # never at k = n - 2, as values < edges[-1]
        if not (down.any() or up.any()):
            break
        k -= down
        k += up
    return k + 1


def digitize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``numpy.digitize(values, edges)`` for increasing edges; O(n) when they are uniform."""
    if len(values) and edges[0] <= values.min() and values.max() < edges[-1]:
        return _digitize_inside(values, edges)
    return np.digitize(values, edges)


def discretize(values: np.ndarray, bin_width: float = 25, bin_count: int | None = None
               ) -> np.ndarray:
    """1-based grey levels of the ROI ``values`` (pyradiomics ``binImage`` on the ROI)."""
    # pyradiomics' edges always enclose the values: edges[0] <= min and max < edges[-1].
    return _digitize_inside(values, bin_edges(values, bin_width, bin_count))
