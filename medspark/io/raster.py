"""PNG, JPEG and TIFF reader (OpenCV): bytes -> planes of uint8/uint16 grey or RGB(A) pixels.

Plane sizes (and the TIFF page count) come from a small header parse before OpenCV decodes
anything, so an oversized image is rejected without allocating its pixels. A multi-page TIFF
gives one plane per page; colour is returned in RGB(A) order, not OpenCV's BGR(A).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from medspark.io.types import DecodedImage, Limits, ReadError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PHOTOMETRIC = {1: "MONOCHROME2", 3: "RGB", 4: "RGBA"}
# JPEG start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC)
_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}


def raster_format(data: bytes) -> str | None:
    """"png", "jpeg" or "tiff" from the magic bytes, else None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[:4] in TIFF_MAGICS:
        return "tiff"
    return None


def _png_size(data: bytes) -> tuple[int, int]:
    """(rows, cols) from the IHDR chunk, which PNG requires to come first."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ReadError("truncated", "PNG header is truncated or has no IHDR chunk")
    cols, rows = struct.unpack(">II", data[16:24])
    return rows, cols


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(rows, cols) from the first start-of-frame segment."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ReadError("decode_error", "JPEG marker expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            raise ReadError("decode_error", "JPEG scan without a frame header")
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF:
            if pos + 9 > len(data):
                break
            rows, cols = struct.unpack(">HH", data[pos + 5 : pos + 9])
            if rows == 0:
                raise ReadError("unsupported", "JPEG with the height in a DNL segment")
            return rows, cols
        pos += 2 + length
    raise ReadError("truncated", "JPEG has no frame header")


def _tiff_pages(data: bytes, limits: Limits) -> list[tuple[int, int]]:
    """(rows, cols) of every page, walking the IFD chain (classic and BigTIFF) without decoding.

    Stops as soon as the page limit is exceeded, and on an IFD loop.
    """
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if len(data) < (16 if big else 8):
        raise ReadError("truncated", "TIFF header is truncated")
    if big:
        first = struct.unpack_from(order + "Q", data, 8)[0]
        count_fmt, entry_size, next_fmt = "Q", 20, "Q"
    else:
        first = struct.unpack_from(order + "I", data, 4)[0]
        count_fmt, entry_size, next_fmt = "H", 12, "I"
    count_size, next_size = struct.calcsize(count_fmt), struct.calcsize(next_fmt)
    value_fmt = {3: "H", 4: "I", 16: "Q"}
    pages: list[tuple[int, int]] = []
    seen: set[int] = set()
    offset = first
    while offset and offset not in seen:
        seen.add(offset)
        if offset + count_size > len(data):
            raise ReadError("truncated", "TIFF directory lies beyond the end of the file")
        n = struct.unpack(order + count_fmt, data[offset : offset + count_size])[0]
        start = offset + count_size
        end = start + n * entry_size
        if end + next_size > len(data):
            raise ReadError("truncated", "TIFF directory lies beyond the end of the file")
        size = {256: 0, 257: 0}
        for e in range(start, end, entry_size):
            tag, typ = struct.unpack(order + "HH", data[e : e + 4])
            if tag in size and typ in value_fmt:
                value_at = e + (12 if big else 8)
                size[tag] = struct.unpack_from(order + value_fmt[typ], data, value_at)[0]
        pages.append((size[257], size[256]))
        limits.check_plane(size[257], size[256])
        limits.check_planes(len(pages))
        offset = struct.unpack(order + next_fmt, data[end : end + next_size])[0]
    if not pages:
        raise ReadError("decode_error", "TIFF has no image directory")
    return pages


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
    tail = data[-64:]
    ended = b"IEND" in tail if fmt == "png" else b"\xff\xd9" in tail if fmt == "jpeg" else True
    if not ended:
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
        rows, cols = _png_size(data) if fmt == "png" else _jpeg_size(data)
        limits.check_plane(rows, cols)
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
