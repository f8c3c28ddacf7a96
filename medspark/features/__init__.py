"""Pure-numpy radiomics features for one 2D plane, matching pyradiomics 3.0.1.

>>> from medspark.features import extract
>>> feats = extract(image, mask, spacing=(0.7, 0.7), binWidth=25)
>>> feats["glcm_Contrast"]

Families (pyradiomics names): ``firstorder``, ``shape2D``, ``glcm``, ``glrlm``, ``glszm``,
``gldm``, ``ngtdm``. Settings use pyradiomics names and defaults
(:mod:`medspark.features.settings`). No Spark import here: this is the per-image core.
"""

from medspark.features.extract import FAMILIES, extract, feature_names
from medspark.features.settings import DEFAULTS

__all__ = ["DEFAULTS", "FAMILIES", "extract", "feature_names"]
