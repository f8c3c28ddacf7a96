"""NIfTI reader: nibabel-written NIfTI-1/2, .nii and .nii.gz, plane order, scaling, limits."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medspark.io.nifti import read_nifti
from medspark.io.types import Limits, ReadError

AFFINE = np.array([[0.5, 0, 0, 10.0], [0, 0.7, 0, -5.0], [0, 0, 2.0, -20.0], [0, 0, 0, 1]])


def nifti_bytes(arr: np.ndarray, version: int = 1, gz: bool = False, affine=AFFINE,
                slope: float | None = None, inter: float = 0.0, descrip: str = "") -> bytes:
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(arr, affine)
    img.header.set_xyzt_units("mm", "sec")
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    if descrip:
        img.header["descrip"] = descrip.encode()
    data = img.to_bytes()
    return gzip.compress(data) if gz else data


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("gz", [False, True])
def test_3d_planes_are_transposed_slices(version, gz):
    arr = np.arange(4 * 3 * 5, dtype=np.int16).reshape(4, 3, 5)  # nx=4, ny=3, nz=5
    img = read_nifti(nifti_bytes(arr, version, gz), Limits())
    assert (img.format, img.n_planes, img.rows, img.cols, img.channels) == ("nifti", 5, 3, 4, 1)
    assert img.pixels.shape == (5, 3, 4, 1)
    for z in range(5):
        np.testing.assert_array_equal(img.pixels[z, :, :, 0], arr[:, :, z].T)
    assert img.pixel_spacing_mm == pytest.approx((0.7, 0.5))
    assert img.slice_thickness_mm == pytest.approx(2.0)
    assert img.slice_positions == pytest.approx([-20.0 + 2.0 * z for z in range(5)])
    assert img.photometric == "MONOCHROME2"
    assert img.modality is None
    assert all(v is None for v in img.identifiers.values())
    assert img.attributes["nifti_version"] == str(version)
    assert img.attributes["dims"] == "4x3x5"


def test_4d_plane_index_is_t_times_nz_plus_z():
    arr = np.random.default_rng(0).integers(0, 200, size=(3, 2, 4, 3)).astype(np.int16)
    img = read_nifti(nifti_bytes(arr), Limits())
    assert img.n_planes == 12
    for t in range(3):
        for z in range(4):
            np.testing.assert_array_equal(img.pixels[t * 4 + z, :, :, 0], arr[:, :, z, t].T)
    assert img.slice_positions[:4] == img.slice_positions[4:8]
    assert img.pixels.dtype == np.uint8  # smallest exact dtype of 0..199


def test_2d_image_is_one_plane():
    arr = np.arange(6, dtype=np.uint16).reshape(2, 3) * 1000
    img = read_nifti(nifti_bytes(arr, gz=True), Limits())
    assert img.pixels.shape == (1, 3, 2, 1)
    np.testing.assert_array_equal(img.pixels[0, :, :, 0], arr.T)
    assert img.slice_thickness_mm is None


def test_5d_vector_dimension_becomes_channels():
    arr = np.arange(2 * 3 * 4 * 1 * 3, dtype=np.int16).reshape(2, 3, 4, 1, 3)
    img = read_nifti(nifti_bytes(arr), Limits())
    assert (img.n_planes, img.channels) == (4, 3)
    np.testing.assert_array_equal(img.pixels[1], arr[:, :, 1, 0, :].transpose(1, 0, 2))


def test_scaling_gives_exact_integers_in_small_dtype():
    raw = np.array([0, 1, 500, 1000, 3000, 4095], dtype=np.int16).reshape(2, 3, 1)
    img = read_nifti(nifti_bytes(raw, slope=1.0, inter=-1024.0), Limits())
    assert img.pixels.dtype == np.int16
    np.testing.assert_array_equal(img.pixels[0, :, :, 0], (raw[:, :, 0].astype(int) - 1024).T)
    assert img.bits_stored == 16

    img = read_nifti(nifti_bytes(raw, slope=0.5, inter=-10.0), Limits())
    assert img.pixels.dtype.kind == "f"
    np.testing.assert_array_equal(img.pixels[0, :, :, 0], (raw[:, :, 0] * 0.5 - 10.0).T)


def test_float_data_is_kept_exactly():
    arr = np.random.default_rng(1).normal(size=(4, 4, 2)).astype(np.float32)
    img = read_nifti(nifti_bytes(arr, version=2, gz=True), Limits())
    assert img.pixels.dtype == np.float32
    np.testing.assert_array_equal(img.pixels[1, :, :, 0], arr[:, :, 1].T)
    assert img.bits_stored == 32


def test_big_endian_file_gives_native_pixels():
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    arr = np.arange(-4, 4, dtype=">i2").reshape(2, 2, 2)
    data = nib.Nifti1Image(arr, np.eye(4), header=header).to_bytes()
    assert data[:4] == b"\x00\x00\x01\x5c"
    img = read_nifti(data, Limits())
    assert img.pixels.dtype.isnative
    np.testing.assert_array_equal(img.pixels[1, :, :, 0], arr[:, :, 1].T)


def test_attributes_exclude_free_text():
    arr = np.zeros((2, 2, 2), dtype=np.uint8)
    img = read_nifti(nifti_bytes(arr, descrip="PATIENT SMITH JOHN"), Limits())
    assert {"datatype", "dims", "xyzt_units", "intent_code", "qform_code",
            "sform_code"} <= set(img.attributes)
    assert not {"descrip", "aux_file", "db_name"} & set(img.attributes)
    assert not any("SMITH" in v for v in img.attributes.values())


@pytest.mark.parametrize("gz", [False, True])
def test_limits_checked_from_header(gz):
    arr = np.zeros((8, 8, 6), dtype=np.uint8)
    data = nifti_bytes(arr, gz=gz)
    with pytest.raises(ReadError) as err:
        read_nifti(data, Limits(max_pixels_per_plane=63))
    assert err.value.error_class == "over_limit_pixels_per_plane"
    with pytest.raises(ReadError) as err:
        read_nifti(data, Limits(max_planes_per_file=5))
    assert err.value.error_class == "over_limit_planes_per_file"


def test_huge_header_is_rejected_before_reading_data():
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30_000, 30_000, 10))
    hdr.set_data_dtype(np.float64)
    data = hdr.binaryblock + b"\x00" * 4  # no voxel data at all
    with pytest.raises(ReadError) as err:
        read_nifti(gzip.compress(data), Limits())
    assert err.value.error_class == "over_limit_pixels_per_plane"


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_raises(gz):
    full = nifti_bytes(np.ones((16, 16, 4), dtype=np.int16))
    for cut in (100, len(full) - 10):
        data = gzip.compress(full[:cut]) if gz else full[:cut]
        with pytest.raises(ReadError) as err:
            read_nifti(data, Limits())
        assert err.value.error_class == "truncated"
    if gz:  # a cut gzip stream, not a gzip of a cut file
        with pytest.raises(ReadError):
            read_nifti(gzip.compress(full)[:-40], Limits())
