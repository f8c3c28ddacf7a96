"""Format sniffing by content and read_image dispatch / error mapping."""

from __future__ import annotations

import gzip
import io
import struct

import cv2
import nibabel as nib
import numpy as np
import pytest
import tifffile

from medspark.io import read as read_module
from medspark.io import read_image, sniff_format
from medspark.io.types import Limits, ReadError


def png() -> bytes:
    return cv2.imencode(".png", np.zeros((4, 4), dtype=np.uint8))[1].tobytes()


def nii(version: int = 1) -> bytes:
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    return cls(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)).to_bytes()


def tiff(byteorder: str = "<") -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((3, 3), dtype=np.uint8), byteorder=byteorder)
    return buf.getvalue()


UID = b"1.2\x00"
SAMPLES = {
    "png": png(),
    "jpeg": cv2.imencode(".jpg", np.zeros((8, 8), dtype=np.uint8))[1].tobytes(),
    "tiff_le": tiff("<"),
    "tiff_be": tiff(">"),
    "nifti1": nii(1),
    "nifti2": nii(2),
    "nifti1_gz": gzip.compress(nii(1)),
    "nifti2_gz": gzip.compress(nii(2)),
    "dicom_part10": b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 4,
    "dicom_explicit_le": b"\x08\x00\x16\x00UI\x04\x00" + UID,
    "dicom_implicit_le": b"\x08\x00\x16\x00" + struct.pack("<I", 4) + UID,
    "dicom_explicit_be": b"\x00\x08\x00\x16UI\x00\x04" + UID,
}
EXPECTED = {"png": "png", "jpeg": "jpeg", "tiff_le": "tiff", "tiff_be": "tiff",
            "nifti1": "nifti", "nifti2": "nifti", "nifti1_gz": "nifti", "nifti2_gz": "nifti",
            "dicom_part10": "dicom", "dicom_explicit_le": "dicom",
            "dicom_implicit_le": "dicom", "dicom_explicit_be": "dicom"}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_sniff_each_format(kind):
    assert sniff_format(SAMPLES[kind]) == EXPECTED[kind]


def test_nifti_big_endian_header_is_sniffed():
    header = nib.Nifti1Header(endianness=">")
    assert sniff_format(header.binaryblock) == "nifti"


@pytest.mark.parametrize("data", [
    b"",
    b"hello, this is a plain text file\n" * 10,
    np.random.default_rng(3).integers(1, 255, 4096, dtype=np.uint8).tobytes(),
    gzip.compress(b"just some compressed text, not a NIfTI header" * 20),
    b"\x1f\x8b\x08\x00garbage",
])
def test_sniff_rejects_non_images(data):
    assert sniff_format(data) is None


def test_png_named_dcm_is_read_as_png():
    img = read_image(png(), Limits(), name="/data/scan.dcm")
    assert img.format == "png"


@pytest.mark.parametrize("kind", ["png", "jpeg", "tiff_le", "nifti1", "nifti2_gz"])
def test_read_image_dispatches(kind):
    img = read_image(SAMPLES[kind], Limits(), name="x.bin")
    assert img.format == EXPECTED[kind]
    assert img.pixels is not None and img.pixels.ndim == 4


def test_zero_bytes_is_empty_file():
    with pytest.raises(ReadError) as err:
        read_image(b"", Limits(), name="a.dcm")
    assert err.value.error_class == "empty_file"


@pytest.mark.parametrize("data", [
    b"patient: SMITH^JOHN\n" * 10,
    np.random.default_rng(3).integers(1, 255, 4096, dtype=np.uint8).tobytes(),
    gzip.compress(b"not a nifti" * 100),
])
def test_unknown_content_is_not_an_image(data):
    with pytest.raises(ReadError) as err:
        read_image(data, Limits(), name="notes.nii.gz")
    assert err.value.error_class == "not_an_image"
    assert "SMITH" not in err.value.message


def test_file_size_limit():
    with pytest.raises(ReadError) as err:
        read_image(png(), Limits(max_file_bytes=10))
    assert err.value.error_class == "over_limit_file_bytes"


def test_unclear_content_named_dcm_goes_to_dicom_reader(monkeypatch):
    seen = []

    def fake_reader(fmt):
        def read(data, limits):
            seen.append(fmt)
            raise ValueError("SMITH^JOHN secret header value")
        return read

    monkeypatch.setattr(read_module, "_reader", fake_reader)
    with pytest.raises(ReadError) as err:
        read_image(b"some unknown bytes", Limits(), name="IMG0001.DCM")
    assert seen == ["dicom"]
    assert err.value.error_class == "decode_error"
    assert err.value.message.startswith("ValueError")
    assert "SMITH" not in err.value.message


def test_reader_read_error_passes_through():
    with pytest.raises(ReadError) as err:
        read_image(SAMPLES["png"][:30], Limits())
    assert err.value.error_class in ("truncated", "decode_error")
