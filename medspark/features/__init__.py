"""Pure-numpy radiomics features for one 2D plane, matching pyradiomics 3.0.1.

>>> from medspark.features import extract
>>> feats = extract(image, mask, spacing=(0.7, 0.7), binWidth=25)
>>> feats["glcm_Contrast"]

Families (:mod:`medspark.features.registry`: name -> feature names and ``compute(context)``,
each family module's docstring defines its features with their formulas) and feature names are
pyradiomics' (``firstorder``, ``shape2D``, ``glcm``, ``glrlm``,
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
  family.
* Memory is bounded: no array is sized by the largest grey level (a 32-bit image with
  ``binWidth`` 25 has ~1e8), GLRLM/GLSZM/GLDM keep only their matrices' non-zero cells, and a
  GLCM, or the pairwise NGTDM features, whose grey-level matrices would exceed
  ``max_matrix_bytes`` (default 256 MiB: ~1600 and ~2300 grey levels present) give NaN with an
  ``over_matrix_budget: ...`` warning (:func:`extract_result`; pyradiomics runs out of memory
  there).
* ``TotalEnergy`` multiplies by the pixel area (a plane has no slice thickness).
* shape2D is computed for a one-column ROI (pyradiomics' extractor skips it there).
"""

from medspark.features.context import MAX_MATRIX_BYTES, OVER_MATRIX_BUDGET
from medspark.features.extra import EXTRA_DEFAULTS, EXTRA_FAMILIES
from medspark.features.extract import (
    Extraction,
    check_settings,
    extract,
    extract_result,
    feature_names,
)
from medspark.features.registry import ALL_FAMILIES, FAMILIES, REGISTRY
from medspark.features.settings import DEFAULTS

__all__ = ["ALL_FAMILIES", "DEFAULTS", "EXTRA_DEFAULTS", "EXTRA_FAMILIES", "FAMILIES",
           "MAX_MATRIX_BYTES", "OVER_MATRIX_BUDGET", "REGISTRY", "Extraction", "check_settings",
           "extract", "extract_result", "feature_names"]
