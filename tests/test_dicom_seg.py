"""DICOM SEG -> masks on SEG objects written with pydicom (BINARY 1-bit packed, FRACTIONAL,
LABELMAP), and what the ingest reader makes of a SEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SegmentationStorage, generate_uid

from medspark.io.dicom import read_dicom
from medspark.io.types import Limits
from medspark.segment.dicom_seg import rasterise_seg, seg_segments
from medspark.segment.rtstruct import SliceGeometry

ROWS, COLS = 24, 20
ORIGIN = (-10.0, 30.0)
SPACING = (0.5, 0.75)  # row spacing, column spacing
ZS = (0.0, 3.0, 6.0, 9.0)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
UIDS = [generate_uid() for _ in ZS]
SLICES = [SliceGeometry(uid, (ORIGIN[0], ORIGIN[1], z), AXIAL, SPACING, ROWS, COLS)
          for uid, z in zip(UIDS, ZS, strict=True)]


def _block(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = (ROWS, COLS)
           ) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _item(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _code(value: str, meaning: str) -> Sequence:
    return Sequence([_item(CodeValue=value, CodingSchemeDesignator="SCT", CodeMeaning=meaning)])


def make_seg(frames: list[tuple[int, np.ndarray, str | None, float | None]],
             labels: dict[int, str], kind: str = "BINARY",
             origin: tuple[float, float] = ORIGIN, spacing: tuple[float, float] = SPACING,
             ) -> bytes:
    """A Segmentation object: one frame per (segment number, pixels, source uid, z)."""
    rows, cols = frames[0][1].shape
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SegmentationStorage, generate_uid(), "SEG"
    ds.PatientName, ds.SeriesInstanceUID = "Seg^Patient", generate_uid()
    ds.FrameOfReferenceUID, ds.SegmentationType = generate_uid(), kind
    ds.ImageType, ds.ContentLabel = ["DERIVED", "PRIMARY"], "TEST"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelRepresentation, ds.LossyImageCompression = 0, "00"
    ds.SegmentSequence = Sequence([
        _item(SegmentNumber=n, SegmentLabel=label, SegmentAlgorithmType="MANUAL",
              SegmentedPropertyCategoryCodeSequence=_code("123037004", "Anatomical Structure"),
              SegmentedPropertyTypeCodeSequence=_code("10200004", "Liver"))
        for n, label in labels.items()])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=list(spacing), SliceThickness=3.0)]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=list(AXIAL))]))])
    per_frame = []
    for number, _, uid, z in frames:
        group = Dataset()
        if kind != "LABELMAP":
            group.SegmentIdentificationSequence = Sequence([_item(ReferencedSegmentNumber=number)])
        if uid is not None:
            source = _item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=uid)
            derivation = _item(SourceImageSequence=Sequence([source]))
            group.DerivationImageSequence = Sequence([derivation])
        if z is not None:
            group.PlanePositionSequence = Sequence([
                _item(ImagePositionPatient=[origin[0], origin[1], z])])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    pixels = np.stack([f[1] for f in frames])
    if kind == "BINARY":
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
        ds.PixelData = pack_bits(pixels.astype(np.uint8))  # packed across frames, not per frame
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        if kind == "FRACTIONAL":
            ds.SegmentationFractionalType, ds.MaximumFractionalValue = "PROBABILITY", 200
        ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SegmentationStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# rows x cols = 24 x 20 = 480 bits per frame: 5 frames do not end on a byte boundary per frame
LIVER_0, LIVER_1, TUMOUR_1 = _block(2, 20, 3, 17), _block(4, 18, 2, 15), _block(8, 13, 6, 9)
FAR = _block(0, 3, 0, 3)


def _binary(refs: bool = True, positions: bool = True) -> bytes:
    def frame(number: int, mask: np.ndarray, k: int | None, z: float | None = None):
        uid = (UIDS[k] if k is not None else generate_uid()) if refs else None
        return number, mask, uid, (ZS[k] if k is not None else z) if positions else None

    return make_seg([frame(1, LIVER_0, 0), frame(1, LIVER_1, 1), frame(2, TUMOUR_1, 1),
                     frame(2, FAR, None, 100.0), frame(2, FAR, None, 100.0)],
                    {1: "Liver", 2: "Tumour", 3: "Empty"})


def test_segments_listed():
    info = seg_segments(_binary())
    assert [(s.number, s.label, s.n_frames) for s in info] == [
        (1, "Liver", 2), (2, "Tumour", 3), (3, "Empty", 0)]


@pytest.mark.parametrize(("match", "refs", "positions"), [
    ("uid", True, False), ("position", False, True), ("auto", True, True), ("auto", False, True)])
def test_binary_frames_on_slices(match, refs, positions):
    out = rasterise_seg(_binary(refs, positions), SLICES, match=match)
    assert list(out) == ["Liver", "Tumour", "Empty"]
    liver, tumour = out["Liver"], out["Tumour"]
    assert set(liver.masks) == {UIDS[0], UIDS[1]} and liver.skipped == 0
    assert np.array_equal(liver.masks[UIDS[0]], LIVER_0)
    assert np.array_equal(liver.masks[UIDS[1]], LIVER_1)
    assert set(tumour.masks) == {UIDS[1]} and tumour.skipped == 2  # the frames at z = 100
    assert np.array_equal(tumour.masks[UIDS[1]], TUMOUR_1)
    assert out["Empty"].masks == {} and liver.masks[UIDS[0]].dtype == bool


def test_without_slices_keys_are_source_uids():
    out = rasterise_seg(_binary())
    assert set(out["Liver"].masks) == {UIDS[0], UIDS[1]}
    assert np.array_equal(out["Liver"].masks[UIDS[1]], LIVER_1)
    assert len(out["Tumour"].masks) == 3  # two far frames reference their own (unknown) uids
    unreferenced = rasterise_seg(_binary(refs=False))
    assert set(unreferenced["Tumour"].masks) == {"frame-3", "frame-4", "frame-5"}


def test_pseudonymised_keys():
    def pseudo(uid: str) -> str:
        return "p-" + uid[::-1]

    keyed = [SliceGeometry(pseudo(s.key), s.position, s.orientation, s.spacing, s.rows, s.cols)
             for s in SLICES]
    out = rasterise_seg(_binary(positions=False), keyed, match="uid", uid_key=pseudo)
    assert np.array_equal(out["Liver"].masks[pseudo(UIDS[0])], LIVER_0)


def test_fractional_threshold():
    probability = np.zeros((ROWS, COLS), dtype=np.uint8)
    probability[5:10, 5:10], probability[10:12, 5:10] = 150, 90  # of 200: 0.75 and 0.45
    data = make_seg([(1, probability, UIDS[2], ZS[2])], {1: "Lesion"}, kind="FRACTIONAL")
    out = rasterise_seg(data, SLICES)
    assert np.array_equal(out["Lesion"].masks[UIDS[2]], _block(5, 10, 5, 10))
    low = rasterise_seg(data, SLICES, threshold=0.4)
    assert np.array_equal(low["Lesion"].masks[UIDS[2]], _block(5, 12, 5, 10))


def test_labelmap():
    labels = np.zeros((ROWS, COLS), dtype=np.uint8)
    labels[2:6, 2:6], labels[10:12, 3:9] = 1, 2
    data = make_seg([(0, labels, UIDS[3], ZS[3]), (0, labels * 0, UIDS[2], ZS[2])],
                    {1: "A", 2: "B", 3: "C"}, "LABELMAP")
    out = rasterise_seg(data, SLICES)
    assert set(out["A"].masks) == set(out["B"].masks) == {UIDS[3]} and out["C"].masks == {}
    assert np.array_equal(out["A"].masks[UIDS[3]], _block(2, 6, 2, 6))
    assert np.array_equal(out["B"].masks[UIDS[3]], _block(10, 12, 3, 9))


def test_cropped_frame_is_placed_on_the_slice_grid():
    """A SEG on a 10x8 crop starting at slice pixel (row 6, col 4): resampled by position."""
    crop = _block(1, 4, 2, 7, (10, 8))
    origin = (ORIGIN[0] + 4 * SPACING[1], ORIGIN[1] + 6 * SPACING[0])
    data = make_seg([(1, crop, None, ZS[1])], {1: "Crop"}, origin=origin)
    mask = rasterise_seg(data, SLICES)["Crop"].masks[UIDS[1]]
    assert mask.shape == (ROWS, COLS) and np.array_equal(mask, _block(7, 10, 6, 11))


def test_coarser_frame_is_resampled():
    """Frame pixels twice the slice spacing: each frame pixel covers 2x2 slice pixels."""
    coarse = _block(2, 4, 1, 3, (12, 10))
    origin = (ORIGIN[0] + SPACING[1] / 2, ORIGIN[1] + SPACING[0] / 2)
    data = make_seg([(1, coarse, UIDS[0], None)], {1: "Coarse"},
                    origin=origin, spacing=(2 * SPACING[0], 2 * SPACING[1]))
    assert rasterise_seg(data, SLICES)["Coarse"].skipped == 1  # no plane: grid unknown
    data = make_seg([(1, coarse, UIDS[0], ZS[0])], {1: "Coarse"},
                    origin=origin, spacing=(2 * SPACING[0], 2 * SPACING[1]))
    mask = rasterise_seg(data, SLICES)["Coarse"].masks[UIDS[0]]
    # slice pixel r maps to frame row (r - 0.5) / 2, rounded half to even
    rows = np.round((np.arange(ROWS) - 0.5) / 2)
    cols = np.round((np.arange(COLS) - 0.5) / 2)
    expected = ((rows >= 2) & (rows < 4))[:, None] & ((cols >= 1) & (cols < 3))[None, :]
    assert np.array_equal(mask, expected)


def test_not_a_seg():
    ct = Dataset()
    ct.SOPClassUID, ct.Modality, ct.SOPInstanceUID = CTImageStorage, "CT", generate_uid()
    with pytest.raises(ValueError, match="not a DICOM Segmentation"):
        rasterise_seg(ct)
    with pytest.raises(ValueError, match="not a parseable DICOM file"):
        seg_segments(b"garbage")
    truncated = dcmread(io.BytesIO(_binary()))
    truncated.PixelData = b"\x00"
    with pytest.raises(ValueError, match="SEG pixel data could not be decoded"):
        rasterise_seg(truncated)


def test_read_dicom_decodes_a_seg_as_planes():
    """The ingest reader treats a SEG like any multi-frame image: one 0/1 plane per frame,
    positioned from PlanePositionSequence (so SEG frames become catalog planes)."""
    img = read_dicom(_binary(), Limits())
    assert img.modality == "SEG" and img.n_planes == 5 and img.pixels is not None
    assert img.pixels.shape == (5, ROWS, COLS, 1) and set(np.unique(img.pixels)) == {0, 1}
    assert np.array_equal(img.pixels[1, ..., 0].astype(bool), LIVER_1)
    assert img.slice_positions == [0.0, 3.0, 3.0, 100.0, 100.0]
