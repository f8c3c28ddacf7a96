r"""2D shape features, pyradiomics 3.0.1 ``RadiomicsShape2D`` (marching squares, vectorised).

Notation: the ROI's contour is a mesh of :math:`N_f` line segments :math:`(a_k, b_k)` (marching
squares on the zero-padded mask, pixel centres at integer positions times the spacing),
:math:`N_p` the ROI pixels of area :math:`A_k` each, and :math:`\lambda_{major} \ge
\lambda_{minor}` the eigenvalues of the covariance of the ROI pixel centres (in mm).

``MeshSurface``
    :math:`A = \sum_k \frac{1}{2} (a_k \times b_k)`: the area inside the contour.
``PixelSurface``
    :math:`N_p A_k`: the area of the ROI's pixels.
``Perimeter``
    :math:`P = \sum_k \lVert a_k - b_k \rVert`: the contour length.
``PerimeterSurfaceRatio``
    :math:`P / A`: lower is more compact.
``Sphericity``
    :math:`2\sqrt{\pi A} / P`: roundness, 1 for a circle.
``MaximumDiameter``
    the largest distance between two contour vertices.
``MajorAxisLength``, ``MinorAxisLength``
    :math:`4\sqrt{\lambda_{major}}`, :math:`4\sqrt{\lambda_{minor}}`: the axes of the ellipse
    with the ROI's second moments.
``Elongation``
    :math:`\sqrt{\lambda_{minor} / \lambda_{major}}`: 1 for a round or square ROI, towards 0 for
    a thin one.

pyradiomics walks a 2x2 window over the zero-padded mask in C, emitting perimeter segments from a
16-case table. Here every window's case index is computed at once; since each segment's length
and its contribution to the (shoelace) area are affine in the window position, perimeter and
area follow from per-case counts and coordinate sums. The maximum diameter is the largest
distance between mesh vertices, searched on their convex hull instead of all pairs.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import ConvexHull, QhullError

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("Elongation", "MajorAxisLength", "MaximumDiameter", "MeshSurface", "MinorAxisLength",
         "Perimeter", "PerimeterSurfaceRatio", "PixelSurface", "Sphericity")

# Vertex positions (dy, dx) on the four window edges: top, right, bottom, left.
_VERTS = np.array([(0.0, 0.5), (0.5, 1.0), (1.0, 0.5), (0.5, 0.0)])
# Segments (vertex a, vertex b) per window case; bit k is set when window corner k is in the ROI
# (corners: 0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left). From pyradiomics cshape.c.
_LINES = {1: ((3, 0),), 2: ((0, 1),), 3: ((3, 1),), 4: ((1, 2),), 5: ((1, 2), (3, 0)),
          6: ((0, 2),), 7: ((3, 2),), 8: ((2, 3),), 9: ((2, 0),), 10: ((0, 1), (2, 3)),
          11: ((2, 1),), 12: ((1, 3),), 13: ((1, 0),), 14: ((0, 3),)}


def _case_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per case: segment extents (dy, dx), shape (16, 2, 2), and the coefficients of twice its
    signed (shoelace) area in ``iy``, ``ix`` and 1, summed over its segments."""
    extent = np.zeros((16, 2, 2))
    area = np.zeros((3, 16))
    for case, lines in _LINES.items():
        for k, (va, vb) in enumerate(lines):
            (ay, ax), (by, bx) = _VERTS[va], _VERTS[vb]
            extent[case, k] = (ay - by, ax - bx)
            area[:, case] += (bx - ax, ay - by, ay * bx - by * ax)
    return extent, area[0], area[1], area[2]


_EXTENT, _AREA_Y, _AREA_X, _AREA_1 = _case_tables()
_BRUTE_FORCE_POINTS = 256  # below this many mesh vertices, all pairs beat building a hull


def _cases(padded: np.ndarray) -> np.ndarray:
    """Marching-squares case index (0..15) of every 2x2 window of ``padded`` (uint8 0/1)."""
    return (padded[:-1, :-1] | (padded[:-1, 1:] << 1) | (padded[1:, 1:] << 2)
            | (padded[1:, :-1] << 3))


def _principal_moments(roi: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """Sorted eigenvalues of the covariance of the ROI pixel centres (in mm), as pyradiomics.

    Computed from exact integer moments (row/column sums) instead of centring every pixel
    coordinate: the same matrix, cheaper and without cancellation.
    """
    weights = roi.astype(np.float64)  # float BLAS products of 0/1: exact integer sums
    ry = np.arange(roi.shape[0], dtype=np.float64)
    cx = np.arange(roi.shape[1], dtype=np.float64)
    per_row = weights.sum(axis=1)
    per_col = weights.sum(axis=0)
    n = int(per_row.sum())
    s_y, s_x = int(ry @ per_row), int(cx @ per_col)
    s_yy, s_xx = int((ry * ry) @ per_row), int((cx * cx) @ per_col)
    s_xy = int(ry @ (weights @ cx))
    n2 = n * n
    cov = np.array([[(n * s_yy - s_y * s_y) / n2 * sy * sy, (n * s_xy - s_y * s_x) / n2 * sy * sx],
                    [(n * s_xy - s_y * s_x) / n2 * sy * sx, (n * s_xx - s_x * s_x) / n2 * sx * sx]])
    eig = np.linalg.eigvals(cov)
    eig[(eig < 0) & (eig > -1e-10)] = 0  # machine-precision negatives, as pyradiomics
    eig.sort()
    return eig


def _diameter(points: np.ndarray) -> float:
    """Largest Euclidean distance between any two of ``points`` (N, 2)."""
    if len(points) < 2:
        return 0.0
    if len(points) > _BRUTE_FORCE_POINTS:
        # Collinear points (a one-pixel-wide ROI) have no hull: then all pairs, in chunks.
        with contextlib.suppress(QhullError):
            points = points[ConvexHull(points).vertices]
    best = 0.0
    for start in range(0, len(points), 1024):
        block = points[start:start + 1024]
        diff = block[:, None, :] - points[None, :, :]
        best = max(best, float(np.max(diff[..., 0] ** 2 + diff[..., 1] ** 2)))
    return float(np.sqrt(best))


def measure(roi: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> dict[str, float]:
    """Shape features of the boolean ``roi`` plane; ``spacing`` is (row, col) in mm."""
    sy, sx = float(spacing[0]), float(spacing[1])
    padded = np.zeros((roi.shape[0] + 2, roi.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = roi
    case = _cases(padded).ravel()
    cells = np.flatnonzero((case - np.uint8(1)) < 14)  # cases 1..14: the contour crosses
    flat = case[cells]
    iy, ix = np.divmod(cells, padded.shape[1] - 1)
    count = np.bincount(flat, minlength=16).astype(np.float64)
    sum_y = np.bincount(flat, weights=iy, minlength=16)
    sum_x = np.bincount(flat, weights=ix, minlength=16)

    seg_length = np.hypot(_EXTENT[..., 0] * sy, _EXTENT[..., 1] * sx).sum(axis=1)
    perimeter = float(count @ seg_length)
    area2 = sum_y @ _AREA_Y + sum_x @ _AREA_X + count @ _AREA_1  # twice the area, in pixels
    surface = float(area2) * sy * sx / 2.0

    # Mesh vertices used for the diameter: left-edge vertex if corner 0 set, bottom-edge vertex if
    # corner 2 set, after flipping cases > 7 (as pyradiomics does to avoid duplicates).
    folded = np.where(flat > 7, flat ^ 15, flat)
    left = (folded & 1).astype(bool)
    bottom = (folded & 4).astype(bool)
    verts = np.concatenate([
        np.stack([(iy[left] + 0.5) * sy, ix[left] * sx], axis=1),
        np.stack([(iy[bottom] + 1.0) * sy, (ix[bottom] + 0.5) * sx], axis=1),
    ])
    diameter = _diameter(verts)

    minor, major = _principal_moments(roi, sy, sx)
    n_pixels = int(np.count_nonzero(roi))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "Elongation": float(np.sqrt(minor / major)) if minor >= 0 and major >= 0 else np.nan,
            "MajorAxisLength": float(np.sqrt(major) * 4) if major >= 0 else np.nan,
            "MaximumDiameter": diameter,
            "MeshSurface": float(surface),
            "MinorAxisLength": float(np.sqrt(minor) * 4) if minor >= 0 else np.nan,
            "Perimeter": float(perimeter),
            "PerimeterSurfaceRatio": float(np.float64(perimeter) / surface),
            "PixelSurface": float(n_pixels * (sx * sy)),
            "Sphericity": float(2 * np.sqrt(np.pi * surface) / np.float64(perimeter)),
        }


def compute(ctx: Context) -> dict[str, float]:
    """Shape features of the context's (cropped) ROI."""
    return measure(ctx.crop, ctx.spacing)
