"""What the texture families share: the discretised ROI plane, grey levels ranked over the
levels present, and count matrices kept as their non-zero cells.

Every texture matrix here is indexed by the G grey levels *present* in the ROI (pyradiomics
builds them over 1..Ng and deletes the empty rows; the feature values are the same), so no array
is ever sized by the largest grey level Ng: on a 32-bit image with ``binWidth`` 25, Ng is ~1e8
while G is at most the ROI's pixel count. GLRLM, GLSZM and GLDM go one step further and keep
only the non-zero cells of their matrices (:class:`Cells`), so their memory follows the number
of runs, zones or pixels whatever the number of grey levels or run lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = np.spacing(1)
DENSE_LEVELS = 1 << 16  # largest level up to which ranking uses a lookup table (with 4 x pixels)


def rank_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(present, ranks)``: the distinct 1-based ``levels`` (sorted) and each value's 1-based
    rank among them. A lookup table when the largest level is small (O(n + Ng)), else
    ``numpy.unique`` (O(n log n)), so nothing is sized by a huge Ng."""
    levels = np.asarray(levels, dtype=np.intp)
    ng = int(levels.max())
    if ng <= max(DENSE_LEVELS, 4 * levels.size):
        present = np.flatnonzero(np.bincount(levels))
        lookup = np.zeros(ng + 1, dtype=np.intp)
        lookup[present] = np.arange(1, len(present) + 1)
        return present, np.take(lookup, levels)
    present, inverse = np.unique(levels, return_inverse=True)
    return present, inverse.reshape(-1) + 1


def _grid_dtype(top: int) -> type[np.signedinteger]:
    """Narrowest of int16/int32/int64 holding ``0..top`` (less memory traffic per pass)."""
    return next(t for t in (np.int16, np.int32, np.int64) if top < np.iinfo(t).max)


@dataclass(frozen=True)
class Plane:
    """A discretised ROI, cropped to its bounding box as pyradiomics' extractor does.

    ``levels`` holds the 1-based grey levels inside the ROI and 0 outside it, so neighbours
    outside the ROI never match a level. ``ranks`` is the same with each level replaced by its
    rank (1..G) among the G levels present: the texture matrices are built directly over the
    present levels. Both grids use the narrowest integer type that holds their values.
    ``index`` are the flat (row-major) positions of the ROI pixels, with ``roi_levels`` /
    ``roi_ranks`` their values: gathering by index is several times faster than boolean-mask
    indexing. ``grey_levels`` are the present levels (sorted), ``ng`` the largest.
    """

    levels: np.ndarray
    ranks: np.ndarray
    roi: np.ndarray
    index: np.ndarray
    roi_levels: np.ndarray
    roi_ranks: np.ndarray
    grey_levels: np.ndarray
    ng: int

    @classmethod
    def build(cls, roi_levels: np.ndarray, roi: np.ndarray, index: np.ndarray | None = None,
              ranked: tuple[np.ndarray, np.ndarray] | None = None) -> Plane:
        """From the ROI pixels' levels (row-major order) and the boolean ``roi``; ``ranked`` is
        :func:`rank_levels` of ``roi_levels`` when already known."""
        index = np.flatnonzero(roi) if index is None else index
        roi_levels = np.asarray(roi_levels, dtype=np.intp)
        present, roi_ranks = ranked if ranked is not None else rank_levels(roi_levels)
        ng = int(present[-1])
        grids = []
        for values, top in ((roi_levels, ng), (roi_ranks, len(present))):
            dtype = _grid_dtype(top)
            grid = np.zeros(roi.shape, dtype=dtype)
            grid.ravel()[index] = values.astype(dtype)  # same-dtype scatter: ~3x faster
            grids.append(grid)
        return cls(levels=grids[0], ranks=grids[1], roi=roi, index=index,
                   roi_levels=roi_levels, roi_ranks=roi_ranks, grey_levels=present, ng=ng)

    @classmethod
    def from_levels(cls, levels: np.ndarray, roi: np.ndarray) -> Plane:
        """From a 2-D grey-level image (values outside ``roi`` are ignored) and the ROI."""
        index = np.flatnonzero(roi)
        return cls.build(np.take(np.asarray(levels).ravel(), index), roi, index)

    @property
    def shape(self) -> tuple[int, int]:
        return self.levels.shape  # type: ignore[return-value]

    @property
    def n_levels(self) -> int:
        """G, the number of grey levels present."""
        return len(self.grey_levels)


@dataclass(frozen=True)
class Cells:
    """The non-zero cells of ``n_groups`` count matrices (one per angle, or one) of shape
    (G present grey levels, columns), column ``k`` standing for the value ``j = k + 1`` (a run
    length, zone size or dependence count). Summing ``count * f(i, j)`` over the cells gives the
    same sums as over pyradiomics' dense matrices, whose other cells are 0."""

    group: np.ndarray
    rank: np.ndarray
    column: np.ndarray
    count: np.ndarray
    n_groups: int
    n_levels: int
    n_columns: int

    @classmethod
    def count_items(cls, row: np.ndarray, column: np.ndarray, n_groups: int, n_levels: int,
                    dense_limit: int) -> Cells:
        """Cells counting the items (runs, zones, pixels) by row ``group * G + rank`` (rank
        0-based) and column; ``row`` may be overwritten.

        ``numpy.bincount`` over the whole matrix when it has at most ``dense_limit`` cells (the
        fast path), else ``numpy.unique`` over the items' cell codes (memory ~ the item count).
        """
        n_columns = int(column.max(initial=0)) + 1
        code = np.multiply(row, n_columns, out=row)
        code += column
        size = n_groups * n_levels * n_columns
        if size <= dense_limit:
            counts = np.bincount(code, minlength=size)
            cells = np.flatnonzero(counts)
            count = counts[cells].astype(np.float64)
        else:
            cells, count = np.unique(code, return_counts=True)
            count = count.astype(np.float64)
        rest, col = np.divmod(cells, n_columns)
        grp, rnk = np.divmod(rest, n_levels)
        return cls(group=grp, rank=rnk, column=col, count=count, n_groups=n_groups,
                   n_levels=n_levels, n_columns=n_columns)

    @classmethod
    def stack(cls, parts: list[Cells], n_levels: int) -> Cells:
        """The one-group ``parts`` as groups 0, 1, ... of one :class:`Cells` (so each group's
        items can be counted, and freed, before the next group's are made)."""
        if not parts:
            empty = np.zeros(0, dtype=np.intp)
            return cls(group=empty, rank=empty, column=empty, count=np.zeros(0),
                       n_groups=0, n_levels=n_levels, n_columns=1)
        return cls(group=np.concatenate([np.full(len(c.count), g, dtype=np.intp)
                                         for g, c in enumerate(parts)]),
                   rank=np.concatenate([c.rank for c in parts]),
                   column=np.concatenate([c.column for c in parts]),
                   count=np.concatenate([c.count for c in parts]), n_groups=len(parts),
                   n_levels=n_levels, n_columns=max(c.n_columns for c in parts))

    def weighted_sum(self, weights: np.ndarray) -> Cells:
        """One matrix: the groups' matrices times ``weights`` (one per group), summed."""
        code = self.rank * self.n_columns + self.column
        cells, inverse = np.unique(code, return_inverse=True)
        count = np.bincount(inverse.reshape(-1), weights=self.count * weights[self.group],
                            minlength=len(cells))
        rank, column = np.divmod(cells, self.n_columns)
        return Cells(group=np.zeros(len(cells), dtype=np.intp), rank=rank, column=column,
                     count=count, n_groups=1, n_levels=self.n_levels, n_columns=self.n_columns)

    def statistics(self, grey_levels: np.ndarray) -> dict[str, np.ndarray]:
        """Per group (angle), the sums the GLRLM, GLSZM and GLDM features are made of.

        With ``p(i, j)`` the counts, ``N = sum p`` the total, ``p_g(i) = sum_j p(i, j)`` and
        ``p_c(j) = sum_i p(i, j)`` the grey-level and column marginals, ``i`` the grey level
        and ``j`` the column value: ``total`` N; ``grey_nonuniformity`` sum p_g**2 / N and
        ``..._normalized`` / N**2; ``grey_variance`` sum p_g/N (i - mu_i)**2; ``high_grey``
        sum p_g i**2 / N and ``low_grey`` sum p_g / i**2 / N; ``column_nonuniformity`` sum
        p_c**2 / N (and ``..._normalized``); ``column_variance`` sum p_c/N (j - mu_j)**2;
        ``large`` sum p_c j**2 / N, ``small`` sum p_c / j**2 / N; ``large_high``,
        ``large_low``, ``small_high``, ``small_low`` sum p (j**2 i**2, j**2 / i**2, i**2 / j**2,
        1 / (i**2 j**2)) / N; ``entropy`` -sum p/N log2(p/N + eps); ``percentage`` N / sum p_c j.
        A group with ``N = 0`` gives NaN.
        """
        a, g = self.n_groups, self.n_levels
        c, grp = self.count, self.group
        i = grey_levels.astype(np.float64)[self.rank]
        j = (self.column + 1).astype(np.float64)
        i2, j2 = i * i, j * j

        def per_group(weights: np.ndarray) -> np.ndarray:
            return np.bincount(grp, weights=weights, minlength=a)

        n = per_group(c)
        pg = np.bincount(grp * g + self.rank, weights=c, minlength=a * g).reshape(a, g)
        pc = np.bincount(grp * self.n_columns + self.column, weights=c,
                         minlength=a * self.n_columns).reshape(a, self.n_columns)
        ivec = grey_levels.astype(np.float64)
        jvec = np.arange(1, self.n_columns + 1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            pg_n, pc_n = pg / n[:, None], pc / n[:, None]
            p_n = c / n[grp]
            dev_i = ivec - (pg_n @ ivec)[:, None]
            dev_j = jvec - (pc_n @ jvec)[:, None]
            gln, cln = np.sum(pg * pg, axis=1), np.sum(pc * pc, axis=1)
            return {
                "total": n,
                "grey_nonuniformity": gln / n,
                "grey_nonuniformity_normalized": gln / (n * n),
                "grey_variance": np.sum(pg_n * dev_i * dev_i, axis=1),
                "high_grey": per_group(c * i2) / n,
                "low_grey": per_group(c / i2) / n,
                "column_nonuniformity": cln / n,
                "column_nonuniformity_normalized": cln / (n * n),
                "column_variance": np.sum(pc_n * dev_j * dev_j, axis=1),
                "large": per_group(c * j2) / n,
                "small": per_group(c / j2) / n,
                "large_high": per_group(c * (i2 * j2)) / n,
                "large_low": per_group(c * (j2 / i2)) / n,
                "small_high": per_group(c * (i2 / j2)) / n,
                "small_low": per_group(c / (i2 * j2)) / n,
                "entropy": -per_group(p_n * np.log2(p_n + EPS)),
                "percentage": n / per_group(c * j),
            }


def nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """``numpy.nanmean`` without its all-NaN RuntimeWarning (the result is NaN either way)."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
