"""DICOM reader tests on real bytes: pydicom's bundled test files and datasets written here."""

from __future__ import annotations

import io
import random

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from medspark.io.dicom import read_dicom
from medspark.io.dtypes import smallest_exact_dtype, to_smallest_exact
from medspark.io.read import read_image
from medspark.io.types import Limits, ReadError

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-98765"
LIMITS = Limits()


def bundled(name: str) -> bytes:
    """Bytes of a test file shipped inside pydicom (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with pydicom"
    with open(path, "rb") as fh:
        return fh.read()


def reference(name: str) -> np.ndarray:
    """pydicom's own decode, with the modality LUT for greyscale, as (planes, rows, cols, ch)."""
    ds = pydicom.dcmread(io.BytesIO(bundled(name)))
    arr = ds.pixel_array
    if ds.SamplesPerPixel == 1:
        arr = apply_modality_lut(arr, ds)
    return arr.reshape(int(ds.get("NumberOfFrames") or 1), ds.Rows, ds.Columns, -1)


def write(ds: Dataset, **kwargs) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=kwargs.pop("enforce", True), **kwargs)
    return buf.getvalue()


def ct_slice(rows: int = 4, cols: int = 5, **overrides) -> Dataset:
    """A small CT slice in HU (slope 1, intercept -1024) with identifying header values."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = CTImageStorage
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.AccessionNumber = "ACC4711"
    ds.StudyDate = "20240131"
    ds.Modality = "CT"
    ds.Manufacturer = "Acme"
    ds.BodyPartExamined = "CHEST"
    ds.ImagePositionPatient = [-100.0, -120.0, 37.5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.75]
    ds.SliceThickness = 2.5
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = np.arange(rows * cols, dtype="<u2").tobytes()
    for keyword, value in overrides.items():
        setattr(ds, keyword, value)
    return ds


def read_error(data: bytes, limits: Limits = LIMITS) -> ReadError:
    with pytest.raises(ReadError) as info:
        read_dicom(data, limits)
    assert PATIENT_ID not in info.value.message and "Doe" not in info.value.message
    return info.value


# --- bundled files ------------------------------------------------------------------------


def test_ct_small_is_in_hounsfield_units_as_int16():
    ds = pydicom.dcmread(io.BytesIO(bundled("CT_small.dcm")))
    img = read_dicom(bundled("CT_small.dcm"), LIMITS)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept)
    assert img.format == "dicom"
    assert img.pixels.dtype == np.int16 and img.pixels.shape == (1, 128, 128, 1)
    assert np.array_equal(img.pixels[0, :, :, 0], expected)
    assert (img.n_planes, img.rows, img.cols, img.channels) == (1, 128, 128, 1)
    assert img.modality == "CT" and img.photometric == "MONOCHROME2"
    assert img.pixel_spacing_mm == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))
    assert img.slice_thickness_mm == pytest.approx(float(ds.SliceThickness))
    assert img.bits_stored == ds.BitsStored
    assert img.sop_class_uid == ds.SOPClassUID == CTImageStorage
    assert img.transfer_syntax_uid == ExplicitVRLittleEndian
    normal = np.cross([float(v) for v in ds.ImageOrientationPatient[:3]],
                      [float(v) for v in ds.ImageOrientationPatient[3:]])
    position = float(np.dot([float(v) for v in ds.ImagePositionPatient], normal))
    assert img.slice_positions == [pytest.approx(position)]
    assert img.identifiers == {
        "patient_id": ds.PatientID, "study_uid": ds.StudyInstanceUID,
        "series_uid": ds.SeriesInstanceUID, "sop_uid": ds.SOPInstanceUID,
        "accession_number": ds.get("AccessionNumber") or None, "study_date": ds.StudyDate,
    }
    assert ds.PatientID in img.phi_values
    assert "PatientID" not in img.attributes and "PatientName" not in img.attributes


@pytest.mark.parametrize(("name", "shape", "photometric"), [
    ("MR_small.dcm", (1, 64, 64, 1), "MONOCHROME2"),
    ("MR_small_RLE.dcm", (1, 64, 64, 1), "MONOCHROME2"),
    ("JPGExtended.dcm", (1, 1024, 256, 1), "MONOCHROME2"),
    ("JPEG2000.dcm", (1, 1024, 256, 1), "MONOCHROME2"),
    ("MR_small_jpeg_ls_lossless.dcm", (1, 64, 64, 1), "MONOCHROME2"),
    ("MR_small_jp2klossless.dcm", (1, 64, 64, 1), "MONOCHROME2"),
    ("MR_small_bigendian.dcm", (1, 64, 64, 1), "MONOCHROME2"),
    ("image_dfl.dcm", (1, 512, 512, 1), "MONOCHROME2"),
    ("SC_rgb_jpeg_dcmtk.dcm", (1, 100, 100, 3), "RGB"),  # YBR_FULL in the header
    ("SC_ybr_full_422_uncompressed.dcm", (1, 100, 100, 3), "RGB"),
    ("SC_rgb_rle_2frame.dcm", (2, 100, 100, 3), "RGB"),
    ("examples_ybr_color.dcm", (30, 240, 320, 3), "RGB"),  # multi-frame JPEG, YBR_FULL_422
    ("rtdose.dcm", (15, 10, 10, 1), "MONOCHROME2"),  # multi-frame, implicit VR
    ("examples_palette.dcm", (1, 350, 800, 1), "PALETTE COLOR"),  # indices, LUT not applied
])
def test_bundled_file_decodes_like_pydicom(name, shape, photometric):
    img = read_dicom(bundled(name), LIMITS)
    assert img.pixels.shape == shape
    assert (img.n_planes, img.rows, img.cols, img.channels) == shape
    assert img.photometric == photometric
    assert img.pixels.dtype.isnative and img.pixels.flags.c_contiguous
    expected = reference(name)
    assert np.array_equal(img.pixels, expected)
    assert img.pixels.dtype == smallest_exact_dtype(expected)
    assert len(img.slice_positions) == shape[0]


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm"])
def test_lossless_and_big_endian_encodings_equal_mr_small(name):
    plain = read_dicom(bundled("MR_small.dcm"), LIMITS)
    img = read_dicom(bundled(name), LIMITS)
    assert img.pixels.dtype == plain.pixels.dtype
    assert np.array_equal(img.pixels, plain.pixels)
    assert img.slice_positions == plain.slice_positions


def test_big_endian_and_deflate_report_their_transfer_syntax():
    assert read_dicom(bundled("MR_small_bigendian.dcm"), LIMITS).transfer_syntax_uid == (
        "1.2.840.10008.1.2.2")
    assert read_dicom(bundled("image_dfl.dcm"), LIMITS).transfer_syntax_uid == (
        "1.2.840.10008.1.2.1.99")


def test_jpeg_lossy_with_malformed_scan_header_is_a_decode_error():
    # NEMA's NM1_JPLY: its SOS segment is invalid for sequential JPEG; libjpeg refuses it
    # (JPGExtended.dcm is the fixed version and decodes above).
    assert read_error(bundled("JPEG-lossy.dcm")).error_class == "decode_error"


def test_files_without_file_meta():
    ct = bundled("CT_small.dcm")
    dataset_only = ct[ct.index(b"DICM") + 4:]
    dataset_only = dataset_only[dataset_only.index(b"\x08\x00\x05\x00"):]  # after group 0002
    img = read_dicom(dataset_only, LIMITS)
    assert np.array_equal(img.pixels, read_dicom(ct, LIMITS).pixels)
    assert img.transfer_syntax_uid == ExplicitVRLittleEndian  # inferred from the encoding

    ds = ct_slice()
    del ds.file_meta
    implicit = read_dicom(write(ds, enforce=False, implicit_vr=True, little_endian=True), LIMITS)
    assert implicit.transfer_syntax_uid == ImplicitVRLittleEndian
    assert implicit.pixels[0, 0, :, 0].tolist() == [-1024, -1023, -1022, -1021, -1020]

    big = read_dicom(bundled("ExplVR_BigEndNoMeta.dcm"), LIMITS)
    assert big.n_planes == 0 and big.transfer_syntax_uid == "1.2.840.10008.1.2.2"


def test_bundled_no_meta_file_starts_with_a_stray_byte():
    # pydicom's no_meta.dcm is b" " + CT_small's dataset: no element parses at offset 0.
    data = bundled("no_meta.dcm")
    assert read_error(data).error_class == "not_dicom"
    assert np.array_equal(read_dicom(data[1:], LIMITS).pixels,
                          read_dicom(bundled("CT_small.dcm"), LIMITS).pixels)


@pytest.mark.parametrize(("name", "modality"), [
    ("rtplan.dcm", "RTPLAN"), ("test-SR.dcm", "SR"), ("rtstruct.dcm", "RTSTRUCT"),
])
def test_non_image_objects_have_no_planes(name, modality):
    ds = pydicom.dcmread(io.BytesIO(bundled(name)), force=True)  # rtstruct.dcm has no meta
    img = read_dicom(bundled(name), LIMITS)
    assert img.pixels is None
    assert (img.n_planes, img.rows, img.cols, img.channels) == (0, 0, 0, 0)
    assert img.sop_class_uid == ds.SOPClassUID
    assert img.modality == modality
    assert img.identifiers["sop_uid"] == ds.SOPInstanceUID
    assert img.identifiers["patient_id"] == (ds.get("PatientID") or None)


def test_dispatcher_routes_dicom_here():
    img = read_image(bundled("CT_small.dcm"), LIMITS, name="x.bin")
    assert img.format == "dicom" and img.pixels.dtype == np.int16


# --- written datasets ---------------------------------------------------------------------


def test_written_slice_metadata_and_hu():
    img = read_dicom(write(ct_slice()), LIMITS)
    assert img.pixels.dtype == np.int16
    assert img.pixels[0, :, :, 0].tolist() == (np.arange(20).reshape(4, 5) - 1024).tolist()
    assert img.pixel_spacing_mm == (0.5, 0.75)
    assert img.slice_thickness_mm == 2.5
    assert img.slice_positions == [pytest.approx(37.5)]
    assert (img.modality, img.manufacturer, img.body_part) == ("CT", "Acme", "CHEST")
    assert img.bits_stored == 12
    assert img.identifiers["patient_id"] == PATIENT_ID
    assert img.identifiers["accession_number"] == "ACC4711"
    assert img.identifiers["study_date"] == "20240131"
    assert PATIENT_ID in img.phi_values
    assert PATIENT_ID not in img.attributes.values()


def test_slice_position_is_projection_on_the_normal():
    # coronal: rows along +x, columns along -z, so the normal is +y
    ds = ct_slice(ImageOrientationPatient=[1, 0, 0, 0, 0, -1],
                  ImagePositionPatient=[-100.0, -120.0, 37.5])
    assert read_dicom(write(ds), LIMITS).slice_positions == [pytest.approx(-120.0)]
    # oblique: normal = cross(r, c)
    r, c = np.array([0.6, 0.8, 0.0]), np.array([0.0, 0.0, -1.0])
    ds = ct_slice(ImageOrientationPatient=[*r, *c], ImagePositionPatient=[10.0, 20.0, 30.0])
    expected = float(np.dot([10.0, 20.0, 30.0], np.cross(r, c)))
    assert read_dicom(write(ds), LIMITS).slice_positions == [pytest.approx(expected)]
    missing = ct_slice()
    del missing.ImageOrientationPatient
    assert read_dicom(write(missing), LIMITS).slice_positions == [None]


def enhanced(frames: int = 3) -> Dataset:
    """Enhanced multi-frame with spacing, orientation and rescale in functional groups."""
    ds = ct_slice(NumberOfFrames=frames, SOPClassUID=EnhancedMRImageStorage, Modality="MR")
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "SliceThickness", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, keyword)
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.8, 0.9], 1.25
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 2, -10
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for index in range(frames):
        position, item = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, 10.0 + 2.5 * index]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.arange(frames * 20, dtype="<u2").tobytes()
    return ds


def test_float_pixel_data():
    ds = ct_slice()
    for keyword in ("PixelData", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
                    "BitsStored", "HighBit"):
        delattr(ds, keyword)
    ds.BitsAllocated = 32
    values = np.array([0.5, 1.25, -3.0, 7.0] * 5, dtype="<f4")
    ds.FloatPixelData = values.tobytes()
    img = read_dicom(write(ds), LIMITS)
    assert img.pixels.dtype == np.float32 and img.bits_stored == 32
    assert img.pixels.ravel().tolist() == values.tolist()


def test_enhanced_multiframe_functional_groups():
    img = read_dicom(write(enhanced()), LIMITS)
    assert img.pixels.shape == (3, 4, 5, 1)
    assert img.pixels.ravel().tolist() == (np.arange(60) * 2 - 10).tolist()
    assert img.pixels.dtype == np.int8
    assert img.pixel_spacing_mm == (0.8, 0.9)
    assert img.slice_thickness_mm == 1.25
    assert img.slice_positions == [pytest.approx(10.0), pytest.approx(12.5), pytest.approx(15.0)]


def test_multiframe_without_per_frame_positions():
    assert read_dicom(bundled("SC_rgb_rle_2frame.dcm"), LIMITS).slice_positions == [None, None]


# --- errors -------------------------------------------------------------------------------


def test_truncated_files():
    ct = bundled("CT_small.dcm")
    assert read_error(ct[: len(ct) // 2]).error_class in ("truncated", "decode_error")
    assert read_error(bundled("MR_truncated.dcm")).error_class == "truncated"
    assert read_error(bundled("rtplan_truncated.dcm")).error_class == "truncated"
    data = write(ct_slice())
    assert read_error(data[:-7]).error_class == "truncated"  # inside native pixel data
    compressed = bundled("JPEG2000.dcm")
    assert read_error(compressed[:-200]).error_class == "truncated"  # inside a fragment


def test_file_ending_inside_an_element_header_is_truncated():
    ds = ct_slice()
    del ds.PixelData
    data = write(ds)
    header = len(data) - 4  # cut into the last element's value (PixelRepresentation, US)
    assert read_error(data[:header]).error_class == "truncated"
    full = write(ct_slice())
    pixel_header = full.index(b"\xe0\x7f\x10\x00")
    assert read_error(full[: pixel_header + 6]).error_class == "truncated"


def test_no_truncation_point_leaks_header_values():
    ct = bundled("CT_small.dcm")
    ds = pydicom.dcmread(io.BytesIO(ct))
    values = [str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID, ds.SOPInstanceUID]
    for cut in range(1, len(ct), 97):
        try:
            read_dicom(ct[:cut], LIMITS)
        except ReadError as e:
            assert not [v for v in values if v and v in e.message], cut


def test_random_bytes_are_not_dicom():
    rng = random.Random(7)
    for size in (1, 7, 64, 1000, 5000):
        data = bytes(rng.randrange(256) for _ in range(size))
        assert read_error(data).error_class == "not_dicom"
    assert read_error(b"hello, this is plain text\n" * 40).error_class == "not_dicom"


def test_missing_image_attributes_are_an_invalid_header():
    ds = ct_slice()
    del ds.Rows
    error = read_error(write(ds))
    assert error.error_class == "invalid_header" and "Rows" in error.message
    ds = ct_slice(BitsAllocated=12)
    assert read_error(write(ds)).error_class == "invalid_header"


def test_unsupported_transfer_syntax():
    ds = ct_slice()
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    error = read_error(write(ds))
    assert error.error_class == "unsupported_transfer_syntax"
    assert MPEG2MPML in error.message


def test_unknown_transfer_syntax_is_unsupported_for_images_only():
    ds = ct_slice()
    ds.file_meta.TransferSyntaxUID = "1.2.3.4"
    data = write(ds, implicit_vr=False, little_endian=True)
    assert read_error(data).error_class == "unsupported_transfer_syntax"
    del ds.PixelData
    img = read_dicom(write(ds, implicit_vr=False, little_endian=True), LIMITS)
    assert img.n_planes == 0 and img.transfer_syntax_uid == "1.2.3.4"


def test_malformed_number_of_frames_is_an_invalid_header():
    data = write(ct_slice(NumberOfFrames=7))
    encoded = b"\x28\x00\x08\x00IS\x02\x007 "
    assert data.count(encoded) == 1
    error = read_error(data.replace(encoded, encoded[:-2] + b"x "))
    assert error.error_class == "invalid_header"


def test_decode_error_message_is_generic():
    ds = ct_slice()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
    ds.PixelData = encapsulate([b"not a codestream" * 4])
    error = read_error(write(ds))
    assert error.error_class == "decode_error"


def test_limits_are_checked_before_decoding():
    small_planes = Limits(max_pixels_per_plane=100)
    assert read_error(bundled("CT_small.dcm"), small_planes).error_class == (
        "over_limit_pixels_per_plane")
    # undecodable pixel data: the limit still wins, so nothing was decoded
    assert read_error(bundled("JPEG-lossy.dcm"), small_planes).error_class == (
        "over_limit_pixels_per_plane")
    one_plane = Limits(max_planes_per_file=1)
    assert read_error(bundled("SC_rgb_rle_2frame.dcm"), one_plane).error_class == (
        "over_limit_planes_per_file")
    # a header claiming 10^6 frames over 3 frames of data: rejected from the header alone
    huge = enhanced()
    huge.NumberOfFrames = 1_000_000
    assert read_error(write(huge), one_plane).error_class == "over_limit_planes_per_file"
    many_planes = Limits(max_planes_per_file=2_000_000)
    assert read_error(write(huge), many_planes).error_class == "truncated"


# --- dtypes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "dtype"), [
    (np.array([0, 255]), "uint8"),
    (np.array([-1, 127]), "int8"),
    (np.array([-1, 200]), "int16"),
    (np.array([0, 65535]), "uint16"),
    (np.array([-32768, 32767]), "int16"),
    (np.array([0, 70000]), "uint32"),
    (np.array([-1, 70000]), "int32"),
    (np.array([1.0, 2.0]), "uint8"),
    (np.array([-1024.0, 3071.0]), "int16"),
    (np.array([4e9]), "uint32"),
    (np.array([0.5, -2.25]), "float32"),
    (np.array([0.1]), "float64"),
    (np.array([np.nan, 1.0]), "float32"),
    (np.array([np.inf, 3.0]), "float32"),
    (np.array([1.5], dtype=np.float16), "float32"),
    (np.array([], dtype=np.float64), "uint8"),
    (np.array([True, False]), "uint8"),
    (np.array([2**40], dtype=np.int64), "float32"),
    (np.array([2**40 + 1], dtype=np.int64), "float64"),
    (np.array([2**62 + 1], dtype=np.int64), "int64"),
])
def test_smallest_exact_dtype(values, dtype):
    assert smallest_exact_dtype(values) == np.dtype(dtype)
    converted = to_smallest_exact(values)
    assert converted.dtype == np.dtype(dtype) and converted.shape == values.shape
    floats = values.dtype.kind == "f" and converted.dtype.kind == "f"
    assert np.array_equal(converted, values, equal_nan=floats)


def test_to_smallest_exact_makes_big_endian_native():
    out = to_smallest_exact(np.array([1, 300], dtype=">i4"))
    assert out.dtype == np.uint16 and out.dtype.isnative and out.tolist() == [1, 300]


def test_complex_values_have_no_exact_real_dtype():
    with pytest.raises(TypeError):
        smallest_exact_dtype(np.array([1 + 2j]))
