"""Synthetic chest CT anatomy in HU and spherical nodules: pure, deterministic drawing.

Nothing here touches files, and everything is a deterministic function of its arguments
(randomness only through seeded `numpy.random.Generator`s), so the writers can regenerate any
slice and tests can check pixel content without reading files. Geometry is given as fractions
of the image size, so the same patient looks the same at 128 and at 512 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

AIR, LUNG, FAT, SOFT, BLOOD, BONE, CORTEX = -1000, -850, -100, 40, 50, 650, 1000
HU_MIN, HU_MAX = -1024, 3071  # 12-bit stored values 0..4095 with intercept -1024
CHEST_MM = 300.0  # craniocaudal length that z in [0, 1] spans (0 = lung apex, 1 = base)
_SHIFT = 4  # OpenCV sub-pixel bits for drawing


@dataclass(frozen=True)
class Body:
    """A patient's habitus, as fractions of the image size (so it is resolution independent)."""

    width: float = 0.40  # half-axes of the body ellipse
    depth: float = 0.27
    fat: float = 0.025  # subcutaneous fat thickness
    lung_width: float = 0.32  # lung half-axes / offset, as fractions of the inner body axes
    lung_height: float = 0.72
    lung_offset: float = 0.45
    heart_shift: float = 0.04
    tilt: float = 0.0  # degrees


@dataclass(frozen=True)
class Lesion:
    """A spherical nodule: centre (x, y) in pixels, z and half-depth in chest fractions."""

    x: float
    y: float
    z: float
    radius: float  # pixels, in-plane, at the centre
    half_depth: float  # chest fraction
    hu: float


def random_body(rng: np.random.Generator) -> Body:
    """A plausible habitus; every drawn structure stays inside the body wall."""
    return Body(width=float(rng.uniform(0.37, 0.42)), depth=float(rng.uniform(0.25, 0.29)),
                fat=float(rng.uniform(0.015, 0.04)), lung_width=float(rng.uniform(0.30, 0.34)),
                lung_height=float(rng.uniform(0.68, 0.74)),
                lung_offset=float(rng.uniform(0.44, 0.47)),
                heart_shift=float(rng.uniform(0.02, 0.05)), tilt=float(rng.uniform(-3, 3)))


def ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, value: float,
            angle: float = 0.0, thickness: int = -1) -> None:
    """Fill (or outline) an ellipse with sub-pixel centre and axes."""
    s = 1 << _SHIFT
    cv2.ellipse(img, (round(cx * s), round(cy * s)), (max(round(ax * s), 1), max(round(ay * s), 1)),
                angle, 0, 360, float(value), thickness, cv2.LINE_8, _SHIFT)


def lung_scale(z: float) -> float:
    """Relative lung cross-section size along the chest: small at apex and base."""
    return 0.45 + 0.55 * math.sin(math.pi * (0.1 + 0.8 * min(max(z, 0.0), 1.0)))


def _anatomy(size: int, z: float, body: Body) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free slice in HU (float32) and its lung mask, before vessels and blur."""
    img = np.full((size, size), AIR, np.float32)
    cx, cy = size / 2, size * 0.47
    a, b = body.width * size, body.depth * size
    ia, ib = a - body.fat * size, b - body.fat * size  # inner (muscle) axes
    # table: carbon-fibre shell with a foam core, a small gap under the body
    top, h = cy + b + 0.03 * size, max(0.025 * size, 3.0)
    x0, x1 = round(cx - 0.44 * size), round(cx + 0.44 * size)
    cv2.rectangle(img, (x0, round(top)), (x1, round(top + h)), 250.0, -1)
    if h >= 3:
        cv2.rectangle(img, (x0 + 1, round(top) + 1), (x1 - 1, round(top + h) - 1), -800.0, -1)
    ellipse(img, cx, cy, a, b, FAT, body.tilt)
    ellipse(img, cx, cy, ia, ib, SOFT, body.tilt)
    # lungs, with a gravity-dependent density gradient added below
    lungs = np.zeros((size, size), np.uint8)
    s = lung_scale(z)
    lw, lh = body.lung_width * ia * s, body.lung_height * ib * s
    for side in (-1, 1):
        ellipse(lungs, cx + side * body.lung_offset * ia, cy - 0.1 * lh, lw, lh, 1,
                 body.tilt + side * 8)
    # mediastinum: heart with epicardial fat (lower chest), descending aorta, spine, sternum
    heart = min(max((z - 0.3) / 0.35, 0.0), 1.0)
    hx, hy = cx + body.heart_shift * size, cy - 0.05 * ib
    solid = np.zeros((size, size), np.float32)
    if heart > 0:
        ellipse(solid, hx, hy, 0.32 * ia * heart + 1.5, 0.5 * ib * heart + 1.5, 1, -25)
        ellipse(img, hx, hy, 0.32 * ia * heart + 1.5, 0.5 * ib * heart + 1.5, FAT, -25)
        ellipse(img, hx, hy, 0.32 * ia * heart, 0.5 * ib * heart, 45, -25)
    ellipse(solid, cx, cy - 0.2 * ib, 0.14 * ia, 0.45 * ib, 1)  # mediastinal fat column
    aorta = (cx + 0.12 * ia, cy + 0.45 * ib, 0.09 * ib)
    ellipse(solid, *aorta[:2], aorta[2] + 1, aorta[2] + 1, 1)
    vr = 0.14 * ib  # vertebral body radius
    vy = cy + 0.6 * ib
    ellipse(solid, cx, vy, vr * 1.6, vr * 2.4, 1)
    lung = (lungs > 0) & (solid == 0)
    ys = np.linspace(-30.0, 30.0, size, dtype=np.float32)[:, None]  # posterior is denser
    img = np.where(lung, np.float32(LUNG) + ys, img)
    ellipse(img, cx, cy - 0.2 * ib, 0.14 * ia, 0.45 * ib, -60)
    ellipse(img, *aorta, aorta[2], BLOOD)
    ellipse(img, cx, vy, vr, vr, CORTEX)
    ellipse(img, cx, vy, vr * 0.8, vr * 0.8, BONE)
    ellipse(img, cx, vy + vr * 1.6, vr * 0.45, vr * 0.45, 15)  # spinal canal (CSF)
    canal = np.zeros_like(img)
    ellipse(canal, cx, vy + vr * 1.6, vr * 0.85, vr * 0.85, 1, thickness=max(size // 128, 1) + 1)
    img[(canal > 0) & (img == SOFT)] = CORTEX  # posterior arch
    cv2.rectangle(img, (round(cx - vr * 0.2), round(vy + vr * 2.3)),
                  (round(cx + vr * 0.2), round(vy + vr * 2.8)), BONE, -1)  # spinous process
    cv2.rectangle(img, (round(cx - 0.05 * ia), round(cy - ib * 0.98)),
                  (round(cx + 0.05 * ia), round(cy - ib * 0.9)), BONE, -1)  # sternum
    # ribs: oval cross-sections along the chest wall, their angles drift with z
    rr = max(0.012 * size, 1.2)
    for k in range(8):
        for side in (-1, 1):
            t = math.radians(-150 + 40 * k + 25 * math.sin(2 * math.pi * (3 * z + 0.1 * k)))
            rx, ry = cx + side * 0.93 * ia * math.cos(t), cy + 0.93 * ib * math.sin(t)
            ellipse(img, rx, ry, rr * 1.4, rr, BONE, math.degrees(t) + 90)
            lung[max(round(ry - 2 * rr), 0):round(ry + 2 * rr) + 1,
                 max(round(rx - 2 * rr), 0):round(rx + 2 * rr) + 1] = False
    return img, lung


def lesion_mask(size: int, z: float, lesion: Lesion | None) -> np.ndarray:
    """Boolean (size, size) disk where the spherical nodule cuts the slice at `z`."""
    if lesion is None or abs(z - lesion.z) >= lesion.half_depth:
        return np.zeros((size, size), bool)
    r = lesion.radius * math.sqrt(1.0 - ((z - lesion.z) / lesion.half_depth) ** 2)
    yy, xx = np.ogrid[:size, :size]
    return (xx - lesion.x) ** 2 + (yy - lesion.y) ** 2 <= r * r


def ct_slice(size: int, z: float, rng: np.random.Generator, lesion: Lesion | None = None,
             body: Body | None = None, noise_hu: float = 15.0) -> np.ndarray:
    """One axial chest CT slice at chest fraction `z`, in HU (int16, within 12-bit range).

    Air outside (-1000), lungs (~-850) with a few vessels, soft tissue (~40), fat, spine, ribs
    and sternum (bone > 300), the table, a mild blur and Gaussian noise. A nodule, if given, is
    painted after the blur, so the slice differs from the lesion-free one exactly inside
    `lesion_mask(size, z, lesion)`.
    """
    img, lung = _anatomy(size, z, body or Body())
    where = np.flatnonzero(lung)
    if where.size:
        vessel = max(size / 256, 1.0)
        for flat in rng.choice(where, size=min(8, where.size), replace=False):
            y, x = divmod(int(flat), size)
            ellipse(img, x, y, vessel, vessel, float(rng.uniform(-250, 40)))
    img = cv2.GaussianBlur(img, (0, 0), 0.6 * max(size / 128, 1.0))
    disk = lesion_mask(size, z, lesion)
    if lesion is not None and disk.any():
        img[disk] = lesion.hu
    img += rng.standard_normal((size, size), dtype=np.float32) * np.float32(noise_hu)
    return np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)


def place_lesion(size: int, zs: list[float], body: Body, rng: np.random.Generator,
                 spacing_mm: float) -> Lesion:
    """A nodule (radius 3-8 px at 128 px, scaled with size; +30..60 HU) wholly inside a lung.

    Its centre is on one of the middle slices of `zs`; candidates are pixels of the lung mask
    eroded by the nodule radius (+2 px) on every slice the sphere touches.
    """
    scale = size / 128
    radius = max(float(rng.uniform(3.0, 8.0)) * scale, 2.0)
    margin = 2.0 * min(scale, 1.0)
    mid = len(zs) // 2
    centre = zs[int(rng.integers(max(mid - 2, 0), min(mid + 2, len(zs) - 1) + 1))]
    hu = float(rng.uniform(30, 60))
    while True:
        half = radius * spacing_mm / CHEST_MM
        ok = np.ones((size, size), bool)
        for z in zs:
            if abs(z - centre) >= half:
                continue
            r = radius * math.sqrt(1.0 - ((z - centre) / half) ** 2) + margin
            k = 2 * math.ceil(r) + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            ok &= cv2.erode(_anatomy(size, z, body)[1].astype(np.uint8), kernel) > 0
        candidates = np.flatnonzero(ok)
        if candidates.size or radius <= 1.0:
            break
        radius *= 0.85
    if not candidates.size:
        raise ValueError(f"no room for a lesion inside the lungs at {size} px")
    y, x = divmod(int(rng.choice(candidates)), size)
    return Lesion(x=float(x), y=float(y), z=centre, radius=radius, half_depth=half, hu=hu)
