"""Edge segmentation: Canny and thresholded Sobel gradient magnitude, as bool masks."""

from __future__ import annotations

import numpy as np
from skimage.feature import canny as _sk_canny
from skimage.filters import threshold_otsu

from medspark.image import Spacing, to_gray
from medspark.preprocess.filters import sobel_magnitude


def canny(
    image: np.ndarray,
    spacing: Spacing,
    *,
    sigma: float = 1.0,
    low: float = 0.1,
    high: float = 0.2,
    use_quantiles: bool = False,
) -> np.ndarray:
    """Canny edges (skimage). The image is min-max scaled to [0, 1] first, so `low`/`high`
    are fractions of its intensity range whatever its units; with use_quantiles they are
    quantiles of the gradient magnitude instead."""
    if not 0 <= low <= high:
        raise ValueError(f"canny needs 0 <= low <= high, got {low}, {high}")
    x = to_gray(image).astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.zeros(x.shape, dtype=bool)
    x = (x - lo) / (hi - lo)
    return _sk_canny(
        x, sigma=sigma, low_threshold=low, high_threshold=high, use_quantiles=use_quantiles
    )


def sobel(
    image: np.ndarray,
    spacing: Spacing,
    *,
    threshold: float | None = None,
    quantile: float | None = None,
) -> np.ndarray:
    """Pixels whose Sobel gradient magnitude (image units per pixel) exceeds `threshold`, or
    the `quantile` of the magnitudes, or (neither given) Otsu's threshold of the magnitudes."""
    if threshold is not None and quantile is not None:
        raise ValueError("sobel takes threshold or quantile, not both")
    mag, _ = sobel_magnitude(to_gray(image), spacing)
    if threshold is not None:
        t = float(threshold)
    elif quantile is not None:
        if not 0 < quantile < 1:
            raise ValueError(f"sobel quantile must be in (0, 1), got {quantile}")
        t = float(np.quantile(mag, quantile))
    elif mag.min() == mag.max():
        return np.zeros(mag.shape, dtype=bool)
    else:
        t = float(threshold_otsu(mag))
    return mag > t
