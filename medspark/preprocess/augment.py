"""Seeded data augmentation: random rotation, flip, shift, scale and intensity jitter.

Every random draw comes from `numpy.random.default_rng(seed)` in a fixed order, so one seed
always gives the same variant, on any machine and in any process. In Spark each augmented copy
becomes a new row referencing its source image; its seed is `augment_seed(image_id, copy, seed)`,
so a copy can be recomputed from (image_id, copy, seed) alone, independent of partitioning.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from medspark.image import Spacing, check_image, check_spacing
from medspark.preprocess._common import as_float32
from medspark.preprocess.geometry import affine_about_center, warp_affine


class Augmented(NamedTuple):
    """One augmented variant; `copy` is its index among the source image's copies."""

    image: np.ndarray
    spacing: Spacing
    mask: np.ndarray | None
    copy: int
    seed: int


def augment_seed(image_id: str, copy: int, seed: int) -> int:
    """Seed of augmented copy `copy` of `image_id` under the run's base `seed`: 63 bits of
    sha256, so it fits a signed 64-bit column and is the same in every process."""
    text = f"medspark-augment\x00{int(seed)}\x00{image_id}\x00{int(copy)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def augment_once(
    image: np.ndarray,
    spacing: Spacing,
    seed: int,
    *,
    mask: np.ndarray | None = None,
    rotation_deg: float = 10.0,
    flip_horizontal: float = 0.5,
    flip_vertical: float = 0.0,
    shift: float = 0.05,
    scale: tuple[float, float] = (0.95, 1.05),
    brightness: float = 0.0,
    contrast: float = 0.0,
    noise_std: float = 0.0,
    interpolation: str = "linear",
    fill: str = "constant",
    value: float = 0.0,
) -> tuple[np.ndarray, Spacing, np.ndarray | None]:
    """One random variant, fully determined by `seed`.

    Geometry (one affine warp about the centre, same size): rotation uniform in
    +-rotation_deg, left-right / up-down flips with probabilities flip_horizontal /
    flip_vertical, shift uniform in +-shift * size per axis, zoom uniform in `scale`; uncovered
    pixels get `fill` (constant `value`, edge or reflect). The mask follows with nearest
    neighbour. Intensity (relative to the image's max - min range R): contrast factor
    1 +- contrast about the mean, brightness shift +- brightness * R, Gaussian noise of std
    noise_std * R. Output dtype: the input's when no intensity jitter is set, else float32.
    Spacing becomes spacing / zoom (one output pixel now covers less anatomy).
    """
    image = check_image(image)
    spacing = check_spacing(spacing)
    lo_s, hi_s = (float(v) for v in scale)
    if not 0 < lo_s <= hi_s:
        raise ValueError(f"augment scale must satisfy 0 < low <= high, got {scale!r}")
    rng = np.random.default_rng(int(seed))
    u = rng.random(8)  # always 8 draws, in this order, whatever is enabled
    h, w = image.shape[:2]
    angle = (2 * u[0] - 1) * rotation_deg
    flip_h, flip_v = bool(u[1] < flip_horizontal), bool(u[2] < flip_vertical)
    offset = ((2 * u[3] - 1) * shift * h, (2 * u[4] - 1) * shift * w)
    zoom = lo_s + u[5] * (hi_s - lo_s)
    factor = 1.0 + (2 * u[6] - 1) * contrast
    bright = (2 * u[7] - 1) * brightness

    matrix = affine_about_center(
        (h, w), spacing, angle=angle, scale=zoom, shift=offset, flip_h=flip_h, flip_v=flip_v
    )
    identity = np.allclose(matrix, [[1, 0, 0], [0, 1, 0]])
    out = image.copy() if identity else warp_affine(
        image, matrix, interpolation=interpolation, fill=fill, value=value
    )
    out_mask = None
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (h, w):
            raise ValueError(f"mask shape {m.shape} does not match image {(h, w)}")
        m = m.astype(np.uint8)
        out_mask = (m if identity else warp_affine(m, matrix, interpolation="nearest", fill=fill))
        out_mask = out_mask > 0

    if contrast or brightness or noise_std:
        x = as_float32(out)
        span = float(x.max() - x.min())
        mean = np.float32(x.mean())
        x = (x - mean) * np.float32(factor) + mean + np.float32(bright * span)
        if noise_std:
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise_std * span)
        out = x.astype(np.float32, copy=False)

    new_spacing = None if spacing is None else (spacing[0] / zoom, spacing[1] / zoom)
    return out, new_spacing, out_mask


def augment(
    image: np.ndarray,
    spacing: Spacing,
    seed: int,
    n_copies: int,
    *,
    image_id: str = "",
    mask: np.ndarray | None = None,
    **params,
) -> list[Augmented]:
    """`n_copies` deterministic variants of one image; copy k uses
    `augment_seed(image_id, k, seed)`, so the same (image_id, seed) always gives the same list
    and different copies differ. `params` are those of `augment_once`."""
    if n_copies < 0:
        raise ValueError(f"n_copies must be >= 0, got {n_copies}")
    out = []
    for k in range(int(n_copies)):
        s = augment_seed(image_id, k, seed)
        img, sp, m = augment_once(image, spacing, s, mask=mask, **params)
        out.append(Augmented(img, sp, m, k, s))
    return out
