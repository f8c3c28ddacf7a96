"""Pure segmentation (numpy / OpenCV / scikit-image / scipy), no Spark; masks are bool (H, W).

`threshold` (fixed, HU range, Otsu, adaptive), `edges` (Canny, Sobel), `morphology` (erode,
dilate, open, close, fill holes), `components` (largest, top-k, minimum area, border) and
`anatomy` (CT body and lung masks). The same functions are registered as pipeline steps in
`medspark.steps.STEPS`, a package above this one and `medspark.preprocess`.
"""

from medspark.segment.anatomy import body_mask, lung_mask
from medspark.segment.components import clear_border, largest, min_area, top_k
from medspark.segment.edges import canny, sobel
from medspark.segment.morphology import closing, dilate, erode, fill_holes, opening
from medspark.segment.threshold import HU_PRESETS, adaptive, fixed, hu_range, otsu

__all__ = [
    "HU_PRESETS",
    "adaptive",
    "body_mask",
    "canny",
    "clear_border",
    "closing",
    "dilate",
    "erode",
    "fill_holes",
    "fixed",
    "hu_range",
    "largest",
    "lung_mask",
    "min_area",
    "opening",
    "otsu",
    "sobel",
    "top_k",
]
