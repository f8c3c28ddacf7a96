"""Pure readers: bytes or path -> planes + metadata, with no Spark import.

`read_image` sniffs the format and dispatches to the DICOM, NIfTI or raster reader. Every reader
returns a :class:`DecodedImage` or raises :class:`ReadError`; the Spark layer turns the error into
a quarantine row.
"""

from __future__ import annotations

from typing import Any

from medspark.io.types import DecodedImage, Limits, ReadError

__all__ = ["DecodedImage", "Limits", "ReadError", "read_image", "read_nifti", "read_raster",
           "sniff_format"]

# Loaded on first use (PEP 562) so that importing `Limits` on the driver does not pull in
# OpenCV and nibabel.
_LAZY = {"read_image": "read", "sniff_format": "read", "read_nifti": "nifti",
         "read_raster": "raster"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"medspark.io.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
