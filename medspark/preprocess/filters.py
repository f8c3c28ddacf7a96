"""Filtering steps: gaussian, median, bilateral, non-local means, unsharp mask, Laplacian
sharpening.

Each is `f(image, spacing, **params) -> (image, spacing)`, returns float32 in the input's units
(HU stays HU) and works channel by channel. Lengths given in mm are converted with the pixel
spacing, per axis.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_nl_means

from medspark.image import Spacing, check_image, length_to_px
from medspark.preprocess._common import as_float32, per_channel

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def estimate_noise(channel: np.ndarray) -> float:
    """Standard deviation of additive Gaussian noise in a 2-D image.

    Immerkaer's Laplacian-difference kernel (1996) cancels smooth structure; its response to
    noise of std s has std 6 s, estimated here by the median absolute value / 0.6745 so that
    edges (a small fraction of pixels) do not inflate it.
    """
    x = as_float32(channel)
    if x.ndim != 2 or min(x.shape) < 3:
        return 0.0
    response = cv2.filter2D(x, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1]
    return float(np.median(np.abs(response))) / (0.6745 * 6.0)


def _gaussian(ch: np.ndarray, sy: float, sx: float) -> np.ndarray:
    return cv2.GaussianBlur(
        as_float32(ch), (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT_101
    )


def gaussian(
    image: np.ndarray, spacing: Spacing, *, sigma: float = 1.0, units: str = "px"
) -> tuple[np.ndarray, Spacing]:
    """Gaussian blur with standard deviation `sigma` in pixels or mm (anisotropic in pixels
    when the spacing is)."""
    image = check_image(image)
    sy, sx = length_to_px(sigma, spacing, units, "gaussian sigma")
    if sy <= 0 or sx <= 0:
        raise ValueError(f"gaussian sigma must be positive, got {sigma}")
    return per_channel(lambda ch: _gaussian(ch, sy, sx), image), spacing


def median(image: np.ndarray, spacing: Spacing, *, size: int = 3) -> tuple[np.ndarray, Spacing]:
    """Median filter over a size x size window (odd), e.g. against salt-and-pepper noise."""
    image = check_image(image)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median size must be a positive odd integer, got {size}")

    def one(ch: np.ndarray) -> np.ndarray:
        if size == 1:
            return as_float32(ch).copy()
        if ch.dtype == np.uint8:
            return cv2.medianBlur(np.ascontiguousarray(ch), size).astype(np.float32)
        if size in (3, 5) and (ch.dtype.itemsize <= 2 or ch.dtype == np.float32):
            # OpenCV's float median only has 3x3 and 5x5; these dtypes are exact in float32
            return cv2.medianBlur(np.ascontiguousarray(as_float32(ch)), size)
        return as_float32(ndimage.median_filter(ch, size=size, mode="reflect"))

    return per_channel(one, image), spacing


def bilateral(
    image: np.ndarray,
    spacing: Spacing,
    *,
    sigma_color: float | None = None,
    sigma_space: float = 3.0,
    diameter: int = 0,
) -> tuple[np.ndarray, Spacing]:
    """Edge-preserving bilateral filter (OpenCV). sigma_color is in image units (HU for CT;
    default: 2x the estimated noise std), sigma_space in pixels; diameter 0 derives the
    neighbourhood from sigma_space."""
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(as_float32(ch))
        sc = sigma_color if sigma_color is not None else 2.0 * estimate_noise(x)
        if sc <= 0:
            return x.copy()
        return cv2.bilateralFilter(x, int(diameter) or -1, float(sc), float(sigma_space))

    return per_channel(one, image), spacing


def nl_means(
    image: np.ndarray,
    spacing: Spacing,
    *,
    h: float = 0.8,
    patch_size: int = 5,
    patch_distance: int = 6,
    sigma: float | None = None,
) -> tuple[np.ndarray, Spacing]:
    """Non-local means (skimage, fast mode) in the image's own units, no 8-bit quantisation.

    `sigma` is the noise std in image units (default: estimated per channel); the filter
    strength is h * sigma, so `h` is scale-free (skimage suggests 0.6-1.0 with sigma given).
    """
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        x = as_float32(ch)
        s = float(sigma) if sigma is not None else estimate_noise(x)
        if s <= 0:
            return x.copy()
        out = denoise_nl_means(
            x, patch_size=patch_size, patch_distance=patch_distance, h=h * s, sigma=s,
            fast_mode=True,
        )
        return as_float32(out)

    return per_channel(one, image), spacing


def unsharp_mask(
    image: np.ndarray,
    spacing: Spacing,
    *,
    sigma: float = 1.0,
    amount: float = 1.0,
    units: str = "px",
) -> tuple[np.ndarray, Spacing]:
    """Sharpen: x + amount * (x - gaussian(x, sigma))."""
    image = check_image(image)
    sy, sx = length_to_px(sigma, spacing, units, "unsharp_mask sigma")

    def one(ch: np.ndarray) -> np.ndarray:
        x = as_float32(ch)
        return x + np.float32(amount) * (x - _gaussian(x, sy, sx))

    return per_channel(one, image), spacing


def laplacian_sharpen(
    image: np.ndarray, spacing: Spacing, *, strength: float = 0.5, ksize: int = 1
) -> tuple[np.ndarray, Spacing]:
    """Sharpen: x - strength * Laplacian(x) (OpenCV aperture `ksize`: 1, 3 or 5)."""
    image = check_image(image)
    if ksize not in (1, 3, 5):
        raise ValueError(f"laplacian ksize must be 1, 3 or 5, got {ksize}")

    def one(ch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(as_float32(ch))
        lap = cv2.Laplacian(x, cv2.CV_32F, ksize=ksize, borderType=cv2.BORDER_REFLECT_101)
        return x - np.float32(strength) * lap

    return per_channel(one, image), spacing


def sobel_magnitude(image: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, Spacing]:
    """Gradient magnitude (3x3 Sobel scaled by 1/8: a ramp of slope 1 per pixel gives 1)."""
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(as_float32(ch))
        gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        return cv2.magnitude(gx, gy)

    return per_channel(one, image), spacing
