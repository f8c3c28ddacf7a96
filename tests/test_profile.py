"""The de-identification profile on real pydicom datasets."""

from __future__ import annotations

import io

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medspark.privacy.profile import collect_phi, filter_attributes, scrub

PHI = {
    "PatientName": "MORGAN^ELLIS^Q",
    "PatientID": "MRN7730091",
    "PatientBirthDate": "19610412",
    "PatientAddress": "14 Larkspur Lane, Dunmore",
    "AccessionNumber": "ACC55012",
    "ReferringPhysicianName": "HALLORAN^BRIDGET",
    "InstitutionName": "Saint Alder Hospital",
    "StudyDescription": "CT chest for Morgan",
    "OtherPatientIDs": "OLD-ID-4411",
}


def written_dataset() -> Dataset:
    """A CT header with PHI in public, nested and private elements, round-tripped to bytes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.KVP = "120"
    ds.PatientSex = "F"
    ds.PatientWeight = "71.5"
    ds.BodyPartExamined = "CHEST"
    ds.SeriesDescription = "Series for MORGAN"
    ds.StudyDate = "20240102"
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PersonName = "NESTED^PERSON"
    ds.ReferencedImageSequence = Sequence([item])
    block = ds.private_block(0x0011, "MEDSPARK TEST", create=True)
    block.add_new(0x01, "LO", "phone 555-0199")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def test_attributes_keep_technical_values_only():
    ds = written_dataset()
    attrs = filter_attributes(ds)
    assert attrs["Modality"] == "CT" and attrs["KVP"] == "120"
    assert attrs["BodyPartExamined"] == "CHEST" and attrs["Manufacturer"] == "ACME"
    assert attrs["SOPClassUID"] == CTImageStorage
    for dropped in ("PatientSex", "PatientWeight", "StudyInstanceUID", "SOPInstanceUID",
                    "StudyDate", "SeriesDescription", *PHI):
        assert dropped not in attrs, dropped
    blob = repr(attrs).upper()
    for value in PHI.values():
        assert value.upper() not in blob
    assert "555-0199" not in blob and "NESTED" not in blob


def test_collect_phi_finds_public_nested_and_private_values():
    phi = collect_phi(written_dataset())
    for value in PHI.values():
        assert value in phi
    assert {"MORGAN", "ELLIS", "NESTED^PERSON", "phone 555-0199"} <= phi
    assert CTImageStorage not in phi  # a SOP class names a kind of object, not a person


def test_private_tags_read_as_unknown_vr_are_still_collected():
    from pydicom.uid import ImplicitVRLittleEndian

    ds = written_dataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    implicit = pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True)
    assert any("555-0199" in p for p in collect_phi(implicit))


def test_bundled_files_keep_no_identifier():
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "test-SR.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name))
        attrs = filter_attributes(ds)
        assert "Modality" in attrs
        values = set(attrs.values())
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
            if keyword in ds:
                assert str(ds.data_element(keyword).value) not in values


def test_scrub_replaces_case_insensitively():
    msg = scrub("failed for morgan^ellis^q at Saint Alder Hospital", {"MORGAN^ELLIS^Q",
                                                                     "Saint Alder Hospital"})
    assert msg == "failed for [redacted] at [redacted]"
    assert scrub("nothing here", set()) == "nothing here"
