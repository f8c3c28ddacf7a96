"""The per-plane context every feature family computes from, and the memory budget.

:class:`Context` holds one plane, its ROI and the validated settings; what several families
need (the ROI's bounding box, its intensities, their grey levels, the discretised
:class:`~medspark.features.texture.Plane`) is derived lazily, once, on first use. So
``compute(context)`` is the one signature of every family (:mod:`medspark.features.registry`).

**Memory budget.** A texture matrix indexed by grey level can be far larger than the image:
the GLCM of G grey levels has G x G cells per angle, and G reaches the pixel count on a 32-bit
or finely binned image. Before allocating such a matrix a family asks :meth:`Context.allow`
with its size in bytes (estimated from G and the angles, before anything is allocated); over
``max_matrix_bytes`` its features are NaN and a warning with the reason code
:data:`OVER_MATRIX_BUDGET` is recorded::

    over_matrix_budget: glcm needs 1073741824 bytes > max_matrix_bytes 268435456

(the text before the first ``:`` is the reason, as in every medspark error text; the word after
it is the family). Arrays the size of the plane are not counted: the ingest limit
``max_pixels_per_plane`` bounds them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from medspark.features.discretize import discretize
from medspark.features.settings import Settings
from medspark.features.texture import Plane, rank_levels

MAX_MATRIX_BYTES = 256 * 1024 ** 2  # default budget of one family's grey-level matrices
OVER_MATRIX_BUDGET = "over_matrix_budget"


def check_budget(max_matrix_bytes: Any) -> int:
    """``max_matrix_bytes`` as a positive int (``ValueError`` otherwise)."""
    if (isinstance(max_matrix_bytes, bool) or not isinstance(max_matrix_bytes, numbers.Integral)
            or max_matrix_bytes <= 0):
        raise ValueError(f"max_matrix_bytes must be a positive integer, got {max_matrix_bytes!r}")
    return int(max_matrix_bytes)


@dataclass
class Context:
    """One plane to compute features of: the whole plane and ROI, the settings, the budget, and
    the warnings recorded so far. ``roi`` is valid (see ``extract``) and holds finite pixels
    only; the attributes below are computed on first use and shared by the families."""

    image: np.ndarray
    roi: np.ndarray
    spacing: tuple[float, float]
    settings: Settings
    extra: Mapping[str, Any]
    max_matrix_bytes: int = MAX_MATRIX_BYTES
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def box(self) -> tuple[slice, slice]:
        """The ROI's bounding box (pyradiomics crops to it)."""
        rows = np.flatnonzero(self.roi.any(axis=1))
        cols = np.flatnonzero(self.roi.any(axis=0))
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    @cached_property
    def crop(self) -> np.ndarray:
        """The boolean ROI cropped to :attr:`box` (C-contiguous)."""
        return np.ascontiguousarray(self.roi[self.box])

    @cached_property
    def index(self) -> np.ndarray:
        """Flat positions of the ROI pixels in :attr:`crop` (gathers by index beat boolean
        indexing several times)."""
        return np.flatnonzero(self.crop)

    @cached_property
    def values(self) -> np.ndarray:
        """The ROI's intensities, row-major."""
        return np.take(np.ascontiguousarray(self.image[self.box]).ravel(), self.index)

    @cached_property
    def levels(self) -> np.ndarray:
        """1-based grey levels of :attr:`values` (pyradiomics' discretisation)."""
        return discretize(self.values, self.settings.binWidth, self.settings.binCount)

    @cached_property
    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """``(present, ranks)``: the grey levels present and each pixel's rank among them."""
        return rank_levels(self.levels)

    @cached_property
    def plane(self) -> Plane:
        """The discretised, cropped plane the texture families share."""
        return Plane.build(self.levels, self.crop, self.index, ranked=self.ranked)

    @property
    def pixel_area(self) -> float:
        return self.spacing[0] * self.spacing[1]

    def allow(self, what: str, nbytes: int) -> bool:
        """Whether ``what`` (a family, with a note on which features) may allocate ``nbytes``;
        if not, records the ``over_matrix_budget`` warning."""
        if nbytes <= self.max_matrix_bytes:
            return True
        self.warnings.append(f"{OVER_MATRIX_BUDGET}: {what} needs {int(nbytes)} bytes > "
                             f"max_matrix_bytes {self.max_matrix_bytes}")
        return False
