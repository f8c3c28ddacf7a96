"""A night end to end: `medspark nightly` (one Spark session for every stage) against the same
jobs run one by one (`medspark ingest`, `masks`, `preprocess`, `features`, each its own
process and JVM, as a user scheduling them separately would), on the same N CT planes.

Prints each stage's time in both, the totals and their ratio (the shared session should make
the nightly faster, not slower), then runs the night again to show a re-run of a finished
night commits nothing and costs little.

    .venv/bin/python benchmarks/nightly.py --files 2000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MEDSPARK_PSEUDONYM_KEY", "medspark-benchmark-key")
STAGES = ("ingest", "masks", "preprocess", "features")
DATE = "2026-11-01"
COMMON = ["--set", "nightly.discover=false"]


def generate(root: Path, n_files: int, size: int) -> None:
    from medspark.sample import write_ct_series

    per_series = 200
    for start in range(0, n_files, per_series):
        write_ct_series(root / f"series_{start // per_series:04d}",
                        min(per_series, n_files - start), size, seed=start,
                        series_index=start // per_series)


def medspark(*args: str) -> tuple[float, str]:
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "medspark.cli", *args], capture_output=True,
                          text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"medspark {args[0]} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return time.time() - t0, done.stdout


def one_by_one(images: Path, lake: Path) -> dict[str, float]:
    out = {}
    out["ingest"], _ = medspark("ingest", "--input", str(images), "--lake", str(lake),
                                "--set", f"ingest.ingest_date={DATE}", *COMMON)
    out["masks"], _ = medspark("masks", "--lake", str(lake), "--date", DATE, *COMMON)
    out["preprocess"], _ = medspark("preprocess", "--lake", str(lake), "--date", DATE,
                                    *COMMON)
    out["features"], _ = medspark("features", "--lake", str(lake), "--date", DATE, *COMMON)
    return out


def nightly(images: Path, lake: Path) -> tuple[float, dict]:
    took, stdout = medspark("nightly", "--input", str(images), "--lake", str(lake), "--date",
                            DATE, "--model", "none", "--json", *COMMON)
    return took, json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workdir", help="keep data here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-nightly-"))
    images = work / "images"
    if not images.is_dir():
        print(f"generating {args.files} {args.size}x{args.size} CT planes in {images}")
        generate(images, args.files, args.size)
    for name in ("lake-jobs", "lake-nightly"):
        shutil.rmtree(work / name, ignore_errors=True)

    jobs = one_by_one(images, work / "lake-jobs")
    took, state = nightly(images, work / "lake-nightly")
    stages = {s["name"]: s for s in state["stages"]}
    again, state2 = nightly(images, work / "lake-nightly")

    print(f"\n{args.files} CT planes {args.size}x{args.size}, one night "
          f"(jobs one by one vs medspark nightly)")
    print(f"  {'stage':<12} {'one by one (s)':>15} {'nightly (s)':>12}")
    for name in STAGES:
        print(f"  {name:<12} {jobs[name]:>15.1f} {stages[name]['duration_s']:>12.1f}")
    print(f"  {'report':<12} {'-':>15} {stages['report']['duration_s']:>12.1f}")
    total_jobs = sum(jobs.values())
    print(f"  {'total':<12} {total_jobs:>15.1f} {took:>12.1f}   (nightly: one process, JVM "
          "start and report included)")
    print(f"  ratio one-by-one / nightly: {total_jobs / took:.2f} "
          f"(> 1: the nightly is faster)")
    print(f"  images: {stages['features']['counts'].get('rows')} feature rows; exit code "
          f"{state['exit_code']}")
    print(f"  re-run of the finished night: {again:.1f}s, stages "
          + ", ".join(f"{s['name']}={s['duration_s']:.1f}s" for s in state2["stages"]
                      if s["duration_s"] is not None))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
