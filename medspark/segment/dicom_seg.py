"""DICOM Segmentation (SEG) objects -> per-slice binary masks per segment (pure: pydicom, numpy).

A SEG is a multi-frame image: each frame is one segment on one plane (BINARY, 1-bit packed;
FRACTIONAL, 8-bit probability or occupancy up to MaximumFractionalValue) or all segments on one
plane (LABELMAP, pixel value = segment number). Frames are put on the caller's slices with the
rules of `medspark.segment.rtstruct`: by the source image UID of the frame's
DerivationImageSequence / SourceImageSequence (through `uid_key`), else by the frame's
PlanePositionSequence position along the slice normal. A frame on another pixel grid than its
slice (cropped or resampled SEG) is resampled to the slice by nearest neighbour through both
affines. Without slices, masks stay on the frame grid, keyed by the (mapped) source UID, or
`frame-<n>` (1-based) when the frame references none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import iter_pixels
from pydicom.uid import SegmentationStorage

from medspark.io.dicom import functional_group
from medspark.segment.rtstruct import (
    Match,
    RoiMasks,
    SliceGeometry,
    SliceIndex,
    UidKey,
    _int,
    _parse,
    _quiet,
)

SEG_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")
SAME_GRID_MM = 1e-3


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a SEG: number, label and how many frames carry it (for a LABELMAP SEG,
    every frame may)."""

    number: int
    label: str
    n_frames: int


def _segmentation(data: bytes | Dataset) -> Dataset:
    ds = _parse(data) if isinstance(data, bytes) else data
    if str(ds.get("SOPClassUID") or "") != SegmentationStorage and ds.get("Modality") != "SEG":
        raise ValueError("not a DICOM Segmentation (SEG)")
    if str(ds.get("SegmentationType") or "").upper() not in SEG_TYPES:
        raise ValueError(f"SegmentationType must be one of {', '.join(SEG_TYPES)}")
    if not ds.get("SegmentSequence"):
        raise ValueError("SEG has no SegmentSequence")
    return ds


def _segment_labels(ds: Dataset) -> dict[int, str]:
    return {_int(s.get("SegmentNumber")): str(s.get("SegmentLabel") or "")
            for s in ds.SegmentSequence}


def _n_frames(ds: Dataset) -> int:
    return max(1, _int(ds.get("NumberOfFrames"), 1))


def _frame_segment(ds: Dataset, frame: int) -> int:
    item = functional_group(ds, frame, "SegmentIdentificationSequence")
    return _int(item.get("ReferencedSegmentNumber")) if item is not None else -1


def seg_segments(data: bytes | Dataset) -> list[SegmentInfo]:
    """The segments of a SEG in SegmentSequence order (reads the header only)."""
    with _quiet():
        ds = _segmentation(_parse(data, stop_before_pixels=True)
                           if isinstance(data, bytes) else data)
        labels = _segment_labels(ds)
        n = _n_frames(ds)
        if str(ds.SegmentationType).upper() == "LABELMAP":
            counts = dict.fromkeys(labels, n)
        else:
            counts = dict.fromkeys(labels, 0)
            for frame in range(n):
                number = _frame_segment(ds, frame)
                if number in counts:
                    counts[number] += 1
        return [SegmentInfo(number, label, counts[number]) for number, label in labels.items()]


def _frames(ds: Dataset) -> Iterator[np.ndarray]:
    """Decoded frames (rows, cols), one at a time (a SEG can hold thousands)."""
    shape = (int(ds.Rows), int(ds.Columns))
    try:
        for pixels in iter_pixels(ds, raw=True):
            yield np.asarray(pixels).reshape(shape)
    except Exception:  # noqa: BLE001 - decoder messages may quote header values
        raise ValueError("SEG pixel data could not be decoded") from None


def _sources(ds: Dataset, frame: int) -> list[tuple[str, int | None]]:
    """(SOP Instance UID, frame number or None) of the images a frame was derived from."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    item = per_frame[frame] if frame < len(per_frame) else Dataset()
    out = []
    for derivation in item.get("DerivationImageSequence") or []:
        for src in derivation.get("SourceImageSequence") or []:
            if src.get("ReferencedSOPInstanceUID"):
                number = src.get("ReferencedFrameNumber")
                number = _int(number[0] if isinstance(number, MultiValue) else number, 0)
                out.append((str(src.ReferencedSOPInstanceUID), number or None))
    return out


def _frame_geometry(ds: Dataset, frame: int) -> SliceGeometry | None:
    """The frame's plane from its functional groups, or None when incomplete."""
    position = functional_group(ds, frame, "PlanePositionSequence")
    orientation = functional_group(ds, frame, "PlaneOrientationSequence")
    measures = functional_group(ds, frame, "PixelMeasuresSequence")
    attrs = {"ImagePositionPatient": position.get("ImagePositionPatient") if position else None,
             "ImageOrientationPatient": orientation.get("ImageOrientationPatient")
             if orientation else None,
             "PixelSpacing": measures.get("PixelSpacing") if measures else None,
             "SliceThickness": measures.get("SliceThickness") if measures else None,
             "Rows": ds.get("Rows"), "Columns": ds.get("Columns")}
    try:
        return SliceGeometry.from_attributes(f"frame-{frame + 1}", attrs)
    except ValueError:
        return None


def _same_grid(src: SliceGeometry, dst: SliceGeometry) -> bool:
    in_plane = dst.to_pixel(np.asarray([src.position]))[0, :2]
    return ((src.rows, src.cols) == (dst.rows, dst.cols)
            and bool(np.all(np.abs(in_plane * dst.spacing) < SAME_GRID_MM))
            and np.allclose(src.spacing, dst.spacing, atol=SAME_GRID_MM)
            and np.allclose(src.orientation, dst.orientation, atol=1e-4))


def _on_grid(mask: np.ndarray, src: SliceGeometry | None, dst: SliceGeometry
             ) -> np.ndarray | None:
    """`mask` (on the frame grid `src`) on the slice grid `dst`, nearest neighbour."""
    if src is None or _same_grid(src, dst):
        return mask if mask.shape == (dst.rows, dst.cols) else None
    rr, cc = np.mgrid[: dst.rows, : dst.cols]
    pix = src.to_pixel(dst.to_patient(rr, cc).reshape(-1, 3))[:, :2]
    idx = np.round(pix).astype(np.int64)
    ok = (idx[:, 0] >= 0) & (idx[:, 0] < src.rows) & (idx[:, 1] >= 0) & (idx[:, 1] < src.cols)
    out = np.zeros(dst.rows * dst.cols, dtype=bool)
    out[ok] = mask[idx[ok, 0], idx[ok, 1]]
    return out.reshape(dst.rows, dst.cols)


def _frame_masks(ds: Dataset, pixels: np.ndarray, frame: int, labels: dict[int, str],
                 threshold: float) -> list[tuple[int, np.ndarray]]:
    """(segment number, bool mask) pairs carried by one frame."""
    kind = str(ds.SegmentationType).upper()
    if kind == "LABELMAP":  # a segment is on the frame when one of its pixels is
        return [(int(n), pixels == n) for n in np.unique(pixels) if int(n) in labels]
    number = _frame_segment(ds, frame)
    if kind == "FRACTIONAL":
        top = float(_int(ds.get("MaximumFractionalValue"), 255) or 255)
        return [(number, pixels.astype(np.float64) / top > threshold)]
    return [(number, pixels != 0)]


def _place(mask: np.ndarray, geometry: SliceGeometry | None, refs: list[tuple[str, int | None]],
           frame: int, index: SliceIndex | None, match: Match, uid_key: UidKey | None
           ) -> tuple[str, np.ndarray] | None:
    """(slice key, mask on that slice's grid) for one frame mask, or None if it fits no slice."""
    if index is None:
        return _frame_key(refs, frame, uid_key), mask
    points = np.asarray([geometry.position]) if geometry else np.empty((0, 3))
    target = index.match(refs, points, match, uid_key)
    placed = _on_grid(mask, geometry, target) if target else None
    return (target.key, placed) if target and placed is not None else None


def rasterise_seg(
    data: bytes | Dataset,
    slices: Sequence[SliceGeometry] | None = None,
    *,
    match: Match = "auto",
    uid_key: UidKey | None = None,
    threshold: float = 0.5,
    tolerance_mm: float | None = None,
) -> dict[str, RoiMasks]:
    """Masks of every segment keyed by SegmentLabel ("label#number" when a label repeats).

    With `slices`, each mask is on the grid of the slice its frame maps to (frames on no known
    slice are counted in `skipped`); without, on the frame grid. FRACTIONAL frames are
    thresholded at value / MaximumFractionalValue > `threshold`. Frames of a segment landing on
    the same slice are OR-combined; frames naming a segment absent from SegmentSequence are
    dropped.
    """
    with _quiet():
        ds = _segmentation(data)
        labels = _segment_labels(ds)
        index = SliceIndex(slices, tolerance_mm) if slices is not None else None
        results = {number: RoiMasks(number, label) for number, label in labels.items()}
        for frame, pixels in enumerate(_frames(ds)):
            refs, geometry = _sources(ds, frame), _frame_geometry(ds, frame)
            for number, mask in _frame_masks(ds, pixels, frame, labels, threshold):
                result = results.get(number)
                if result is None:
                    continue
                placed = _place(mask, geometry, refs, frame, index, match, uid_key)
                if placed is None:
                    result.skipped += 1
                    continue
                key, on_slice = placed
                previous = result.masks.get(key)
                result.masks[key] = on_slice | previous if previous is not None else on_slice
        counts: dict[str, int] = {}
        for label in labels.values():
            counts[label] = counts.get(label, 0) + 1
        return {(r.name if counts[r.name] == 1 else f"{r.name}#{r.number}"): r
                for r in results.values()}


def _frame_key(refs: list[tuple[str, int | None]], frame: int, uid_key: UidKey | None) -> str:
    for uid, number in refs:
        key = uid_key(uid) if uid_key else uid
        if key is not None:
            return f"{key}:{number}" if number else key
    return f"frame-{frame + 1}"
