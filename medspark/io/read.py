"""Format sniffing and dispatch: bytes (+ optional name) -> DecodedImage or ReadError.

The format is decided by content, never by file name; the name is only a fallback for DICOM
datasets too unusual to sniff. Every unexpected reader exception becomes a `decode_error` whose
message holds the exception type only, never file contents.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from medspark.io.nifti import GZIP_MAGIC, gunzip, nifti_version
from medspark.io.raster import raster_format
from medspark.io.types import DecodedImage, Limits, ReadError

_DICOM_GROUPS = (0x0002, 0x0008)


def _dicom_without_preamble(data: bytes) -> bool:
    """A dataset starting at offset 0 with a group 0x0002/0x0008 tag in a plausible encoding."""
    if len(data) < 8:
        return False
    vr_ok = data[4:6].isalpha() and data[4:6].isupper()
    for order in "<>":
        group = struct.unpack(f"{order}H", data[:2])[0]
        if group not in _DICOM_GROUPS:
            continue
        if vr_ok:  # explicit VR, little or big endian
            return True
        # implicit VR little endian: a 32-bit value length that fits in the file
        if order == "<" and struct.unpack("<I", data[4:8])[0] <= len(data) - 8:
            return True
    return False


def _is_nifti(data: bytes) -> bool:
    if data[:2] == GZIP_MAGIC:
        try:
            data = gunzip(data, 4)
        except ReadError:
            return False
    return nifti_version(data) is not None


def sniff_format(data: bytes) -> str | None:
    """"dicom", "nifti", "png", "jpeg" or "tiff" from the content, or None if unrecognised."""
    if data[128:132] == b"DICM":  # first: DICOM-TIFF dual-personality files are DICOM
        return "dicom"
    raster = raster_format(data)
    if raster:
        return raster
    if _is_nifti(data):
        return "nifti"
    if _dicom_without_preamble(data):
        return "dicom"
    return None


def _reader(fmt: str) -> Callable[[bytes, Limits], DecodedImage]:
    """Import lazily: a worker only pays for (and only needs) the readers it uses."""
    if fmt == "dicom":
        from medspark.io.dicom import read_dicom

        return read_dicom
    if fmt == "nifti":
        from medspark.io.nifti import read_nifti

        return read_nifti
    from medspark.io.raster import read_raster

    return read_raster


def read_image(data: bytes, limits: Limits, name: str = "") -> DecodedImage:
    """Sniff `data` and decode it with the matching reader; raises ReadError on any failure."""
    if not data:
        raise ReadError("empty_file", "file is empty")
    limits.check_file_bytes(len(data))
    fmt = sniff_format(data)
    if fmt is None and name.lower().endswith(".dcm"):
        fmt = "dicom"
    if fmt is None:
        raise ReadError("not_an_image", "content is not a recognised image format")
    reader = _reader(fmt)
    try:
        return reader(data, limits)
    except ReadError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a quarantine row
        raise ReadError("decode_error", f"{type(e).__name__}: the {fmt} reader failed") from e
