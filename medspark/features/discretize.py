"""Grey-level discretisation exactly as pyradiomics 3.0.1 (``imageoperations.getBinEdges``).

Fixed bin width: edges start at the largest multiple of ``binWidth`` <= the ROI minimum (bins are
aligned to 0, *not* to the ROI minimum as in IBSI) and run to ``max + 2 * binWidth``, so every bin
is half-open ``[lower, upper)``. Fixed bin count: ``numpy.histogram`` edges with the last edge
raised by 1 so the maximum falls in the top bin. Levels are 1-based like ``numpy.digitize``.

With a fixed bin width and more bins than pixels, the edges are not materialised: edge ``k`` is
computed on demand exactly as ``numpy.arange`` computes it (``start + k * ((start + step) -
start)``), so a wide range (a 32-bit image with values up to 4e9 and ``binWidth`` 25 has ~1.7e8
bins) costs memory for the ROI's pixels only, not for every bin.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_BINS = 2 ** 53  # beyond this, float64 bin indices are no longer exact
MATERIALISE = 1 << 16  # fixed-width edges up to which (or up to the pixel count) are tabulated


def _width_edges(values: np.ndarray, bin_width: float) -> tuple[float, float, int]:
    """``(start, delta, n)`` of pyradiomics' fixed-width edges ``numpy.arange(start,
    max + 2 * bin_width, bin_width)``: edge ``k`` is ``start + k * delta``."""
    minimum = values.min()
    start = minimum - (minimum % bin_width)
    stop = values.max() + 2 * bin_width
    n = int(np.ceil((stop - start) / bin_width))  # numpy.arange's length
    if not n < MAX_BINS:
        raise ValueError(f"binWidth {bin_width!r} gives {n:.3g} grey levels over the range "
                         f"{minimum!r}..{values.max()!r} (at most 2**53 are supported)")
    return float(start), float((start + bin_width) - start), n


def bin_edges(values: np.ndarray, bin_width: float = 25, bin_count: int | None = None
              ) -> np.ndarray:
    """Bin edges for the ROI ``values`` (1-D, finite, non-empty), as pyradiomics computes them.

    Materialises every edge: for inspection and tests; :func:`discretize` does not need them.
    """
    if bin_count is not None:
        edges = np.histogram_bin_edges(values, bin_count)
        edges[-1] += 1
        return edges
    start, delta, n = _width_edges(values, bin_width)
    if n == 1:  # flat region on a bin boundary: one bin, like numpy.histogram would
        return np.array([start - 0.5, start + 0.5])
    return start + np.arange(n, dtype=np.float64) * delta


def _digitize_inside(values: np.ndarray, edge: Callable[[np.ndarray], np.ndarray], n: int
                     ) -> np.ndarray:
    """``numpy.digitize`` for ``edge(0) <= values < edge(n - 1)`` and (near-)uniform edges, O(n).

    ``edge(k)`` gives the edges at the indices ``k``. A first guess from the mean bin width is
    corrected against the actual edges, so the result is identical to ``numpy.digitize``
    (including values on an edge) at a fraction of the cost.
    """
    ends = edge(np.array([0, max(n - 2, 1)]))
    step = (ends[1] - ends[0]) / (n - 2) if n > 2 else ends[1] - ends[0]
    k = np.floor((values - ends[0]) / step).astype(np.intp)
    np.clip(k, 0, n - 2, out=k)
    for _ in range(n):  # each pass moves every wrong guess one bin; one pass is the norm
        down = values < edge(k)  # never at k = 0, as values >= edges[0]
        up = values >= edge(k + 1)  # never at k = n - 2, as values < edges[-1]
        if not (down.any() or up.any()):
            break
        k -= down
        k += up
    return k + 1


def digitize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``numpy.digitize(values, edges)`` for increasing edges; O(n) when they are uniform."""
    if len(values) and edges[0] <= values.min() and values.max() < edges[-1]:
        return _digitize_inside(values, lambda k: np.take(edges, k), len(edges))
    return np.digitize(values, edges)


def discretize(values: np.ndarray, bin_width: float = 25, bin_count: int | None = None
               ) -> np.ndarray:
    """1-based grey levels of the ROI ``values`` (pyradiomics ``binImage`` on the ROI)."""
    # pyradiomics' edges always enclose the values: edges[0] <= min and max < edges[-1].
    if bin_count is not None:
        edges = bin_edges(values, bin_width, bin_count)
        return _digitize_inside(values, lambda k: np.take(edges, k), len(edges))
    start, delta, n = _width_edges(values, bin_width)
    if n == 1:
        return np.ones(len(values), dtype=np.intp)
    if n <= max(MATERIALISE, len(values)):  # a small table: gathers beat arithmetic
        edges = start + np.arange(n, dtype=np.float64) * delta
        return _digitize_inside(values, lambda k: np.take(edges, k), n)
    return _digitize_inside(values, lambda k: start + k * delta, n)
