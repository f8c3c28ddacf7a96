"""DICOM reader (pydicom 3): bytes -> planes in physical units plus catalog metadata.

Geometry is read from the header and the resource limits are checked before any pixel is
decoded. Greyscale pixels get the modality LUT (CT becomes HU), colour is decoded to RGB, and
the result is stored in the smallest exact dtype. Objects without pixel data (SR, RTSTRUCT,
RTPLAN, ...) become zero-plane images so they are still catalogued. Error messages only ever
name exception types, tag keywords, sizes and the transfer syntax UID, never header values.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_has_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medspark.io.dtypes import to_smallest_exact
from medspark.io.types import DecodedImage, Limits, ReadError
from medspark.privacy.profile import collect_phi, filter_attributes

PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = (PIXEL_DATA, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloat...
REQUIRED = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")
SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
UNDEFINED_LENGTH = 0xFFFFFFFF
# what pydicom raises when the bytes run out mid-element (the parser does not check lengths)
SHORT_READ = (EOFError, OSError, IndexError, struct.error, zlib.error, BytesLengthException)
ID_KEYWORDS = {"patient_id": "PatientID", "study_uid": "StudyInstanceUID",
               "series_uid": "SeriesInstanceUID", "sop_uid": "SOPInstanceUID",
               "accession_number": "AccessionNumber", "study_date": "StudyDate"}


def _recognisable(ds: Dataset) -> bool:
    """At least one standard, non-group-length element: `force=True` parses anything.

    Tags only: iterating the dataset itself would convert (and validate) every raw element.
    """
    tags = list(ds.keys())
    return any(tag.element != 0 and dictionary_has_tag(tag) for tag in tags)


def _exc_name(e: BaseException) -> str:
    """Exception type, module-qualified unless builtin (`zlib.error` vs `struct.error`)."""
    module = type(e).__module__
    return type(e).__name__ if module == "builtins" else f"{module}.{type(e).__name__}"


def _parse(data: bytes) -> Dataset:
    """Parse the whole file; only exception type names leave this function."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:  # noqa: BLE001 - any parser failure is a quarantine row
        name = _exc_name(e)
        try:
            head = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        except Exception:  # noqa: BLE001
            head = None
        if head is None or not _recognisable(head):
            if data[128:132] == b"DICM" and isinstance(e, SHORT_READ):
                raise ReadError("truncated", f"{name}: file ends inside the header") from None
            raise ReadError("not_dicom", f"{name}: not a parseable DICOM dataset") from None
        if SEQ_DELIMITER not in data[-4096:]:
            raise ReadError("truncated", f"{name}: file ends inside the pixel data") from None
        raise ReadError("decode_error", f"{name}: pixel data element is malformed") from None
    if not _recognisable(ds):
        if data[128:132] == b"DICM" and len(ds) == 0:
            raise ReadError("truncated", "file ends before the first dataset element")
        raise ReadError("not_dicom", "no recognisable DICOM elements")
    return ds


def _check_complete(ds: Dataset, size: int, deflated: bool) -> None:
    """pydicom silently accepts a file that ends mid-element; detect it from the last one."""
    last = ds.get_item(list(ds.keys())[-1])
    if not isinstance(last, RawDataElement) or last.length == UNDEFINED_LENGTH:
        return
    if last.value is not None and len(last.value) < last.length:
        raise ReadError("truncated", f"file ends inside element {last.tag} "
                        f"({len(last.value)} of {last.length} bytes)")
    end = last.value_tell + last.length
    if not deflated and end < size and last.tag < PIXEL_DATA:
        raise ReadError("truncated", f"file ends inside an element header after {last.tag}")


def _transfer_syntax(ds: Dataset) -> UID:
    """From the file meta, else inferred from the encoding pydicom detected (no-meta files)."""
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if not ds.file_meta.get("TransferSyntaxUID"):  # the pixel decoders read it from here
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else (
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return UID(ds.file_meta.TransferSyntaxUID)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or isinstance(value, bytes | Sequence) and not isinstance(value, str):
        return None
    return str(value).strip() or None


def _floats(value: Any, n: int) -> list[float] | None:
    """`n` finite floats from a DS/FD value, or None if absent or malformed."""
    try:
        out = [float(v) for v in (value if n > 1 else [value])]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def functional_group(ds: Dataset, frame: int, macro: str) -> Dataset | None:
    """Functional group `macro` of `frame` (enhanced multi-frame): per-frame, then shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and len(items) > index and items[index].get(macro):
            return items[index].get(macro)[0]
    return None


def _spacing(ds: Dataset) -> tuple[tuple[float, float] | None, float | None]:
    measures = functional_group(ds, 0, "PixelMeasuresSequence") or Dataset()
    pairs = (_floats(v, 2) for v in (ds.get("PixelSpacing"), ds.get("ImagerPixelSpacing"),
                                       measures.get("PixelSpacing")))
    pixel = next(((p[0], p[1]) for p in pairs if p and min(p) > 0), None)
    thickness = _floats(ds.get("SliceThickness") or measures.get("SliceThickness"), 1)
    return pixel, (thickness[0] if thickness and thickness[0] > 0 else None)


def _slice_positions(ds: Dataset, n_planes: int) -> list[float | None]:
    """ImagePositionPatient projected on the slice normal (row x column direction cosines)."""
    out: list[float | None] = []
    for frame in range(n_planes):
        position = functional_group(ds, frame, "PlanePositionSequence")
        orientation = functional_group(ds, frame, "PlaneOrientationSequence") or ds
        ipp = position.get("ImagePositionPatient") if position else (
            ds.get("ImagePositionPatient") if n_planes == 1 else None)
        xyz = _floats(ipp, 3)
        iop = _floats(orientation.get("ImageOrientationPatient"), 6)
        normal = np.cross(iop[:3], iop[3:]) if iop else np.zeros(3)
        norm = float(np.linalg.norm(normal))
        out.append(float(np.dot(xyz, normal / norm)) if xyz and norm > 1e-6 else None)
    return out


def _geometry(ds: Dataset, tag: int) -> tuple[int, int, int, int, int]:
    """(rows, cols, frames, samples, bits_allocated) of pixel data, validated."""
    required = (*REQUIRED, "PixelRepresentation") if tag == PIXEL_DATA else REQUIRED
    missing = [k for k in required if ds.get(k) in (None, "")]
    if missing:
        raise ReadError("invalid_header", f"pixel data without {', '.join(missing)}")
    try:
        rows, cols, bits, spp = (int(ds[k].value) for k in REQUIRED[:4])
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as e:
        raise ReadError("invalid_header", f"{_exc_name(e)}: non-integer image size") from None
    if min(rows, cols, spp, frames) < 1 or bits not in (1, 8, 16, 32, 64):
        raise ReadError("invalid_header", "Rows, Columns, SamplesPerPixel, NumberOfFrames or "
                        "BitsAllocated out of range")
    return rows, cols, frames, spp, bits


def _rescale(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    """Modality LUT: top-level Rescale/ModalityLUT, else enhanced per-frame transformations."""
    if "ModalityLUTSequence" not in ds and ("RescaleSlope" in ds or "RescaleIntercept" in ds):
        slope = _floats(ds.get("RescaleSlope", 1.0), 1)
        intercept = _floats(ds.get("RescaleIntercept", 0.0), 1)
        if (slope and intercept and arr.dtype.kind in "iu" and float(slope[0]).is_integer()
                and float(intercept[0]).is_integer()):
            # integral rescale (CT: 1 / -1024): exact in integers, without a float64 pass
            return arr.astype(np.int64) * int(slope[0]) + int(intercept[0])
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return np.asarray(apply_modality_lut(arr, ds))
    params = []
    for frame in range(arr.shape[0]):
        item = functional_group(ds, frame, "PixelValueTransformationSequence") or Dataset()
        slope = _floats(item.get("RescaleSlope", 1.0), 1) or [1.0]
        intercept = _floats(item.get("RescaleIntercept", 0.0), 1) or [0.0]
        params.append((slope[0], intercept[0]))
    if all(p == (1.0, 0.0) for p in params):
        return arr
    slopes, intercepts = (np.array(v).reshape(-1, 1, 1, 1) for v in zip(*params, strict=True))
    return arr.astype(np.float64) * slopes + intercepts


def _decoder(tsyntax: UID) -> Any:
    """The pixel data decoder for `tsyntax` if one is installed, else unsupported."""
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:  # unknown, private or video transfer syntax
        decoder = None
    if decoder is None or not decoder.is_available:
        shown = str(tsyntax) if tsyntax.is_valid else "(invalid UID)"
        raise ReadError("unsupported_transfer_syntax",
                        f"no installed pixel data decoder for transfer syntax {shown}")
    return decoder


def _check_length(ds: Dataset, decoder: Any, tag: int, shape: tuple[int, ...]) -> None:
    """Native (uncompressed) pixel data must hold every frame the header announces."""
    rows, cols, frames, spp, bits = shape
    if not decoder.is_encapsulated:
        per_pixel = 2 if ds.PhotometricInterpretation == "YBR_FULL_422" else spp
        expected = -(-rows * cols * frames * per_pixel * bits // 8)
        actual = len(ds[tag].value or b"")
        if actual < expected:
            raise ReadError("truncated", f"pixel data has {actual} of {expected} bytes")


def _decode(ds: Dataset, decoder: Any, shape: tuple[int, int, int, int, int]
            ) -> tuple[np.ndarray, str]:
    """Pixels as (planes, rows, cols, channels) after colour conversion, and the photometric."""
    rows, cols, frames = shape[:3]
    try:
        arr, meta = decoder.as_array(ds, validate=True, as_rgb=True, **as_pixel_options(ds))
        arr = arr.reshape(frames, rows, cols, -1)
        photometric = meta["photometric_interpretation"]  # "RGB" once YBR was converted
        photometric = str(getattr(photometric, "value", photometric))
        if arr.shape[-1] == 1 and photometric.startswith("MONOCHROME"):
            arr = _rescale(ds, arr)
    except Exception as e:  # noqa: BLE001 - decoder messages may quote header values
        raise ReadError("decode_error", f"{_exc_name(e)}: pixel data could not be decoded"
                        ) from None
    return np.ascontiguousarray(to_smallest_exact(arr)), photometric


def read_dicom(data: bytes, limits: Limits) -> DecodedImage:
    """Decode a DICOM file (any transfer syntax with an installed decoder) or catalog a
    non-image object; raises ReadError with a value-free message on any failure."""
    with warnings.catch_warnings():  # pydicom warnings may quote header values
        warnings.simplefilter("ignore")
        return _read(data, limits)


def _read(data: bytes, limits: Limits) -> DecodedImage:
    ds = _parse(data)
    try:
        tsyntax = _transfer_syntax(ds)
        _check_complete(ds, len(data), tsyntax == DeflatedExplicitVRLittleEndian)
        pixel_spacing, thickness = _spacing(ds)
        common: dict[str, Any] = dict(
            format="dicom", modality=_text(ds, "Modality"),
            pixel_spacing_mm=pixel_spacing, slice_thickness_mm=thickness,
            manufacturer=_text(ds, "Manufacturer"), body_part=_text(ds, "BodyPartExamined"),
            sop_class_uid=_text(ds, "SOPClassUID")
            or _text(ds.file_meta, "MediaStorageSOPClassUID"),
            transfer_syntax_uid=str(tsyntax) if tsyntax.is_valid else None,
            identifiers={key: _text(ds, kw) for key, kw in ID_KEYWORDS.items()},
            phi_values=(phi := collect_phi(ds)), attributes=filter_attributes(ds, phi))
        tag = next((t for t in PIXEL_TAGS if t in ds), None)
        if tag is None:
            return DecodedImage(pixels=None, n_planes=0, rows=0, cols=0, channels=0, **common)
        shape = _geometry(ds, tag)
        limits.check_plane(shape[0], shape[1])
        limits.check_planes(shape[2])
        decoder = _decoder(tsyntax)
        _check_length(ds, decoder, tag, shape)
        positions = _slice_positions(ds, shape[2])
        bits_stored = int(ds.get("BitsStored") or shape[4])
    except ReadError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed values surface lazily in pydicom
        raise ReadError("invalid_header", f"{_exc_name(e)}: header could not be read"
                        ) from None
    pixels, photometric = _decode(ds, decoder, shape)
    return DecodedImage(pixels=pixels, n_planes=shape[2], rows=shape[0], cols=shape[1],
                        channels=int(pixels.shape[-1]), slice_positions=positions,
                        bits_stored=bits_stored, photometric=photometric, **common)
