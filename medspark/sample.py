"""`medspark sample`: a deterministic synthetic dataset of realistic medical image files.

No real dataset can be downloaded, so this writes one: chest CT series as real DICOM with a full
set of (invented) identifying headers, other DICOM kinds (multi-frame, RLE, a text SR), PNG,
JPEG, TIFF, NIfTI-1/2 and deliberately broken files, plus a hospital-style `labels.csv`, nodule
masks and `phi.json`, the list of every identifying string written, which tests search for in
ingest outputs. The same seed gives byte-identical files: all randomness comes from numpy
Generators seeded from `seed`, UIDs are hashed from it and dates are fixed.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless

from medspark.config import ConfigError
from medspark.sample_anatomy import (
    CHEST_MM,
    Patient,
    SeriesPlan,
    Study,
    brain_slice,
    ct_slice,
    dermoscopy_image,
    make_patients,
    make_study,
    place_lesion,
    plan_series,
    rng_for,
    uid_for,
    xray_image,
)

MANUFACTURER, MODEL = "MEDSPARK SYNTHETIC", "SYNTHO CT 64"
PRIVATE_CREATOR = "MEDSPARK SAMPLE"
IMPLEMENTATION_UID = uid_for(0, "implementation")
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
XRAY_SIZE = 256


def _ds(value: float) -> str:
    """A DS string (<= 16 characters) for a float."""
    text = format(value, ".10g")
    return text if len(text) <= 16 else format(value, ".8g")


def _dataset(patient: Patient, study: Study, sop_class: str, sop_uid: str, modality: str,
             series_uid: str, series_number: int, description: str) -> Dataset:
    """Patient, study, series, equipment and private modules shared by every DICOM written."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "MEDSPARK_SAMPLE"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study.time
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName, ds.InstitutionAddress = patient.institution[:2]
    ds.ReferringPhysicianName = f"{patient.physician[0]}^{patient.physician[1]}^^DR"
    ds.StationName = patient.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = description
    ds.OperatorsName = f"{patient.operator[0]}^{patient.operator[1]}"
    ds.ManufacturerModelName = MODEL
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAddress = patient.address
    ds.DeviceSerialNumber = patient.device_serial
    ds.SoftwareVersions = "0.1.0"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.uid, series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", patient.phone)
    return ds


def _ct_image(ds: Dataset, plan: SeriesPlan) -> Dataset:
    """Add the CT image, geometry and 12-bit pixel modules (values per slice set later)."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _ds(plan.thickness_mm)
    ds.KVP = "120"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.XRayTubeCurrent = 180
    ds.ExposureTime = 500
    ds.FrameOfReferenceUID = plan.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = plan.size
    ds.PixelSpacing = [_ds(plan.spacing_mm)] * 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = "-600", "1500"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    return ds


def _stored(hu: np.ndarray) -> np.ndarray:
    """HU -> 12-bit stored values (intercept -1024)."""
    return (hu.astype(np.int32) + 1024).astype("<u2")


def _set_slice(ds: Dataset, plan: SeriesPlan, k: int, uid: str) -> None:
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceNumber = k + 1
    origin = _ds(-plan.patient.fov_mm / 2 + plan.spacing_mm / 2)
    ds.ImagePositionPatient = [origin, origin, _ds(plan.z_mm(k))]
    ds.SliceLocation = _ds(plan.z_mm(k))


def write_series(plan: SeriesPlan, out_dir: str | Path) -> list[Path]:
    """Write one CT series, one `slice_NNNN.dcm` per slice; returns the paths in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(plan.n_slices - 1)))
    ds = _ct_image(_dataset(plan.patient, plan.study, CTImageStorage, plan.sop_uid(0), "CT",
                            plan.uid, plan.number, f"CHEST {plan.thickness_mm:g}MM STANDARD"),
                   plan)
    paths = []
    for k in range(plan.n_slices):
        _set_slice(ds, plan, k, plan.sop_uid(k))
        ds.PixelData = _stored(plan.slice_hu(k)).tobytes()
        path = out / f"slice_{k:0{width}d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_ct_series(out_dir: str | Path, n_slices: int = 200, size: int = 512, seed: int = 0,
                    *, lesion: bool = False, series_index: int = 0) -> list[Path]:
    """Write one synthetic 16-bit CT series (e.g. for benchmarks); the sample's own writer."""
    patient = make_patients(1, seed)[0]
    plan = SeriesPlan(index=series_index, patient=patient,
                      study=make_study(patient, 0, seed, 1_000_000 + series_index),
                      uid=uid_for(seed, "series", series_index),
                      frame_uid=uid_for(seed, "frame", 0, 0),
                      number=1, n_slices=n_slices, size=size, seed=seed, lesion=None)
    if lesion:
        found = place_lesion(size, plan.z_fractions(), patient.body, rng_for(seed, 5, 0),
                             plan.spacing_mm)
        plan = replace(plan, lesion=found)
    return write_series(plan, out_dir)


def _write_multiframe(plan: SeriesPlan, path: Path, frames: int = 4) -> set[str]:
    """A multi-frame grayscale word secondary capture (4 CT frames in HU) in the same study."""
    sop, series = uid_for(plan.seed, "mf", "sop"), uid_for(plan.seed, "mf", "series")
    ds = _dataset(plan.patient, plan.study, MF_GRAYSCALE_WORD_SC, sop, "CT", series, 901,
                  "MPR EXPORT AXIAL")
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.ConversionType = "WSD"
    ds.BodyPartExamined = "CHEST"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = Tag(0x0018, 0x2005)
    zs = [plan.z_fraction(int(k)) for k in np.linspace(0, plan.n_slices - 1, frames).round()]
    ds.SliceLocationVector = [_ds(-150.0 - (z - 0.5) * CHEST_MM) for z in zs]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = plan.size
    ds.PixelSpacing = [_ds(plan.spacing_mm)] * 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    hu = [ct_slice(plan.size, z, rng_for(plan.seed, 8, f), plan.lesion, plan.patient.body)
          for f, z in enumerate(zs)]
    ds.PixelData = _stored(np.stack(hu)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def _write_rle(plan: SeriesPlan, path: Path) -> set[str]:
    """One CT slice re-exported RLE Lossless; checked to decode back to the same values."""
    sop, series = uid_for(plan.seed, "rle", "sop"), uid_for(plan.seed, "rle", "series")
    ds = _ct_image(_dataset(plan.patient, plan.study, CTImageStorage, sop, "CT", series, 902,
                            "KEY IMAGE RLE"), plan)
    k = plan.n_slices // 2
    _set_slice(ds, plan, k, sop)
    stored = _stored(plan.slice_hu(k))
    ds.compress(RLELossless, stored, encoding_plugin="pydicom", generate_instance_uid=False)
    if not np.array_equal(ds.pixel_array, stored):
        raise RuntimeError("RLE round trip changed the pixels")
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _write_sr(plan: SeriesPlan, path: Path) -> set[str]:
    """A Basic Text SR report (no pixels) referencing every slice of `plan`'s series."""
    sop, series = uid_for(plan.seed, "sr", "sop"), uid_for(plan.seed, "sr", "series")
    p = plan.patient
    ds = _dataset(p, plan.study, BASIC_TEXT_SR, sop, "SR", series, 903, "CHEST CT REPORT")
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = f"{p.physician[0]}^{p.physician[1]}^^DR"
    observer.VerifyingOrganization = p.institution[0]
    observer.VerificationDateTime = f"{plan.study.date}{plan.study.time}"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence([])
    ds.VerifyingObserverSequence = Sequence([observer])
    refs = []
    for k in range(plan.n_slices):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, plan.sop_uid(k)
        refs.append(ref)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID, ref_series.ReferencedSOPSequence = plan.uid, Sequence(refs)
    evidence = Dataset()
    evidence.StudyInstanceUID = plan.study.uid
    evidence.ReferencedSeriesSequence = Sequence([ref_series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    ds.PerformedProcedureCodeSequence = Sequence([])
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    finding = (f"Solid pulmonary nodule, {2 * plan.lesion.radius * plan.spacing_mm:.0f} mm."
               if plan.lesion else "No pulmonary nodule.")
    contact = f"Findings discussed with Dr. {p.physician[1]} {p.physician[0]}."
    items = []
    for code, text in ((_code("121071", "DCM", "Finding"), finding),
                       (_code("121073", "DCM", "Impression"), contact)):
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.ConceptNameCodeSequence, item.TextValue = Sequence([code]), text
        items.append(item)
    ds.ContentSequence = Sequence(items)
    ds.save_as(path, enforce_file_format=True)
    return {sop, series, contact, f"{p.physician[1]} {p.physician[0]}"}


def _write_rtstruct(plan: SeriesPlan, path: Path) -> set[str]:
    """An RT Structure Set outlining the nodule (ROI "GTV-nodule") on every slice it cuts.

    Contours are the 0.5 iso-lines of the slice masks (skimage), in patient mm: a pixel's
    centre lies inside exactly when the pixel is in the mask, so rasterising the structure
    set gives back the generator's own masks.
    """
    from skimage.measure import find_contours

    sop, series = uid_for(plan.seed, "rt", plan.index, "sop"), uid_for(plan.seed, "rt",
                                                                       plan.index, "series")
    ds = _dataset(plan.patient, plan.study, RT_STRUCTURE_SET, sop, "RTSTRUCT", series,
                  904 + plan.index, "NODULE CONTOURS")
    ds.StructureSetLabel, ds.StructureSetDate = "NODULE", plan.study.date
    ds.StructureSetTime = plan.study.time
    masks = plan.mask()
    origin = -plan.patient.fov_mm / 2 + plan.spacing_mm / 2
    images, contours = [], []
    for k in range(plan.n_slices):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, plan.sop_uid(k)
        images.append(ref)
        padded = np.pad(masks[k].astype(float), 1)
        for line in find_contours(padded, 0.5) if masks[k].any() else []:
            rows, cols = line[:-1, 0] - 1, line[:-1, 1] - 1  # drop the repeated end point
            points = np.column_stack([origin + cols * plan.spacing_mm,
                                      origin + rows * plan.spacing_mm,
                                      np.full(len(rows), plan.z_mm(k))])
            item = Dataset()
            item.ContourImageSequence = Sequence([ref])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourData = [_ds(v) for v in points.ravel()]
            contours.append(item)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID, ref_series.ContourImageSequence = plan.uid, Sequence(images)
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    ref_study.ReferencedSOPInstanceUID = plan.study.uid
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = plan.frame_uid
    frame.RTReferencedStudySequence = Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID = 1, plan.frame_uid
    roi.ROIName, roi.ROIGenerationAlgorithm = "GTV-nodule", "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ROIDisplayColor = 1, [255, 0, 0]
    roi_contour.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([roi_contour])
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 1, 1
    observation.RTROIInterpretedType, observation.ROIInterpreter = "GTV", ""
    ds.RTROIObservationsSequence = Sequence([observation])
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def _write_seg(plan: SeriesPlan, path: Path) -> set[str]:
    """A binary DICOM SEG of the nodule: one 1-bit frame per slice it cuts, each referencing
    its source slice by UID and by position."""
    from pydicom.pixels import pack_bits

    sop, series = uid_for(plan.seed, "seg", plan.index, "sop"), uid_for(plan.seed, "seg",
                                                                        plan.index, "series")
    ds = _dataset(plan.patient, plan.study, SEGMENTATION, sop, "SEG", series,
                  905 + plan.index, "NODULE SEGMENTATION")
    masks = plan.mask()
    slices = [k for k in range(plan.n_slices) if masks[k].any()]
    ds.ImageType, ds.ContentLabel, ds.SegmentationType = ["DERIVED", "PRIMARY"], "NODULE", "BINARY"
    ds.FrameOfReferenceUID = plan.frame_uid
    ds.Rows = ds.Columns = plan.size
    ds.NumberOfFrames = len(slices)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelRepresentation, ds.LossyImageCompression = 0, "00"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    segment = Dataset()
    segment.SegmentNumber, segment.SegmentLabel = 1, "nodule"
    segment.SegmentAlgorithmType = "MANUAL"
    segment.SegmentedPropertyCategoryCodeSequence = Sequence(
        [_code("49755003", "SCT", "Morphologically Altered Structure")])
    segment.SegmentedPropertyTypeCodeSequence = Sequence([_code("27925004", "SCT", "Nodule")])
    ds.SegmentSequence = Sequence([segment])
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing = [_ds(plan.spacing_mm)] * 2
    measures.SliceThickness = _ds(plan.thickness_mm)
    orientation.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    origin = _ds(-plan.patient.fov_mm / 2 + plan.spacing_mm / 2)
    frames = []
    for k in slices:
        source = Dataset()
        source.ReferencedSOPClassUID = CTImageStorage
        source.ReferencedSOPInstanceUID = plan.sop_uid(k)
        derivation, ident, position, group = Dataset(), Dataset(), Dataset(), Dataset()
        derivation.SourceImageSequence = Sequence([source])
        ident.ReferencedSegmentNumber = 1
        position.ImagePositionPatient = [origin, origin, _ds(plan.z_mm(k))]
        group.DerivationImageSequence = Sequence([derivation])
        group.SegmentIdentificationSequence = Sequence([ident])
        group.PlanePositionSequence = Sequence([position])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = pack_bits(masks[slices].astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def _encode(ext: str, img: np.ndarray) -> bytes:
    params = {".png": [cv2.IMWRITE_PNG_COMPRESSION, 6], ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 92]}
    ok, buf = cv2.imencode(ext, img, params.get(ext, []))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {ext}")
    return buf.tobytes()


def _write_rasters(images: Path, seed: int, overlay: SeriesPlan) -> list[Path]:
    """2D files: radiographs (8/16-bit PNG, JPEG, 16-bit TIFF), a CT overlay, a dermoscopy."""
    xr = [xray_image(XRAY_SIZE, rng_for(seed, 9, i)) for i in range(4)]
    k = overlay.n_slices // 2
    if overlay.lesion is not None:
        k = min(range(overlay.n_slices),
                key=lambda i: abs(overlay.z_fractions()[i] - overlay.lesion.z))
    window = np.clip((overlay.slice_hu(k) + 1000.0) / 1400.0 * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(window, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(overlay.mask()[k], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(colour, contours, -1, (0, 0, 255), 1)
    files = {
        "png/cxr_0001.png": _encode(".png", np.round(xr[0] * 255).astype(np.uint8)),
        "png/cxr_0002_16bit.png": _encode(".png", np.round(xr[1] * 4095).astype(np.uint16)),
        "png/ct_overlay_rgb.png": _encode(".png", colour),
        "jpeg/cxr_0003.jpg": _encode(".jpg", np.round(xr[2] * 255).astype(np.uint8)),
        "jpeg/dermoscopy_0001.jpg": _encode(".jpg", dermoscopy_image(XRAY_SIZE, rng_for(seed, 10))),
        "tiff/cxr_0004_16bit.tif": _encode(".tiff", np.round(xr[3] * 4095).astype(np.uint16)),
    }
    return _write_files(images, files)


def _write_files(root: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def _write_nifti(images: Path, seed: int, patient: Patient) -> list[Path]:
    """NIfTI-1 CT volume (.nii.gz), NIfTI-2 T1 head (.nii) and a small 4D NIfTI-1 series."""
    n, size, thk = 8, 64, 5.0
    sp = patient.fov_mm / size
    ct = np.stack([ct_slice(size, 0.5 + (k - 3.5) * thk / CHEST_MM, rng_for(seed, 11, k),
                            body=patient.body) for k in range(n)], axis=-1)
    ct_img = nib.Nifti1Image(np.ascontiguousarray(ct.transpose(1, 0, 2)),
                             np.diag([-sp, -sp, thk, 1.0]))
    head = np.stack([brain_slice(48, z, rng_for(seed, 12, i))
                     for i, z in enumerate(np.linspace(0.2, 0.8, 6))], axis=-1)
    mr_img = nib.Nifti2Image(np.ascontiguousarray(head.transpose(1, 0, 2)),
                             np.diag([1.2, 1.2, 4.0, 1.0]))
    base = np.stack([brain_slice(32, z, rng_for(seed, 13, i))
                     for i, z in enumerate(np.linspace(0.35, 0.65, 4))], axis=-1)
    t = np.arange(5, dtype=np.float32)
    bold = base[..., None] * (1 + 0.02 * np.sin(t * np.pi / 2))  # (y, x, z, t)
    fmri = nib.Nifti1Image(np.round(bold.transpose(1, 0, 2, 3)).astype(np.int16),
                           np.diag([3.0, 3.0, 4.0, 1.0]))
    fmri.header.set_xyzt_units("mm", "sec")
    fmri.header["pixdim"][4] = 2.0
    for img, text in ((ct_img, "synthetic CT"), (mr_img, "synthetic T1"), (fmri, "synthetic BOLD")):
        img.header["descrip"] = text.encode()
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
    return _write_files(images, {
        "nifti/ct_chest.nii.gz": gzip.compress(ct_img.to_bytes(), mtime=0),
        "nifti/t1_head_nifti2.nii": mr_img.to_bytes(),
        "nifti/bold_4d.nii": fmri.to_bytes(),
    })


def _write_broken(images: Path, seed: int, valid_dicom: Path) -> list[Path]:
    """Files ingest must quarantine (or, for the mislabelled PNG, sniff correctly)."""
    data = valid_dicom.read_bytes()
    xr = np.round(xray_image(64, rng_for(seed, 14)) * 255).astype(np.uint8)
    return _write_files(images, {
        "broken/truncated.dcm": data[: int(len(data) * 0.6)],
        "broken/empty.dcm": b"",
        "broken/notes.txt": b"Transfer notes: files in this folder failed the export QA check.\n"
                            b"Re-send requested from the modality; do not use for research.\n",
        "broken/random.dcm": rng_for(seed, 15).bytes(4096),
        "broken/png_named.dcm": _encode(".png", xr),
    })


def generate_sample(output: str | Path, patients: int = 8, seed: int = 0,
                    slices_per_series: int = 12, size: int = 128) -> dict[str, Any]:
    """Write the synthetic sample under `output`; returns counts per kind and relative paths.

    Layout: `images/` (ct/series_NNN/slice_NNNN.dcm, rtstruct/ (nodule contours of each
    nodule series), seg/ (the first nodule as a DICOM SEG), dicom_other/, png/, jpeg/, tiff/,
    nifti/, broken/),
    `masks/series_NNN.npy` for nodule series, `labels.csv` (one row per CT slice, keyed by
    the path relative to `images/`) and `phi.json`. Refuses to write over an existing
    sample rather than delete anything.
    """
    if patients < 1 or slices_per_series < 1 or size < 64:
        raise ConfigError("sample needs patients >= 1, slices_per_series >= 1 and size >= 64")
    root = Path(output)
    images = root / "images"
    if images.exists() and any(images.iterdir()):
        raise ConfigError(f"{images} already exists and is not empty; choose another --output")
    plans = plan_series(patients, seed, slices_per_series, size)
    phi: set[str] = set()
    labels, masks, ct_files = [], {}, []
    for plan in plans:
        paths = write_series(plan, images / "ct" / plan.name)
        ct_files += paths
        phi |= plan.patient.phi() | {plan.study.uid, plan.uid, plan.frame_uid,
                                     plan.study.accession, plan.study.study_id,
                                     plan.study.description}
        phi |= {plan.sop_uid(k) for k in range(plan.n_slices)}
        label = int(plan.lesion is not None)
        labels += [(path.relative_to(images).as_posix(), plan.uid, label, plan.patient.patient_id)
                   for path in paths]
        if plan.lesion is not None:
            mask_path = root / "masks" / f"{plan.name}.npy"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(mask_path, plan.mask())
            masks[plan.name] = mask_path.relative_to(root).as_posix()
    other = images / "dicom_other"
    other.mkdir(parents=True, exist_ok=True)
    pick = {i: plans[min(i, len(plans) - 1)] for i in (0, 1, 2)}
    phi |= _write_multiframe(pick[0], other / "mpr_multiframe.dcm")
    phi |= _write_rle(pick[1], other / "key_image_rle.dcm")
    phi |= _write_sr(pick[2], other / "report_sr.dcm")
    lesion_plans = [p for p in plans if p.lesion is not None]
    for plan in lesion_plans:
        phi |= _write_rtstruct(plan, images / "rtstruct" / f"{plan.name}_rtstruct.dcm")
    if lesion_plans:  # the first nodule also as a DICOM SEG
        phi |= _write_seg(lesion_plans[0], images / "seg" / f"{lesion_plans[0].name}_seg.dcm")
    rasters = _write_rasters(images, seed, (lesion_plans or plans)[0])
    nifti = _write_nifti(images, seed, plans[0].patient)
    broken = _write_broken(images, seed, ct_files[0])
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["source_path", "series_instance_uid", "label", "patient"])
        writer.writerows(sorted(labels))
    short = sorted(s for s in phi if len(s) < 4)
    if short:
        raise RuntimeError(f"PHI strings shorter than 4 characters: {short}")
    (root / "phi.json").write_text(json.dumps(sorted(phi), indent=1) + "\n")
    kinds = {"ct_slices": len(ct_files), "dicom_other": 3, "rtstruct": len(lesion_plans),
             "seg": int(bool(lesion_plans)),
             "nifti": len(nifti),
             "broken": len(broken)}
    for path in rasters:
        kinds[path.parent.name] = kinds.get(path.parent.name, 0) + 1
    return {
        "output": str(root.resolve()),
        "patients": patients,
        "seed": seed,
        "ct_series": len(plans),
        "lesion_series": len(lesion_plans),
        "files": {**kinds, "total": sum(1 for p in images.rglob("*") if p.is_file())},
        "phi_strings": len(phi),
        "images": "images",
        "labels": "labels.csv",
        "phi": "phi.json",
        "masks": masks,
    }


def split_nights(sample: str | Path, nights: int) -> list[Path]:
    """Split a sample's images into what a PACS export receives night by night:
    `<sample>/nights/<k>/` holds the files arriving on night k (relative paths as under
    `images/`). The CT series (with their RTSTRUCT/SEG) are cut into `nights` consecutive
    groups, so later nights bring new patients; every other file arrives on night 1.
    Files are hard links where the filesystem allows (copies otherwise)."""
    import os
    import shutil

    if nights < 1:
        raise ConfigError("--nights must be at least 1")
    images = Path(sample) / "images"
    series = sorted(p.name for p in (images / "ct").iterdir() if p.is_dir())
    if len(series) < nights:
        raise ConfigError(f"{len(series)} CT series cannot be split into {nights} nights")
    night_of = {name: min(nights, 1 + i * nights // len(series))
                for i, name in enumerate(series)}
    out = [Path(sample) / "nights" / str(k) for k in range(1, nights + 1)]
    for path in sorted(p for p in images.rglob("*") if p.is_file()):
        rel = path.relative_to(images)
        owner = next((s for s in series if rel.parts[:2] == ("ct", s)
                      or rel.name.startswith(f"{s}_")), None)
        target = out[night_of[owner] - 1 if owner else 0] / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return out
