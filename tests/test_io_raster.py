"""Raster reader: OpenCV-encoded PNG/JPEG/TIFF, colour order, bit depth, pages, limits."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile

from medspark.io.raster import read_raster
from medspark.io.types import Limits, ReadError


def encode(ext: str, arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


def png_chunks(width: int, height: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A hand-made 8-bit PNG (OpenCV cannot write grey+alpha)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw_rows))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_grey_keeps_dtype_and_values(dtype):
    arr = (np.arange(20 * 30).reshape(20, 30) * (7 if dtype == np.uint8 else 97)).astype(dtype)
    img = read_raster(encode(".png", arr), Limits())
    assert (img.format, img.n_planes, img.rows, img.cols, img.channels) == ("png", 1, 20, 30, 1)
    assert img.pixels.dtype == dtype
    np.testing.assert_array_equal(img.pixels[0, :, :, 0], arr)
    assert img.photometric == "MONOCHROME2"
    assert img.bits_stored == np.dtype(dtype).itemsize * 8


def test_png_colour_is_rgb_order():
    bgr = np.zeros((4, 5, 3), dtype=np.uint8)
    bgr[0, 0] = (0, 0, 255)  # red in OpenCV's BGR order
    img = read_raster(encode(".png", bgr), Limits())
    assert (img.channels, img.photometric) == (3, "RGB")
    assert img.pixels[0, 0, 0].tolist() == [255, 0, 0]
    assert img.pixels[0, 1, 1].tolist() == [0, 0, 0]


def test_png_16bit_rgba():
    bgra = np.zeros((3, 3, 4), dtype=np.uint16)
    bgra[1, 2] = (0, 0, 65535, 1234)
    img = read_raster(encode(".png", bgra), Limits())
    assert (img.channels, img.photometric, img.bits_stored) == (4, "RGBA", 16)
    assert img.pixels[0, 1, 2].tolist() == [65535, 0, 0, 1234]


def test_png_grey_alpha_becomes_rgba():
    rows = b"".join(b"\x00" + bytes([10, 200, 20, 100]) for _ in range(3))  # 2x3 grey+alpha
    img = read_raster(png_chunks(2, 3, 4, rows), Limits())
    assert (img.rows, img.cols, img.channels, img.photometric) == (3, 2, 4, "RGBA")
    assert img.pixels[0, 0, 1].tolist() == [20, 20, 20, 100]


def test_jpeg_grey_and_colour():
    grey = np.full((16, 24), 120, dtype=np.uint8)
    img = read_raster(encode(".jpg", grey), Limits())
    assert (img.format, img.rows, img.cols, img.channels) == ("jpeg", 16, 24, 1)
    assert abs(int(img.pixels[0, 8, 8, 0]) - 120) <= 2

    bgr = np.zeros((16, 16, 3), dtype=np.uint8)
    bgr[..., 2] = 250  # all red
    img = read_raster(encode(".jpg", bgr), Limits())
    assert (img.channels, img.photometric, img.pixels.dtype) == (3, "RGB", np.uint8)
    r, g, b = img.pixels[0, 8, 8].tolist()
    assert r > 200 and g < 50 and b < 50


def test_tiff_single_page_16bit():
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    img = read_raster(encode(".tiff", arr), Limits())
    assert (img.format, img.n_planes, img.pixels.dtype) == ("tiff", 1, np.uint16)
    np.testing.assert_array_equal(img.pixels[0, :, :, 0], arr)


def test_tiff_multi_page_with_opencv():
    pages = [np.full((5, 7), i * 10, dtype=np.uint8) for i in range(3)]
    ok, buf = cv2.imencodemulti(".tiff", pages)
    assert ok
    img = read_raster(buf.tobytes(), Limits())
    assert img.pixels.shape == (3, 5, 7, 1)
    assert [int(img.pixels[i, 0, 0, 0]) for i in range(3)] == [0, 10, 20]


@pytest.mark.parametrize("byteorder,bigtiff", [("<", False), (">", False), ("<", True)])
def test_tiff_multi_page_with_tifffile(byteorder, bigtiff):
    stack = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, byteorder=byteorder, bigtiff=bigtiff) as tif:
        for page in stack:
            tif.write(page)
    img = read_raster(buf.getvalue(), Limits())
    np.testing.assert_array_equal(img.pixels[..., 0], stack)
    with pytest.raises(ReadError) as err:
        read_raster(buf.getvalue(), Limits(max_planes_per_file=3))
    assert err.value.error_class == "over_limit_planes_per_file"
    with pytest.raises(ReadError) as err:
        read_raster(buf.getvalue(), Limits(max_pixels_per_plane=29))
    assert err.value.error_class == "over_limit_pixels_per_plane"


def test_tiff_rgb_order():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb")
    img = read_raster(buf.getvalue(), Limits())
    assert (img.channels, img.photometric) == (3, "RGB")
    assert img.pixels[0, 0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff"])
def test_plane_limit(ext):
    data = encode(ext, np.zeros((20, 20), dtype=np.uint8))
    with pytest.raises(ReadError) as err:
        read_raster(data, Limits(max_pixels_per_plane=399))
    assert err.value.error_class == "over_limit_pixels_per_plane"
    assert read_raster(data, Limits(max_pixels_per_plane=400)).rows == 20


def test_oversized_header_is_rejected_without_decoding():
    data = png_chunks(100_000, 100_000, 0, b"")  # would be 10 GB if decoded
    with pytest.raises(ReadError) as err:
        read_raster(data, Limits())
    assert err.value.error_class == "over_limit_pixels_per_plane"


def test_oversized_jpeg_header_is_rejected_without_decoding():
    data = bytearray(encode(".jpg", np.zeros((16, 24), dtype=np.uint8)))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, rows, cols
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    with pytest.raises(ReadError) as err:
        read_raster(bytes(data), Limits())
    assert err.value.error_class == "over_limit_pixels_per_plane"


def test_tiff_directory_loop_is_cut():
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        for value in (1, 2):
            tif.write(np.full((4, 5), value, dtype=np.uint8), contiguous=False)
    data = bytearray(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        first, second = (page.offset for page in tif.pages)
    entries = struct.unpack_from("<H", data, second)[0]
    struct.pack_into("<I", data, second + 2 + 12 * entries, first)  # page 2 -> page 1 again
    img = read_raster(bytes(data), Limits(max_planes_per_file=2))
    assert [int(img.pixels[i, 0, 0, 0]) for i in range(img.n_planes)] == [1, 2]


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_raises(ext):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode(ext, noise)
    for cut in (len(data) // 2, 20):
        with pytest.raises(ReadError) as err:
            read_raster(data[:cut], Limits())
        assert err.value.error_class == "truncated"


def test_truncated_tiff_raises():
    data = encode(".tiff", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    with pytest.raises(ReadError):
        read_raster(data[: len(data) // 2], Limits())
