"""Pure-numpy radiomics features for one 2D plane, matching pyradiomics 3.0.1.

>>> from medspark.features import extract
>>> feats = extract(image, mask, spacing=(0.7, 0.7), binWidth=25)
>>> feats["glcm_Contrast"]

Families and feature names are pyradiomics' (``firstorder``, ``shape2D``, ``glcm``, ``glrlm``,
``glszm``, ``gldm``, ``ngtdm``; keys ``<family>_<FeatureName>``, the features its extractor
enables by default), settings use pyradiomics names and defaults
(:mod:`medspark.features.settings`), and every value equals pyradiomics' (``force2D=True``,
``force2Ddimension=0``, ``Original`` image) to ~1e-12 relative, at over 10x its speed. No Spark
import here: this is the per-image core. The first ``extract`` call makes glibc keep freed heap
for reuse (process-wide; see :mod:`medspark.features.allocator`).

Where pyradiomics differs from IBSI (kept, for parity with pyradiomics):

* ``firstorder_Kurtosis`` is IBSI's (excess) kurtosis + 3.
* Fixed bin width bins start at a multiple of ``binWidth`` (0-aligned:
  ``floor(x / w) - floor(min / w) + 1``), not at the ROI minimum; fixed bin count uses
  ``numpy.histogram`` edges with the top edge raised by 1.
* ``Energy``, ``TotalEnergy`` and ``RootMeanSquared`` add ``voxelArrayShift`` (default 0).
* GLCM and GLRLM features are computed per direction and averaged (IBSI's "averaged"
  aggregation); ``Ng`` in ``Idn``/``Idmn`` is the largest grey level in the ROI.
* With those taken into account, every comparable IBSI-1 digital-phantom reference value
  (intensity statistics and histogram, and the 2D texture values) is reproduced
  (``tests/test_features_ibsi.py``).

Where medspark differs from pyradiomics (where pyradiomics would raise or refuse):

* NaN/inf pixels are left out of the ROI; ``mask=None`` means the whole plane (pyradiomics
  refuses a mask without background).
* An empty or single-pixel ROI, or one failing ``minimumROIDimensions``/``minimumROISize``,
  gives NaN for every feature instead of an exception.
* GLCM/GLDM/NGTDM ``distances`` that do not fit in the ROI bounding box give NaN for that
  family; so do GLCM with more than ~2000 grey levels present and the pairwise NGTDM features
  with more than ~4000 (pyradiomics runs out of memory there).
* ``TotalEnergy`` multiplies by the pixel area (a plane has no slice thickness).
* shape2D is computed for a one-column ROI (pyradiomics' extractor skips it there).
"""

from medspark.features.extra import EXTRA_DEFAULTS, EXTRA_FAMILIES
from medspark.features.extract import (
    ALL_FAMILIES,
    FAMILIES,
    check_settings,
    extract,
    feature_names,
)
from medspark.features.settings import DEFAULTS

__all__ = ["ALL_FAMILIES", "DEFAULTS", "EXTRA_DEFAULTS", "EXTRA_FAMILIES", "FAMILIES",
           "check_settings", "extract", "feature_names"]
