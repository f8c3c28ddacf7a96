"""The sample's DICOM: the header modules every object shares, CT series, and the other kinds
(multi-frame secondary capture, an RLE-compressed slice, a text SR report).

SOP Class and transfer syntax UIDs come from `pydicom.uid`; object UIDs are hashed from the seed
(`uid_for`), so the same seed writes byte-identical files.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
)

from medspark.sample.anatomy import CHEST_MM, ct_slice, place_lesion
from medspark.sample.people import Patient, Study, make_patients, make_study, rng_for, uid_for
from medspark.sample.plan import SeriesPlan

MANUFACTURER, MODEL = "MEDSPARK SYNTHETIC", "SYNTHO CT 64"
PRIVATE_CREATOR = "MEDSPARK SAMPLE"
IMPLEMENTATION_UID = uid_for(0, "implementation")


def ds_number(value: float) -> str:
    """A DS string (<= 16 characters) for a float."""
    text = format(value, ".10g")
    return text if len(text) <= 16 else format(value, ".8g")


def base_dataset(patient: Patient, study: Study, sop_class: str, sop_uid: str, modality: str,
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
    ds.SliceThickness = ds_number(plan.thickness_mm)
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
    ds.PixelSpacing = [ds_number(plan.spacing_mm)] * 2
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
    origin = ds_number(-plan.patient.fov_mm / 2 + plan.spacing_mm / 2)
    ds.ImagePositionPatient = [origin, origin, ds_number(plan.z_mm(k))]
    ds.SliceLocation = ds_number(plan.z_mm(k))


def write_series(plan: SeriesPlan, out_dir: str | Path) -> list[Path]:
    """Write one CT series, one `slice_NNNN.dcm` per slice; returns the paths in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(plan.n_slices - 1)))
    ds = _ct_image(base_dataset(plan.patient, plan.study, CTImageStorage, plan.sop_uid(0), "CT",
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


def write_multiframe(plan: SeriesPlan, path: Path, frames: int = 4) -> set[str]:
    """A multi-frame grayscale word secondary capture (4 CT frames in HU) in the same study."""
    sop, series = uid_for(plan.seed, "mf", "sop"), uid_for(plan.seed, "mf", "series")
    ds = base_dataset(plan.patient, plan.study, MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
                      sop, "CT", series, 901, "MPR EXPORT AXIAL")
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.ConversionType = "WSD"
    ds.BodyPartExamined = "CHEST"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = Tag(0x0018, 0x2005)
    zs = [plan.z_fraction(int(k)) for k in np.linspace(0, plan.n_slices - 1, frames).round()]
    ds.SliceLocationVector = [ds_number(-150.0 - (z - 0.5) * CHEST_MM) for z in zs]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = plan.size
    ds.PixelSpacing = [ds_number(plan.spacing_mm)] * 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    hu = [ct_slice(plan.size, z, rng_for(plan.seed, 8, f), plan.lesion, plan.patient.body)
          for f, z in enumerate(zs)]
    ds.PixelData = _stored(np.stack(hu)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def write_rle(plan: SeriesPlan, path: Path) -> set[str]:
    """One CT slice re-exported RLE Lossless; checked to decode back to the same values."""
    sop, series = uid_for(plan.seed, "rle", "sop"), uid_for(plan.seed, "rle", "series")
    ds = _ct_image(base_dataset(plan.patient, plan.study, CTImageStorage, sop, "CT", series, 902,
                                "KEY IMAGE RLE"), plan)
    k = plan.n_slices // 2
    _set_slice(ds, plan, k, sop)
    stored = _stored(plan.slice_hu(k))
    ds.compress(RLELossless, stored, encoding_plugin="pydicom", generate_instance_uid=False)
    if not np.array_equal(ds.pixel_array, stored):
        raise RuntimeError("RLE round trip changed the pixels")
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def coded(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item (value, coding scheme, meaning)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_sr(plan: SeriesPlan, path: Path) -> set[str]:
    """A Basic Text SR report (no pixels) referencing every slice of `plan`'s series."""
    sop, series = uid_for(plan.seed, "sr", "sop"), uid_for(plan.seed, "sr", "series")
    p = plan.patient
    ds = base_dataset(p, plan.study, BasicTextSRStorage, sop, "SR", series, 903, "CHEST CT REPORT")
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
    ds.ConceptNameCodeSequence = Sequence([coded("18748-4", "LN", "Diagnostic Imaging Report")])
    finding = (f"Solid pulmonary nodule, {2 * plan.lesion.radius * plan.spacing_mm:.0f} mm."
               if plan.lesion else "No pulmonary nodule.")
    contact = f"Findings discussed with Dr. {p.physician[1]} {p.physician[0]}."
    items = []
    for code, text in ((coded("121071", "DCM", "Finding"), finding),
                       (coded("121073", "DCM", "Impression"), contact)):
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.ConceptNameCodeSequence, item.TextValue = Sequence([code]), text
        items.append(item)
    ds.ContentSequence = Sequence(items)
    ds.save_as(path, enforce_file_format=True)
    return {sop, series, contact, f"{p.physician[1]} {p.physician[0]}"}
