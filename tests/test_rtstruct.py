"""RTSTRUCT -> masks on real DICOM bytes written with pydicom, plus the IBSI CT phantom check."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage.draw import polygon as sk_polygon

from medspark.segment.rtstruct import (
    SliceGeometry,
    fill_polygon,
    rasterise_roi,
    rasterise_rtstruct,
    rtstruct_rois,
    stack_masks,
)

PHANTOM = Path(__file__).resolve().parents[2] / "shared" / "ibsi" / "ct_phantom"
PYDICOM_RTSTRUCT = get_testdata_file("rtstruct.dcm", download=False)

ROWS, COLS = 64, 48
ORIGIN = (-20.0, -10.0)  # x, y of the first pixel centre
SPACING = (0.5, 0.75)  # row spacing (y), column spacing (x): anisotropic to catch swaps
ZS = (0.0, 2.5, 5.0, 7.5, 10.0)
CIRCLE = (0.0, 5.0, 7.0, 64)  # centre x, y (mm), radius (mm), vertices


def _save(ds: Dataset, sop_class: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _ct_slice(z: float, uid: str) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, uid, "CT"
    ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = list(SPACING), 2.5
    ds.Rows, ds.Columns, ds.SamplesPerPixel = ROWS, COLS, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.zeros((ROWS, COLS), dtype=np.int16).tobytes()
    return _save(ds, CTImageStorage)


def _mm(rows: np.ndarray, cols: np.ndarray, z: float) -> np.ndarray:
    """Pixel (row, col) centres of the test series -> patient mm."""
    rows, cols = np.asarray(rows, float), np.asarray(cols, float)
    return np.stack([ORIGIN[0] + cols * SPACING[1], ORIGIN[1] + rows * SPACING[0],
                     np.full(rows.shape, z)], axis=1)


def _rect(r0: int, r1: int, c0: int, c1: int, z: float) -> np.ndarray:
    return _mm(np.array([r0, r0, r1, r1]), np.array([c0, c1, c1, c0]), z)


def _circle(z: float) -> np.ndarray:
    x, y, radius, n = CIRCLE
    t = np.linspace(0, 2 * np.pi, int(n), endpoint=False)
    return np.stack([x + radius * np.cos(t), y + radius * np.sin(t), np.full(t.shape, z)], 1)


def _contour(points: np.ndarray, ref: str | None, kind: str = "CLOSED_PLANAR") -> Dataset:
    item = Dataset()
    item.ContourGeometricType = kind
    item.NumberOfContourPoints = len(points)
    item.ContourData = [f"{v:.6f}" for v in np.asarray(points).ravel()]
    if ref is not None:
        image = Dataset()
        image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = CTImageStorage, ref
        item.ContourImageSequence = Sequence([image])
    return item


def make_rtstruct(rois: list[tuple[int, str, list[Dataset]]]) -> bytes:
    """An RT Structure Set with one StructureSetROI / ROIContour item per (number, name, ...)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = RTStructureSetStorage, generate_uid(), \
        "RTSTRUCT"
    ds.PatientName, ds.StructureSetLabel = "Test^Patient", "test"
    frame_uid = generate_uid()
    roi_items, contour_items = [], []
    for number, name, contours in rois:
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame_uid
        roi_items.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber, rc.ContourSequence = number, Sequence(contours)
        contour_items.append(rc)
    ds.StructureSetROISequence = Sequence(roi_items)
    ds.ROIContourSequence = Sequence(contour_items)
    return _save(ds, RTStructureSetStorage)


@pytest.fixture(scope="module")
def series() -> tuple[list[str], list[bytes]]:
    uids = [generate_uid() for _ in ZS]
    return uids, [_ct_slice(z, uid) for z, uid in zip(ZS, uids, strict=True)]


@pytest.fixture(scope="module")
def slices(series) -> list[SliceGeometry]:
    return [SliceGeometry.from_dicom(data) for data in series[1]]


def _structures(uids: list[str], with_refs: bool = True) -> bytes:
    ref = (lambda k: uids[k]) if with_refs else (lambda k: None)
    square = [_contour(_rect(10, 30, 5, 25, ZS[1]), ref(1)),
              _contour(_rect(15, 20, 10, 15, ZS[1]), ref(1)),  # hole
              _contour(_rect(10, 30, 5, 25, ZS[2]), ref(2))]
    circle = [_contour(_circle(ZS[2]), ref(2)), _contour(_circle(ZS[3]), ref(3))]
    marker = [_contour(_mm(np.array([3]), np.array([3]), ZS[0]), ref(0), "POINT")]
    return make_rtstruct([(1, "square", square), (2, "circle", circle), (7, "marker", marker)])


def _expected_square(hole: bool) -> np.ndarray:
    mask = np.zeros((ROWS, COLS), dtype=bool)
    mask[10:31, 5:26] = True
    if hole:
        mask[15:21, 10:16] = False  # the hole's boundary pixels belong to the hole
    return mask


def _check_circle(mask: np.ndarray) -> None:
    x, y, radius, n = CIRCLE
    rr, cc = np.mgrid[:ROWS, :COLS]
    d = np.hypot(ORIGIN[0] + cc * SPACING[1] - x, ORIGIN[1] + rr * SPACING[0] - y)
    inscribed = radius * np.cos(np.pi / n)  # the polygon lies between the two circles
    assert mask[d < inscribed - 1e-6].all()
    assert not mask[d > radius + 1e-6].any()
    area = mask.sum() * SPACING[0] * SPACING[1]
    assert abs(area - np.pi * radius**2) <= 2 * np.pi * radius * max(SPACING)


def test_rois_listed(series):
    rois = {r.name: r for r in rtstruct_rois(_structures(series[0]))}
    assert [(r.number, r.n_contours) for r in rois.values()] == [(1, 3), (2, 2), (7, 1)]
    assert rois["square"].referenced_uids == (series[0][1], series[0][2])
    assert rois["marker"].geometric_types == ("POINT",)


@pytest.mark.parametrize("match", ["uid", "position", "auto"])
def test_square_with_hole_and_circle(series, slices, match):
    uids = series[0]
    out = rasterise_rtstruct(_structures(uids, with_refs=match != "position"), slices,
                             match=match)
    square, circle = out["square"], out["circle"]
    assert set(square.masks) == {uids[1], uids[2]}
    assert np.array_equal(square.masks[uids[1]], _expected_square(hole=True))
    assert np.array_equal(square.masks[uids[2]], _expected_square(hole=False))
    assert set(circle.masks) == {uids[2], uids[3]}
    for mask in circle.masks.values():
        assert mask.dtype == bool and mask.shape == (ROWS, COLS)
        _check_circle(mask)
    assert square.skipped == circle.skipped == 0
    assert out["marker"].ignored == 1 and not out["marker"].masks


def test_uid_match_without_references_skips_everything(series, slices):
    out = rasterise_roi(_structures(series[0], with_refs=False), slices, "square", match="uid")
    assert out.masks == {} and out.skipped == 3


def test_auto_falls_back_to_position(series, slices):
    data = _structures(series[0], with_refs=False)
    auto = rasterise_roi(data, slices, "circle")
    by_position = rasterise_roi(data, slices, "circle", match="position")
    assert auto.masks.keys() == by_position.masks.keys()
    assert all(np.array_equal(auto.masks[k], by_position.masks[k]) for k in auto.masks)


def test_pseudonymised_keys(series, slices):
    def pseudo(uid: str) -> str:
        return hashlib.sha256(f"sop:{uid}".encode()).hexdigest()[:32]

    keyed = [SliceGeometry(pseudo(s.key), s.position, s.orientation, s.spacing, s.rows, s.cols)
             for s in slices]
    out = rasterise_roi(_structures(series[0]), keyed, "square", match="uid", uid_key=pseudo)
    assert np.array_equal(out.masks[pseudo(series[0][1])], _expected_square(hole=True))


def test_or_combination_fills_holes(series, slices):
    out = rasterise_roi(_structures(series[0]), slices, "square", combine="or")
    assert np.array_equal(out.masks[series[0][1]], _expected_square(hole=False))


def test_contour_on_no_known_slice_is_skipped(series, slices):
    data = make_rtstruct([(3, "far", [_contour(_rect(1, 5, 1, 5, 50.0), None),
                                      _contour(_rect(1, 5, 1, 5, 6.0), None),  # 1 mm off
                                      _contour(_rect(1, 5, 1, 5, ZS[4]), None)])])
    out = rasterise_roi(data, slices, 3)
    assert out.skipped == 1 and set(out.masks) == {series[0][2], series[0][4]}
    tight = rasterise_roi(data, slices, 3, tolerance_mm=0.5)
    assert tight.skipped == 2


def test_roi_selection_and_errors(series, slices):
    data = _structures(series[0])
    assert list(rasterise_rtstruct(data, slices, "CIRCLE")) == ["circle"]
    assert list(rasterise_rtstruct(data, slices, 1)) == ["square"]
    with pytest.raises(ValueError, match="not found; the structure set has 3 ROIs"):
        rasterise_rtstruct(data, slices, "liver")
    with pytest.raises(ValueError, match="not a DICOM RT Structure Set"):
        rtstruct_rois(series[1][0])
    with pytest.raises(ValueError, match="not a parseable DICOM file"):
        rtstruct_rois(b"\x00" * 10)
    with pytest.raises(ValueError, match="match must be"):
        rasterise_rtstruct(data, slices, match="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        rasterise_rtstruct(data, slices + slices[:1])


def test_error_messages_carry_no_header_values(series, slices):
    with pytest.raises(ValueError) as err:
        rasterise_rtstruct(_structures(series[0]), slices, "liver")
    assert "Test^Patient" not in str(err.value) and series[0][0] not in str(err.value)


def test_sagittal_slice():
    """Row direction +y, column direction -z: the affine inverse, not an axial shortcut."""
    geometry = SliceGeometry("sag", (5.0, -10.0, 20.0), (0, 1, 0, 0, 0, -1), (1.0, 0.5), 40, 30)
    rows, cols = np.array([4, 4, 12, 12]), np.array([3, 9, 9, 3])
    points = np.stack([np.full(4, 5.0), -10.0 + cols * 0.5, 20.0 - rows * 1.0], axis=1)
    data = make_rtstruct([(1, "box", [_contour(points, None)])])
    mask = rasterise_roi(data, [geometry], "box").masks["sag"]
    expected = np.zeros((40, 30), dtype=bool)
    expected[4:13, 3:10] = True
    assert np.array_equal(mask, expected)


def test_stack_and_geometry_from_catalog_attributes(series, slices):
    attrs = {"ImagePositionPatient": "-20\\-10\\2.5", "ImageOrientationPatient": "1\\0\\0\\0\\1\\0",
             "PixelSpacing": "0.5\\0.75", "Rows": "64", "Columns": "48", "SliceThickness": "2.5"}
    geometry = SliceGeometry.from_attributes("k", attrs)
    assert geometry.position == slices[1].position and geometry.spacing == SPACING
    assert geometry.slice_position == pytest.approx(2.5) and geometry.thickness == 2.5
    with pytest.raises(ValueError, match="PixelSpacing"):
        SliceGeometry.from_attributes("k", {**attrs, "PixelSpacing": "0.5"})
    out = rasterise_roi(_structures(series[0]), slices, "square")
    volume = stack_masks(out.masks, slices)
    assert volume.shape == (5, ROWS, COLS) and not volume[0].any() and volume[2].sum() == 21 * 21


def _star(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random simple (star-shaped) polygon around a point near the 24x24 image."""
    n = int(rng.integers(3, 40))
    angles, radii = np.sort(rng.uniform(0, 2 * np.pi, n)), rng.uniform(1, 15, n)
    cy, cx = rng.uniform(-2, 26, 2)
    return cy + radii * np.sin(angles), cx + radii * np.cos(angles)


def test_fill_polygon_matches_skimage():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        r, c = _star(rng)
        expected = np.zeros((24, 24), dtype=bool)
        rr, cc = sk_polygon(r, c, (24, 24))
        expected[rr, cc] = True
        assert np.array_equal(fill_polygon(r, c, (24, 24)), expected)


def test_fill_polygon_boundaries():
    square = fill_polygon(np.array([1, 1, 4, 4]), np.array([1, 4, 4, 1]), (6, 6))
    assert np.array_equal(np.argwhere(square), [[r, c] for r in range(1, 5) for c in range(1, 5)])
    diamond = fill_polygon(np.array([0, 2, 4, 2]), np.array([2, 4, 2, 0]), (5, 5))
    assert diamond.sum() == 13  # 5 inside + 8 lattice points on the edges
    off_image = fill_polygon(np.array([-9, -9, -5]), np.array([-9, -3, -3]), (5, 5))
    assert not off_image.any()
    clipped = fill_polygon(np.array([-10, -10, 10, 10]), np.array([-10, 2, 2, -10]), (5, 5))
    assert np.array_equal(clipped, np.tile(np.arange(5) <= 2, (5, 1)))


@pytest.mark.skipif(PYDICOM_RTSTRUCT is None, reason="pydicom test file rtstruct.dcm absent")
def test_pydicom_bundled_rtstruct():
    data = Path(PYDICOM_RTSTRUCT).read_bytes()
    rois = rtstruct_rois(data)
    assert [(r.number, r.name, r.n_contours) for r in rois] == [
        (1, "patient", 3), (2, "Isocenter 1", 1), (3, "Isocenter 2", 1)]
    slices = [SliceGeometry(f"z{z}", (-250.0, -250.0, z), (1, 0, 0, 0, 1, 0), (10.0, 10.0), 51,
                            51) for z in (-200.0, -190.0, -180.0)]
    out = rasterise_rtstruct(data, slices)
    assert sorted(out["patient"].masks) == ["z-180.0", "z-190.0", "z-200.0"]
    for mask in out["patient"].masks.values():  # x -200..200, y -150..150 at 10 mm: 41 x 31
        assert mask.sum() == 41 * 31 and mask[10:41, 5:46].all()
    assert out["Isocenter 1"].ignored == 1 and out["Isocenter 1"].masks == {}


@pytest.mark.skipif(not PHANTOM.exists(), reason="IBSI CT phantom (../shared) not available")
def test_ibsi_ct_phantom_matches_nifti_mask():
    files = sorted((PHANTOM / "dicom" / "image").glob("*.dcm"))
    slices = sorted((SliceGeometry.from_dicom(f.read_bytes()) for f in files),
                    key=lambda s: s.slice_position)
    data = next((PHANTOM / "dicom" / "mask").glob("*.dcm")).read_bytes()
    result = rasterise_roi(data, slices, "GTV-1")
    assert result.skipped == 0 and len(result.masks) == 26
    ours = stack_masks(result.masks, slices)
    # NIfTI voxel of every DICOM pixel centre: LPS -> RAS -> voxel index through the affine
    img = nib.load(PHANTOM / "nifti" / "mask.nii.gz")
    ref_data, inv = np.asarray(img.dataobj) > 0, np.linalg.inv(img.affine)
    rr, cc = np.mgrid[: slices[0].rows, : slices[0].cols]
    ref = np.zeros_like(ours)
    for k, s in enumerate(slices):
        ijk = (s.to_patient(rr, cc) * [-1, -1, 1]) @ inv[:3, :3].T + inv[:3, 3]
        idx = np.round(ijk).astype(int)
        assert np.abs(ijk - idx).max() < 1e-3  # the two grids coincide
        ref[k] = ref_data[idx[..., 0], idx[..., 1], idx[..., 2]]
    dice = 2 * (ours & ref).sum() / (ours.sum() + ref.sum())
    assert dice >= 0.99
    assert dice == 1.0  # exact on this phantom (pixel-centre rule, see rtstruct module)
