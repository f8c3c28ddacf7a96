"""Synthetic 2D images other than CT: a chest radiograph, a dermoscopy photo, a T1 head slice.

Pure and deterministic like `anatomy`: each is a function of its size and a seeded
`numpy.random.Generator`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from medspark.sample.anatomy import ellipse


def xray_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A chest radiograph-like image (PA view), float32 in [0, 1] (bright = dense)."""
    att = np.zeros((size, size), np.float32)
    cx, s = size / 2, size
    ellipse(att, cx, 0.55 * s, 0.42 * s, 0.52 * s, 1.0)
    lungs = np.zeros_like(att)
    for side in (-1, 1):
        ellipse(lungs, cx + side * 0.17 * s, 0.48 * s, 0.13 * s, 0.3 * s, 0.75, side * 6)
    att -= lungs
    ellipse(att, cx + 0.05 * s, 0.62 * s, 0.15 * s, 0.13 * s, 0.55, -20)  # heart
    spine = np.zeros_like(att)
    spine[:, round(cx - 0.035 * s):round(cx + 0.035 * s)] = 0.5
    att += np.where(att > 0, spine, 0)
    thick = max(size // 100, 1)
    for k in range(9):
        for side in (-1, 1):
            centre = (round((cx + side * 0.1 * s) * 16), round((0.2 + 0.075 * k) * s * 16))
            axes = (round(0.19 * s * 16), round(0.07 * s * 16))
            start, end = (180, 320) if side < 0 else (220, 360)
            cv2.ellipse(att, centre, axes, side * 12, start, end, 0.35, thick, cv2.LINE_AA, 4)
    for side in (-1, 1):  # clavicles
        cv2.line(att, (round(cx + side * 0.04 * s), round(0.17 * s)),
                 (round(cx + side * 0.3 * s), round(0.12 * s)), 0.5, thick * 2, cv2.LINE_AA)
    att = cv2.GaussianBlur(att, (0, 0), size / 150)
    img = 1.0 - np.exp(-1.6 * np.clip(att, 0, None))
    img = img / max(float(img.max()), 1e-6)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.012)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def dermoscopy_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A dermoscopy-like colour photo (uint8 BGR): skin, an irregular pigmented lesion, hairs."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    img = np.broadcast_to(np.array([140, 165, 215], np.float32), (size, size, 3)).copy()
    img *= (0.9 + 0.15 * (1 - (xx - 0.5) ** 2 - yy * 0.3))[..., None]
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    wobble = sum(rng.uniform(0.03, 0.09) * np.sin(k * angles + rng.uniform(0, 2 * np.pi))
                 for k in (2, 3, 5, 7))
    radii = 0.25 * size * (1 + wobble)
    pts = np.stack([size / 2 + radii * np.cos(angles), size / 2 + radii * np.sin(angles)], 1)
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], (45.0, 70.0, 115.0), cv2.LINE_AA)
    cv2.ellipse(img, (round(size * 0.52), round(size * 0.48)),
                (round(size * 0.08), round(size * 0.06)), 30, 0, 360, (30.0, 40.0, 70.0), -1)
    img = cv2.GaussianBlur(img, (0, 0), size / 120)
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(5):  # hairs: gently curved quadratic curves
        p0, p1, p2 = rng.uniform(-0.1, 1.1, (3, 2)) * size
        curve = (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t**2 * p2
        cv2.polylines(img, [np.round(curve).astype(np.int32)], False, (25.0, 30.0, 40.0),
                      max(size // 200, 1), cv2.LINE_AA)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def brain_slice(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """A T1-weighted head MR slice at fraction `z` (0 = skull base, 1 = vertex), float32."""
    img = np.zeros((size, size), np.float32)
    s = math.sqrt(max(1.0 - (2 * z - 1) ** 2 * 0.8, 0.05))
    cx, cy = size / 2, size / 2
    a, b = 0.38 * size * s, 0.46 * size * s
    ellipse(img, cx, cy, a, b, 850)  # scalp fat
    ellipse(img, cx, cy, a * 0.93, b * 0.94, 120)  # skull
    ellipse(img, cx, cy, a * 0.86, b * 0.88, 300)  # CSF
    ellipse(img, cx, cy, a * 0.82, b * 0.85, 520)  # grey matter
    ellipse(img, cx, cy, a * 0.62, b * 0.68, 720)  # white matter
    if 0.3 < z < 0.75:  # lateral ventricles
        for side in (-1, 1):
            ellipse(img, cx + side * 0.06 * size, cy - 0.02 * size, 0.035 * size,
                     0.13 * size * s, 260, side * 10)
    img = cv2.GaussianBlur(img, (0, 0), max(size / 96, 0.6))
    noise = rng.standard_normal((2, size, size), dtype=np.float32) * np.float32(12)
    return np.hypot(img + noise[0], noise[1]).astype(np.float32)  # Rician magnitude noise
