"""Binary morphology on masks: erode, dilate, open, close with an elliptical (disk) element,
and hole filling. Radii are in pixels or mm (an ellipse in pixels when spacing is anisotropic).

Each is `f(mask, spacing, **params) -> mask` (bool).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from medspark.image import Spacing, length_to_px


def as_mask(mask: np.ndarray) -> np.ndarray:
    """A 2-D bool mask from bool / 0-1 / 0-255 input; (H, W, 1) is squeezed."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    return mask if mask.dtype == np.bool_ else mask != 0


def disk(radius: float, spacing: Spacing = None, units: str = "px") -> np.ndarray:
    """Elliptical structuring element (uint8) of `radius` px or mm; radius 0 is a single pixel."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    ry, rx = length_to_px(radius, spacing, units, "morphology radius")
    ry, rx = round(ry), round(rx)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rx + 1, 2 * ry + 1))


def _morph(op: int, mask: np.ndarray, spacing: Spacing, radius: float, units: str) -> np.ndarray:
    m = as_mask(mask)
    kernel = disk(radius, spacing, units)
    if kernel.size == 1:
        return m.copy()
    return cv2.morphologyEx(np.ascontiguousarray(m).view(np.uint8), op, kernel).astype(bool)


def erode(mask: np.ndarray, spacing: Spacing, *, radius: float = 1.0, units: str = "px"):
    """Shrink the mask by `radius`."""
    return _morph(cv2.MORPH_ERODE, mask, spacing, radius, units)


def dilate(mask: np.ndarray, spacing: Spacing, *, radius: float = 1.0, units: str = "px"):
    """Grow the mask by `radius`."""
    return _morph(cv2.MORPH_DILATE, mask, spacing, radius, units)


def opening(mask: np.ndarray, spacing: Spacing, *, radius: float = 1.0, units: str = "px"):
    """Erode then dilate: removes parts thinner than the disk (specks, thin bridges)."""
    return _morph(cv2.MORPH_OPEN, mask, spacing, radius, units)


def closing(mask: np.ndarray, spacing: Spacing, *, radius: float = 1.0, units: str = "px"):
    """Dilate then erode: closes gaps and notches narrower than the disk."""
    return _morph(cv2.MORPH_CLOSE, mask, spacing, radius, units)


def fill_holes(mask: np.ndarray, spacing: Spacing = None) -> np.ndarray:
    """Fill background regions not connected to the image border (scipy)."""
    return ndimage.binary_fill_holes(as_mask(mask))
