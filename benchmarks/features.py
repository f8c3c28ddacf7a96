"""Per-image feature extraction speed: medspark.features vs pyradiomics 3.0.1, one core.

Builds N CT-like 256x256 slices (pydicom's CT_small.dcm in HU, upsampled, shifted, flipped and
with fresh noise) with large ROIs (body by threshold, or an irregular ellipse), then in the same
run times, per image and with the same settings (all seven 2D families, pyradiomics defaults):

1. ``medspark.features.extract`` on the numpy arrays;
2. pyradiomics' ``RadiomicsFeatureExtractor(force2D=True).execute`` on the same planes
   (SimpleITK images built beforehand, outside the timing);

and prints ms/image, wall-clock and CPU time (median over images, each the best of
``--repeats``; the two libraries alternate image by image so both see the same machine load),
the ratio (target >= 10) and the largest relative difference between the two outputs. BLAS and
SimpleITK are pinned to one thread, so the figures are single-core. ``extract`` makes glibc
keep freed heap for reuse (``medspark.features.allocator``; process-wide, so pyradiomics runs
under it too); ``--no-keep-heap`` measures without it.

    .venv/bin/python benchmarks/features.py --images 20
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, for both libraries; before numpy loads BLAS

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

if "--no-keep-heap" in sys.argv:
    os.environ["MEDSPARK_FEATURES_KEEP_HEAP"] = "0"

from medspark.features import FAMILIES, extract  # noqa: E402
from medspark.features.allocator import keep_freed_memory  # noqa: E402


def make_planes(n: int, size: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (image, roi) pairs: CT-like HU planes and large ROIs."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    base = cv2.resize(hu.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    planes = []
    for i in range(n):
        img = np.roll(base, tuple(rng.integers(-size // 8, size // 8, 2)), axis=(0, 1))
        img = img[:, ::-1] if i % 2 else img
        img = img.astype(np.float64) + rng.normal(0.0, 15.0, img.shape)
        if i % 2:  # body-like: everything denser than -500 HU
            roi = img > -500
        else:  # irregular ellipse covering most of the plane
            angle = np.arctan2(yy - size / 2, xx - size / 2)
            radius = 1 + 0.08 * np.sin(5 * angle + i)
            roi = ((yy - size / 2) / (0.47 * size)) ** 2 + ((xx - size / 2) / (0.4 * size)) ** 2
            roi = roi < radius ** 2
        planes.append((img, roi))
    return planes


def best_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU time of ``repeats`` calls, in ms."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall * 1e3, cpu * 1e3


def pyradiomics_runner(planes: list[tuple[np.ndarray, np.ndarray]]
                       ) -> list[Callable[[], dict]]:
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # one core, like medspark
    extractor = featureextractor.RadiomicsFeatureExtractor(force2D=True, force2Ddimension=0)
    extractor.disableAllFeatures()
    for family in FAMILIES:
        extractor.enableFeatureClassByName(family)
    runners = []
    for img, roi in planes:
        # One background pixel all round: pyradiomics refuses a mask without background.
        s_img = sitk.GetImageFromArray(np.pad(img, 1)[None])
        s_roi = sitk.GetImageFromArray(np.pad(roi.astype(np.uint8), 1)[None])
        s_roi.CopyInformation(s_img)
        runners.append(lambda s_img=s_img, s_roi=s_roi: extractor.execute(s_img, s_roi))
    return runners


def max_rel_diff(ours: dict[str, float], ref: dict) -> float:
    worst = 0.0
    for key, value in ref.items():
        if not key.startswith("original_"):
            continue
        a, b = ours[key.removeprefix("original_")], float(value)
        if not (np.isnan(a) and np.isnan(b)):
            worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="best of N per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-keep-heap", action="store_true",
                        help="leave glibc's heap trimming as it is")
    args = parser.parse_args()

    planes = make_planes(args.images, args.size, args.seed)
    rois = [int(roi.sum()) for _, roi in planes]
    extract(*planes[0])  # warm-up (imports, first-call overheads; applies the heap setting)
    print(f"{len(planes)} planes {args.size}x{args.size}, ROI pixels "
          f"{min(rois)}-{max(rois)} (median {int(statistics.median(rois))}), "
          f"families: {', '.join(FAMILIES)}, default settings, BLAS threads 1, "
          f"keep freed heap: {keep_freed_memory()}")

    runners = pyradiomics_runner(planes)
    ours, theirs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runners[0]()
        for plane, run in zip(planes, runners, strict=True):
            ours.append(best_ms(lambda p=plane: extract(*p), args.repeats))
            theirs.append(best_ms(run, args.repeats))
        diff = max(max_rel_diff(extract(*p), run()) for p, run in zip(planes, runners, strict=True))
    per_family = {fam: statistics.median(best_ms(lambda p=p, f=fam: extract(*p, families=[f]),
                                                 args.repeats)[0] for p in planes)
                  for fam in FAMILIES}

    for label, k in (("wall-clock", 0), ("CPU time", 1)):
        a = [t[k] for t in ours]
        b = [t[k] for t in theirs]
        print(f"{label}:")
        print(f"  medspark.features : {statistics.median(a):7.2f} ms/image "
              f"(median; min {min(a):.2f}, max {max(a):.2f})")
        print(f"  pyradiomics 3.0.1 : {statistics.median(b):7.2f} ms/image "
              f"(median; min {min(b):.2f}, max {max(b):.2f})")
        print(f"  speed-up          : {statistics.median(b) / statistics.median(a):7.1f}x "
              "(target >= 10x)")
    print("medspark, one family only (wall ms): "
          + ", ".join(f"{f} {t:.2f}" for f, t in per_family.items()))
    print(f"max relative difference between the outputs: {diff:.2e}")


if __name__ == "__main__":
    main()
