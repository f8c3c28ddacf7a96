"""Versions of the libraries a run used, for run manifests and model metadata."""

from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = ("medspark", "pyspark", "pyarrow", "pandas", "numpy", "pydicom", "pylibjpeg",
             "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls", "nibabel",
             "opencv-python-headless", "pillow", "tifffile", "pydantic", "deltalake",
             "scikit-learn", "scikit-image", "scipy", "torch")


def library_versions() -> dict[str, str | None]:
    """Installed versions of medspark's libraries (None when one is missing)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
