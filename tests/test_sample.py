"""The synthetic sample: deterministic, readable, anatomically plausible, labelled, PHI-complete."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless

from medspark.config import ConfigError
from medspark.sample import generate_sample, write_ct_series
from medspark.sample.anatomy import Lesion, ct_slice, lesion_mask
from medspark.sample.plan import plan_series

# header elements that carry identifying values: each one's value must be listed in phi.json
IDENTIFYING = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientAddress", "AccessionNumber",
    "ReferringPhysicianName", "InstitutionName", "InstitutionAddress", "OperatorsName",
    "StationName", "DeviceSerialNumber", "StudyDescription", "StudyID", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID", "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID", "VerifyingObserverName",
    "VerifyingOrganization",
}
FREE_TEXT = {"StudyDescription", "TextValue"}  # may embed names; listed as whole and in parts


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def ct_series(sample: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.dcm")) for d in sorted((sample / "images" / "ct").iterdir())}


def read_labels(sample: Path) -> list[dict[str, str]]:
    with open(sample / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def dicom_files(sample: Path) -> list[Path]:
    return [p for p in sorted((sample / "images").rglob("*.dcm"))
            if p.parent.name != "broken"]


def dense_blob_areas(slice_hu: np.ndarray) -> list[int]:
    """Areas of soft-tissue-dense blobs (> -300 HU) enclosed by lung (< -500 HU, not outside)."""
    air = (slice_hu < -500).astype(np.uint8)
    n, labels, _, _ = cv2.connectedComponentsWithStats(air, connectivity=4)
    edge = set(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    lungs = np.isin(labels, [i for i in range(1, n) if i not in edge]).astype(np.uint8)
    contours, _ = cv2.findContours(lungs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(lungs)
    cv2.drawContours(filled, contours, -1, 1, -1)
    dense = ((filled > 0) & (slice_hu > -300)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(dense, connectivity=8)
    return sorted(stats[1:, cv2.CC_STAT_AREA].tolist())


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample-summary")
    return out, generate_sample(out, patients=4, seed=7)


def test_same_seed_gives_identical_bytes(sample_dir, tmp_path):
    generate_sample(tmp_path, patients=4, seed=7)
    first, again = digests(sample_dir), digests(tmp_path)
    assert len(first) > 60
    assert first == again


def test_other_seed_gives_other_data(sample_dir, tmp_path):
    generate_sample(tmp_path, patients=4, seed=8)
    first, other = digests(sample_dir), digests(tmp_path)
    same = {k for k in first if first[k] == other.get(k)}
    assert same <= {"images/broken/empty.dcm", "images/broken/notes.txt"}
    ids = [{(r["patient"], r["series_instance_uid"]) for r in read_labels(d)}
           for d in (sample_dir, tmp_path)]
    assert not {p for p, _ in ids[0]} & {p for p, _ in ids[1]}
    assert not {s for _, s in ids[0]} & {s for _, s in ids[1]}


def test_summary_counts_match_files(summary):
    out, s = summary
    images = out / "images"
    files = [p for p in images.rglob("*") if p.is_file()]
    assert s["files"]["total"] == len(files)
    assert s["files"]["ct_slices"] == len(list((images / "ct").glob("*/*.dcm"))) == 5 * 12
    assert s["ct_series"] == 5 and s["patients"] == 4 and s["seed"] == 7
    assert {k: s["files"][k] for k in ("png", "jpeg", "tiff", "nifti", "dicom_other", "broken")
            } == {k: len(list((images / k).iterdir()))
                  for k in ("png", "jpeg", "tiff", "nifti", "dicom_other", "broken")}
    assert s["lesion_series"] == len(s["masks"]) >= 1
    for rel in (s["labels"], s["phi"], *s["masks"].values()):
        assert (out / rel).is_file()
    assert s["phi_strings"] == len(json.loads((out / "phi.json").read_text()))


def test_refuses_to_write_over_a_sample(summary):
    out, _ = summary
    with pytest.raises(ConfigError, match="already exists"):
        generate_sample(out, patients=1, seed=0)


def test_cli_prints_the_summary(tmp_path, capsys):
    from medspark.cli import main

    assert main(["sample", "--output", str(tmp_path / "s"), "--patients", "2", "--seed",
                 "3"]) == 0
    printed = capsys.readouterr().out
    assert "sample written to" in printed and "'ct_slices': 36" in printed


def test_ct_slices_are_valid_12_bit_ct(sample_dir):
    for name, paths in ct_series(sample_dir).items():
        assert len(paths) == 12, name
        headers = [pydicom.dcmread(p) for p in paths]
        first = headers[0]
        assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert first.SOPClassUID == CTImageStorage == first.file_meta.MediaStorageSOPClassUID
        assert (first.Modality, first.BodyPartExamined) == ("CT", "CHEST")
        assert (first.BitsAllocated, first.BitsStored, first.HighBit,
                first.PixelRepresentation) == (16, 12, 11, 0)
        assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, -1024.0)
        assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert (first.Rows, first.Columns) == (128, 128) and len(first.PixelSpacing) == 2
        zs = [float(h.ImagePositionPatient[2]) for h in headers]
        assert all(b > a for a, b in zip(zs, zs[1:], strict=False))
        assert len({h.SOPInstanceUID for h in headers}) == 12
        assert {h.SOPInstanceUID for h in headers} == {
            h.file_meta.MediaStorageSOPInstanceUID for h in headers}
        assert len({(h.StudyInstanceUID, h.SeriesInstanceUID, h.PatientID) for h in headers}) == 1
        for h in headers:
            stored = h.pixel_array
            assert stored.dtype == np.uint16 and stored.min() >= 0 and stored.max() <= 4095


def test_ct_values_look_like_a_chest(sample_dir):
    for name, paths in ct_series(sample_dir).items():
        ds = pydicom.dcmread(paths[len(paths) // 2])
        img = hu(ds)
        corners = np.concatenate([img[:6, :6].ravel(), img[:6, -6:].ravel()])
        assert abs(corners.mean() + 1000) < 10, name  # air
        body_rows = img[int(0.3 * ds.Rows):int(0.65 * ds.Rows)]
        lungs = body_rows[(body_rows < -500) & (body_rows > -950)]
        assert lungs.size > 0.05 * img.size and -900 < np.median(lungs) < -800, name
        assert (img > 300).sum() > 30 and img.max() > 600, name  # spine, ribs, sternum
        soft = img[(img > -30) & (img < 110)]
        assert soft.size > 0.1 * img.size and abs(np.median(soft) - 40) < 15, name


def test_lesions_exactly_in_label_1_series(sample_dir):
    labels: dict[str, set[int]] = {}
    for row in read_labels(sample_dir):
        labels.setdefault(row["source_path"].split("/")[1], set()).add(int(row["label"]))
    assert all(len(v) == 1 for v in labels.values())  # one label per series
    by_series = {name: v.pop() for name, v in labels.items()}
    assert set(by_series.values()) == {0, 1}
    for name, paths in ct_series(sample_dir).items():
        volume = np.stack([hu(pydicom.dcmread(p)) for p in paths])
        mask_path = sample_dir / "masks" / f"{name}.npy"
        if by_series[name] == 0:
            assert not mask_path.exists()
            assert max(max(dense_blob_areas(s), default=0) for s in volume) < 20, name
            continue
        mask = np.load(mask_path)
        assert mask.dtype == np.uint8 and mask.shape == volume.shape
        assert set(np.unique(mask)) == {0, 1}
        assert (mask.reshape(len(mask), -1).max(axis=1) > 0).sum() >= 2  # spans a few slices
        inside = volume[mask > 0]
        assert 20 < inside.mean() < 70, name  # a soft-tissue nodule (+30..60 HU)
        centre = int(np.argmax(mask.sum(axis=(1, 2))))
        ring = cv2.dilate(mask[centre], np.ones((5, 5), np.uint8)) - mask[centre]
        assert np.median(volume[centre][ring > 0]) < -600, name  # surrounded by lung
        assert max(dense_blob_areas(volume[centre])) >= 20, name


def test_ct_slice_differs_from_lesion_free_only_inside_mask():
    lesion = Lesion(x=40.0, y=60.0, z=0.5, radius=5.0, half_depth=0.04, hu=45.0)
    plain = ct_slice(128, 0.5, np.random.default_rng(3))
    nodule = ct_slice(128, 0.5, np.random.default_rng(3), lesion)
    mask = lesion_mask(128, 0.5, lesion)
    changed = plain != nodule
    assert mask.sum() > 60 and not (changed & ~mask).any()
    assert changed.sum() >= 0.9 * mask.sum()
    assert not lesion_mask(128, 0.55, lesion).any()


def test_plan_alternates_labels_and_writes_follow_ups():
    plans = plan_series(8, seed=0)
    first = {p.patient.index: p for p in plans if p.number == 1}
    assert [first[i].lesion is not None for i in range(8)] == [i % 2 == 1 for i in range(8)]
    assert len(plans) == 11 and len({p.uid for p in plans}) == 11
    assert len({p.patient.patient_id for p in plans}) == 8
    for later in (p for p in plans if p.number == 2):
        base = first[later.patient.index]
        assert later.study.uid != base.study.uid and later.study.date > base.study.date
        assert (later.lesion is None) == (base.lesion is None)
        if later.lesion is not None:
            assert (later.lesion.x, later.lesion.y) == (base.lesion.x, base.lesion.y)
            assert later.lesion.radius > base.lesion.radius


def test_rle_file_decodes_to_its_source_slice(sample_dir):
    rle = pydicom.dcmread(sample_dir / "images" / "dicom_other" / "key_image_rle.dcm")
    assert rle.file_meta.TransferSyntaxUID == RLELossless
    source = next(ds for p in sample_dir.glob("images/ct/*/*.dcm")
                  if (ds := pydicom.dcmread(p)).StudyInstanceUID == rle.StudyInstanceUID
                  and ds.InstanceNumber == rle.InstanceNumber
                  and ds.FrameOfReferenceUID == rle.FrameOfReferenceUID)
    np.testing.assert_array_equal(rle.pixel_array, source.pixel_array)
    assert rle.SOPInstanceUID != source.SOPInstanceUID


def test_multiframe_and_non_image_dicom(sample_dir):
    other = sample_dir / "images" / "dicom_other"
    mf = pydicom.dcmread(other / "mpr_multiframe.dcm")
    assert mf.NumberOfFrames == 4 and mf.PhotometricInterpretation == "MONOCHROME2"
    assert mf.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert mf.pixel_array.shape == (4, 128, 128) and hu(mf).min() < -900 and hu(mf).max() > 300
    assert mf.PatientName and mf.PatientID.startswith("MRN")
    sr = pydicom.dcmread(other / "report_sr.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11" and sr.Modality == "SR"
    assert "PixelData" not in sr
    refs = {r.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
            for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    ct_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
               for p in sample_dir.glob("images/ct/*/*.dcm")}
    assert len(refs) == 12 and refs <= ct_uids


def test_nifti_volumes(sample_dir):
    nifti = sample_dir / "images" / "nifti"
    ct = nib.load(nifti / "ct_chest.nii.gz")
    assert isinstance(ct, nib.Nifti1Image) and ct.shape == (64, 64, 8)
    data = np.asanyarray(ct.dataobj)
    assert data.dtype == np.int16 and data.min() < -900 and data.max() > 300
    assert ct.header.get_zooms()[2] == 5.0
    mr = nib.load(nifti / "t1_head_nifti2.nii")
    assert isinstance(mr, nib.Nifti2Image) and mr.shape == (48, 48, 6)
    bold = nib.load(nifti / "bold_4d.nii")
    assert bold.shape == (32, 32, 4, 5) and bold.get_data_dtype() == np.int16


def test_raster_files(sample_dir):
    images = sample_dir / "images"

    def load(rel: str) -> np.ndarray:
        return cv2.imread(str(images / rel), cv2.IMREAD_UNCHANGED)

    png16 = load("png/cxr_0002_16bit.png")
    assert png16.dtype == np.uint16 and png16.ndim == 2 and png16.max() > 255
    png8 = load("png/cxr_0001.png")
    assert png8.dtype == np.uint8 and png8.ndim == 2 and png8.std() > 20
    assert load("png/ct_overlay_rgb.png").shape == (128, 128, 3)
    assert load("jpeg/cxr_0003.jpg").ndim == 2
    assert load("jpeg/dermoscopy_0001.jpg").shape[2] == 3
    tif = load("tiff/cxr_0004_16bit.tif")
    assert tif.dtype == np.uint16 and tif.max() > 255
    assert (images / "broken" / "png_named.dcm").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_broken_files(sample_dir):
    broken = sample_dir / "images" / "broken"
    assert (broken / "empty.dcm").stat().st_size == 0
    truncated = (broken / "truncated.dcm").read_bytes()
    whole = next(p.read_bytes() for p in sorted(sample_dir.glob("images/ct/*/*.dcm")))
    assert whole.startswith(truncated) and 0.5 < len(truncated) / len(whole) < 0.7
    assert (broken / "random.dcm").read_bytes()[128:132] != b"DICM"
    notes = (broken / "notes.txt").read_text().upper()
    assert not [s for s in json.loads((sample_dir / "phi.json").read_text()) if s in notes]


def test_labels_csv_rows_match_ct_files(sample_dir):
    rows = read_labels(sample_dir)
    assert list(rows[0]) == ["source_path", "series_instance_uid", "label", "patient"]
    ct = {p.relative_to(sample_dir / "images").as_posix()
          for p in sample_dir.glob("images/ct/*/*.dcm")}
    assert {r["source_path"] for r in rows} == ct and len(rows) == len(ct)
    for row in rows:
        ds = pydicom.dcmread(sample_dir / "images" / row["source_path"], stop_before_pixels=True)
        assert row["series_instance_uid"] == ds.SeriesInstanceUID
        assert row["patient"] == ds.PatientID
        assert row["label"] in ("0", "1")


def _text_elements(ds: pydicom.Dataset):
    """(keyword, text) of every string-valued element, recursing into sequences."""
    for elem in ds.iterall():
        if elem.VR == "SQ" or elem.value is None or elem.VR in ("OB", "OW", "UN", "US", "UL"):
            continue
        values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [
            elem.value]
        keyword = "private" if elem.tag.is_private and elem.tag.element >= 0x1000 else (
            elem.keyword)
        for value in values:
            yield keyword, str(value)


def test_phi_json_lists_every_identifying_value(sample_dir):
    phi = json.loads((sample_dir / "phi.json").read_text())
    assert len(phi) > 20 and all(len(s) >= 4 for s in phi) and len(set(phi)) == len(phi)
    headers = b""
    listed = set(phi)
    for path in dicom_files(sample_dir):
        ds = pydicom.dcmread(path)
        headers += path.read_bytes()
        for keyword, text in _text_elements(ds):
            if keyword in IDENTIFYING or keyword == "private":
                assert text in listed, (path.name, keyword, text)
            elif keyword not in FREE_TEXT:
                leaked = [s for s in phi if s.upper() in text.upper()]
                assert not leaked, (path.name, keyword, text, leaked)
    missing = [s for s in phi if s.encode() not in headers]
    assert not missing, missing[:5]
    for generic in ("CT", "CHEST", "DICOM", "MEDSPARK", "STANDARD", "MONOCHROME2", "HU"):
        assert not [s for s in phi if s.upper() in generic]


def test_no_phi_outside_dicom_headers(sample_dir):
    phi = [s.encode() for s in json.loads((sample_dir / "phi.json").read_text())]
    for path in (sample_dir / "images").rglob("*"):
        rel = path.relative_to(sample_dir).as_posix().encode()
        assert not [s for s in phi if s in rel]
        if path.is_file() and path.suffix != ".dcm":
            data = path.read_bytes()
            assert not [s for s in phi if s in data], path


def test_write_ct_series_for_benchmarks(tmp_path):
    paths = write_ct_series(tmp_path / "bench", 5, 64, seed=3)
    assert [p.name for p in paths] == [f"slice_{k:04d}.dcm" for k in range(5)]
    headers = [pydicom.dcmread(p) for p in paths]
    assert {h.Rows for h in headers} == {64} and len({h.SOPInstanceUID for h in headers}) == 5
    assert all(h.pixel_array.dtype == np.uint16 for h in headers)
    again = write_ct_series(tmp_path / "again", 5, 64, seed=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    lesion = write_ct_series(tmp_path / "lesion", 5, 64, seed=3, lesion=True)
    assert [p.read_bytes() for p in paths] != [p.read_bytes() for p in lesion]
