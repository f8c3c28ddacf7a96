"""`medspark sample`: a deterministic synthetic dataset of realistic medical image files.

No real dataset can be downloaded, so this writes one: chest CT series as real DICOM with a full
set of (invented) identifying headers, other DICOM kinds (multi-frame, RLE, a text SR), PNG,
JPEG, TIFF, NIfTI-1/2 and deliberately broken files, plus a hospital-style `labels.csv`, nodule
masks and `phi.json`, the list of every identifying string written, which tests search for in
ingest outputs. The same seed gives byte-identical files: all randomness comes from numpy
Generators seeded from `seed`, UIDs are hashed from it and dates are fixed.

The package: `anatomy` (CT anatomy in HU, nodules), `images` (radiograph, dermoscopy, head MR),
`people` (invented patients and studies, seeded streams and UIDs), `plan` (the CT series),
`dicom` (shared DICOM modules, CT series, multi-frame, RLE, SR), `objects` (RTSTRUCT, SEG),
`files` (PNG/JPEG/TIFF, NIfTI, broken files) and `generate` (the whole sample, nightly splits).
"""

from medspark.sample.dicom import write_ct_series, write_series
from medspark.sample.generate import generate_sample, split_nights

__all__ = ["generate_sample", "split_nights", "write_ct_series", "write_series"]
