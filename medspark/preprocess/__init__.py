"""Pure image preprocessing (numpy / OpenCV / scikit-image), no Spark.

Steps are `f(image, spacing, **params) -> (image, spacing)`: `geometry` (resize, resample,
crop, pad, rotate, flip; dtype kept, spacing updated), `intensity` (window, normalise,
equalise; float32 out), `filters` (denoise, sharpen; float32 out) and `augment` (seeded
random variants). The step registry and the validated YAML `Pipeline` that runs these steps
together with the segmentation steps live above both packages, in `medspark.steps`. See
docs/preprocess.md.
"""

from medspark.image import Spacing

# the function augment() stays in its module: re-exporting it would hide the module
from medspark.preprocess.augment import Augmented, augment_once, augment_seed

__all__ = ["Augmented", "Spacing", "augment_once", "augment_seed"]
