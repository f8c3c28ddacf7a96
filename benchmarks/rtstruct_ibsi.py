"""RTSTRUCT rasterisation on the IBSI CT phantom: Dice against its NIfTI mask, and the time.

The phantom (CC BY-NC, not part of this repository) is read from `../shared/ibsi/ct_phantom`
or `--phantom`. Slice geometry comes from the image headers only; the RTSTRUCT contours carry no
ContourImageSequence, so they are matched to slices by position. The NIfTI mask is brought onto
the DICOM grid through both affines (DICOM LPS pixel centre -> RAS -> NIfTI voxel index), so no
axis order or flip is assumed. Also prints the Dice of two other fill conventions (OpenCV
fillPoly, which fills every pixel an edge touches, and the OR union of contours).

    .venv/bin/python benchmarks/rtstruct_ibsi.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom

from medspark.segment.rtstruct import (
    SliceGeometry,
    SliceIndex,
    contour_points,
    rasterise_roi,
    rtstruct_rois,
    stack_masks,
)

PHANTOM = Path(__file__).resolve().parents[2] / "shared" / "ibsi" / "ct_phantom"
ROI = "GTV-1"


def load_slices(phantom: Path) -> list[SliceGeometry]:
    """Geometry of every image slice, ordered by position along the slice normal."""
    files = sorted((phantom / "dicom" / "image").glob("*.dcm"))
    slices = [SliceGeometry.from_dicom(f.read_bytes()) for f in files]
    return sorted(slices, key=lambda s: s.slice_position)


def nifti_on_dicom_grid(path: Path, slices: list[SliceGeometry]) -> tuple[np.ndarray, float]:
    """The NIfTI mask sampled at every DICOM pixel centre (nearest voxel), and the largest
    distance (in voxels) from a pixel centre to the voxel centre it was sampled at."""
    img = nib.load(path)
    data = np.asarray(img.dataobj) > 0
    inv = np.linalg.inv(img.affine)
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    out = np.zeros((len(slices), slices[0].rows, slices[0].cols), dtype=bool)
    worst = 0.0
    for k, s in enumerate(slices):
        rr, cc = np.mgrid[: s.rows, : s.cols]
        ras = s.to_patient(rr, cc) * lps_to_ras
        ijk = ras @ inv[:3, :3].T + inv[:3, 3]
        idx = np.round(ijk).astype(int)
        worst = max(worst, float(np.abs(ijk - idx).max()))
        inside = np.all((idx >= 0) & (idx < data.shape[:3]), axis=-1)
        out[k][inside] = data[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
    return out, worst


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def cv2_fill(data: bytes, slices: list[SliceGeometry]) -> np.ndarray:
    """Alternative convention: cv2.fillPoly (sub-pixel vertices), contours XOR-combined."""
    index = SliceIndex(slices)
    masks: dict[str, np.ndarray] = {}
    for rc in pydicom.dcmread(io.BytesIO(data)).ROIContourSequence:
        for item in rc.ContourSequence:
            points = contour_points(item)
            s = index.nearest(points)
            if s is None:
                continue
            pix = s.to_pixel(points)[:, [1, 0]]  # cv2 wants (x=col, y=row)
            canvas = np.zeros((s.rows, s.cols), dtype=np.uint8)
            cv2.fillPoly(canvas, [np.round(pix * 256).astype(np.int32)], 1, shift=8)
            masks[s.key] = masks.get(s.key, np.zeros_like(canvas, dtype=bool)) ^ (canvas > 0)
    return stack_masks(masks, slices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", type=Path, default=PHANTOM)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if not (args.phantom / "dicom").exists():
        raise SystemExit(f"IBSI CT phantom not found under {args.phantom}")

    slices = load_slices(args.phantom)
    rs_bytes = next((args.phantom / "dicom" / "mask").glob("*.dcm")).read_bytes()
    info = {r.name: r for r in rtstruct_rois(rs_bytes)}[ROI]
    print(f"{len(slices)} slices {slices[0].rows}x{slices[0].cols}, ROI {ROI!r}: "
          f"{info.n_contours} contours, {len(info.referenced_uids)} referenced SOP UIDs")

    times, result = [], None
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        result = rasterise_roi(rs_bytes, slices, ROI, match="auto")
        times.append(time.perf_counter() - t0)
    assert result is not None
    ours = stack_masks(result.masks, slices)
    ref, offset = nifti_on_dicom_grid(args.phantom / "nifti" / "mask.nii.gz", slices)
    print(f"grids: largest pixel-centre to voxel-centre offset {offset:.2e} voxel")
    print(f"slices with a mask {len(result.masks)}, contours skipped {result.skipped}, "
          f"ignored {result.ignored}")
    print(f"voxels: rtstruct {int(ours.sum())}, nifti {int(ref.sum())}, "
          f"rtstruct-only {int((ours & ~ref).sum())}, nifti-only {int((ref & ~ours).sum())}")
    print(f"Dice (pixel centre inside or on an edge, contours XOR) = {dice(ours, ref)!r}")
    print(f"time rtstruct parse + rasterise: median {statistics.median(times) * 1e3:.1f} ms "
          f"(min {min(times) * 1e3:.1f} ms, {len(times)} runs)")

    union = stack_masks(rasterise_roi(rs_bytes, slices, ROI, combine="or").masks, slices)
    print(f"alternative: OR of contours Dice = {dice(union, ref):.6f}")
    print(f"alternative: cv2.fillPoly Dice = {dice(cv2_fill(rs_bytes, slices), ref):.6f}")


if __name__ == "__main__":
    main()
