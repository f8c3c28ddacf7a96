"""PNG, JPEG and TIFF reader (OpenCV): bytes -> planes of uint8/uint16 grey or RGB(A) pixels.

Plane sizes (and the TIFF page count) come from the file's header before OpenCV decodes
anything, so an oversized image is rejected without allocating its pixels: Pillow's lazy
open reads a PNG's IHDR or a JPEG's frame header, tifffile walks a TIFF's image directories
(classic and BigTIFF, either byte order, loops cut) one page at a time, stopping at the page
limit. A multi-page TIFF gives one plane per page; colour is returned in RGB(A) order, not
OpenCV's BGR(A).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import tifffile
from PIL import JpegImagePlugin, PngImagePlugin

from medspark.io.types import DecodedImage, Limits, ReadError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PHOTOMETRIC = {1: "MONOCHROME2", 3: "RGB", 4: "RGBA"}
# Pillow's format classes, opened directly: `Image.open` would add Pillow's own fixed
# decompression-bomb limit, while the limit that applies here is the configurable `Limits`
_PILLOW = {"png": PngImagePlugin.PngImageFile, "jpeg": JpegImagePlugin.JpegImageFile}


def raster_format(data: bytes) -> str | None:
    """"png", "jpeg" or "tiff" from the magic bytes, else None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[:4] in TIFF_MAGICS:
        return "tiff"
    return None


def _ended(fmt: str, data: bytes) -> bool:
    """Whether the data reaches the format's end marker (PNG IEND, JPEG EOI; TIFF has none)."""
    tail = data[-64:]
    return b"IEND" in tail if fmt == "png" else b"\xff\xd9" in tail if fmt == "jpeg" else True


def _header_size(fmt: str, data: bytes) -> tuple[int, int]:
    """(rows, cols) of a PNG or JPEG from its header (Pillow; no pixel is decoded)."""
    try:
        with _PILLOW[fmt](io.BytesIO(data)) as image:
            cols, rows = image.size
    except Exception:  # Pillow raises SyntaxError, OSError, struct.error, ... on bad headers
        kind = "decode_error" if _ended(fmt, data) else "truncated"
        raise ReadError(kind, f"{fmt.upper()} header is unreadable") from None
    return rows, cols


def _tiff_pages(data: bytes, limits: Limits) -> int:
    """Number of pages, checking each page's size and the page count against `limits` as
    tifffile reads the directories, so a file over a limit is not read further."""
    seen: set[int] = set()
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            for page in tif.pages:
                if page.offset in seen:  # the directory chain loops back: its end
                    break
                seen.add(page.offset)
                limits.check_plane(page.imagelength, page.imagewidth)
                limits.check_planes(len(seen))
    except ReadError:
        raise
    except Exception:  # tifffile.TiffFileError, struct.error, ... on a damaged directory
        raise ReadError("decode_error", "TIFF image directory is unreadable") from None
    if not seen:  # tifffile skips a first directory that lies beyond the end of the data
        raise ReadError("truncated", "TIFF has no image directory within the file")
    return len(seen)


def _to_rgb(plane: np.ndarray) -> np.ndarray:
    """(rows, cols, channels) in grey / RGB / RGBA order from OpenCV's grey / BGR / BGRA."""
    if plane.ndim == 2:
        return plane[:, :, None]
    channels = plane.shape[2]
    if channels == 3:
        return cv2.cvtColor(plane, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(plane, cv2.COLOR_BGRA2RGBA)
    if channels == 2:  # grey + alpha -> RGBA, as OpenCV does for PNG
        grey, alpha = plane[:, :, 0], plane[:, :, 1]
        return np.stack([grey, grey, grey, alpha], axis=-1)
    if channels == 1:
        return plane
    raise ReadError("unsupported", f"image with {channels} channels")


def _decode_failed(fmt: str, data: bytes) -> ReadError:
    if not _ended(fmt, data):
        return ReadError("truncated", f"{fmt.upper()} data is truncated")
    return ReadError("decode_error", f"OpenCV could not decode the {fmt.upper()} data")


def read_raster(data: bytes, limits: Limits) -> DecodedImage:
    """Decode a PNG, JPEG or (multi-page) TIFF; pixels keep their decoded dtype."""
    fmt = raster_format(data)
    if fmt is None:
        raise ReadError("not_an_image", "not a PNG, JPEG or TIFF file")
    buf = np.frombuffer(data, dtype=np.uint8)
    if fmt == "tiff":
        _tiff_pages(data, limits)
        ok, mats = cv2.imdecodemulti(buf, cv2.IMREAD_UNCHANGED)
        decoded = list(mats) if ok else []
    else:
        limits.check_plane(*_header_size(fmt, data))
        mat = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        decoded = [] if mat is None else [mat]
    if not decoded:
        raise _decode_failed(fmt, data)
    planes = [_to_rgb(p) for p in decoded]
    first = planes[0]
    if any(p.shape != first.shape or p.dtype != first.dtype for p in planes):
        raise ReadError("unsupported", "multi-page TIFF with pages of different size or type")
    pixels = np.stack(planes)
    n_planes, rows, cols, channels = pixels.shape
    return DecodedImage(
        format=fmt,
        pixels=pixels,
        n_planes=n_planes,
        rows=rows,
        cols=cols,
        channels=channels,
        bits_stored=pixels.dtype.itemsize * 8,
        photometric=_PHOTOMETRIC[channels],
    )
