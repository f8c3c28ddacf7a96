"""Pure readers: bytes or path -> planes + metadata, with no Spark import.

`read_image` sniffs the format and dispatches to the DICOM, NIfTI or raster reader. Every reader
returns a :class:`DecodedImage` or raises :class:`ReadError`; the Spark layer turns the error into
a quarantine row.
"""

from medspark.io.types import DecodedImage, Limits, ReadError

__all__ = ["DecodedImage", "Limits", "ReadError"]
