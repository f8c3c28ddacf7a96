"""Ingest speed and driver memory: medspark (local[2]) vs a plain multiprocessing.Pool(2).

Generates N single-slice 512x512 16-bit CT DICOM files, then in the same run:

1. baseline: `multiprocessing.Pool(2)` workers read each file, decode it and build rows with the
   very functions ingest uses (`medspark.ingest.records.file_rows`), and write pixels + catalog
   Parquet files with pyarrow;
2. medspark: `run_ingest` on a local[2] session;

and prints images/s for both and the ratio (target >= 0.8). It runs `--rounds` such pairs
(default 3; medspark in a fresh JVM each time) and prints the median ratio: on a shared machine
the speed drifts by tens of percent between runs minutes apart. Both sides first process 64 other
files: the pool's spawn and imports, Spark's JVM start, JIT warm-up and Python worker start are
timed and printed apart (and in a "with start-ups" ratio). CPU time per image (Linux /proc: the
pool's workers; the driver, its JVM and the JVM's Python workers) is printed too: on a machine
other jobs share it is the steadier comparison. It then ingests a quarter of the
files in a fresh process and compares peak driver memory (Python driver and its JVM) between
the two sizes: the driver must not grow with the number of images.

    .venv/bin/python benchmarks/ingest.py --files 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from cpu import jvm_pid, tree_cpu_s

os.environ.setdefault("MEDSPARK_PSEUDONYM_KEY", "medspark-benchmark-key")

BASELINE_CHUNK = 32  # files per baseline task
WARMUP_FILES = 64


def generate(root: Path, n_files: int, size: int) -> list[Path]:
    from medspark.sample import write_ct_series

    per_series = 200
    files: list[Path] = []
    for series in range(0, n_files, per_series):
        count = min(per_series, n_files - series)
        files += write_ct_series(root / f"series_{series // per_series:04d}", count, size,
                                 seed=series)
    return files


def _baseline_chunk(args: tuple[int, list[str], str]) -> int:
    """One Pool task: decode a chunk of files and write its pixels/catalog Parquet files."""
    from medspark.config import IngestSettings
    from medspark.ingest.records import IngestContext, file_rows
    from medspark.ingest.staged import CATALOG_ARROW, write_pixel_file
    from medspark.io.types import Limits
    from medspark.privacy.pseudonym import resolve_key

    index, paths, out = args
    ctx = IngestContext(limits=Limits(), key=resolve_key(False), max_shift_days=365,
                        run_id="baseline")
    pseudo = ctx.pseudonymizer()
    rows = []
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()
        st = os.stat(path)
        source = {"path": "file:" + path, "relpath": None, "size": st.st_size,
                  "mtime": None}
        rows.extend(r for r in file_rows(source, data, ctx, pseudo) if r["kind"] == "plane")
    write_pixel_file(rows, f"{out}/pixels", IngestSettings().pixels_compression)
    # the same catalog columns as ingest writes, the header map included
    catalog = pa.Table.from_pylist(rows, schema=CATALOG_ARROW)
    pq.write_table(catalog, f"{out}/catalog/part-{index:05d}.parquet")
    return len(rows)


def _chunks(files: list[Path], out: Path) -> list[tuple[int, list[str], str]]:
    for table in ("pixels", "catalog"):
        (out / table).mkdir(parents=True, exist_ok=True)
    return [(i, [str(p) for p in files[s:s + BASELINE_CHUNK]], str(out))
            for i, s in enumerate(range(0, len(files), BASELINE_CHUNK))]


def run_baseline(files: list[Path], warmup: list[Path], out: Path) -> dict:
    """Pool(2) over chunks of files, after a warm-up pass (imports, first decodes)."""
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(2) as pool:
        sum(pool.imap_unordered(_baseline_chunk, _chunks(warmup, out / "warm")))
        startup = time.perf_counter() - start
        cpu0 = sum(tree_cpu_s(os.getpid()))
        start = time.perf_counter()
        images = sum(pool.imap_unordered(_baseline_chunk, _chunks(files, out / "run")))
        seconds = time.perf_counter() - start
        cpu1 = sum(tree_cpu_s(os.getpid()))
    return {"images": images, "seconds": seconds, "startup_s": startup, "cpu_s": cpu1 - cpu0}


def _jvm_peak_rss_mb() -> float | None:
    """Peak resident memory of the driver JVM (a child of this process), from /proc."""
    try:
        out = subprocess.run(["pgrep", "-P", str(os.getpid()), "java"], capture_output=True,
                             text=True).stdout.split()
        pids = out or subprocess.run(["pgrep", "-f", "org.apache.spark.deploy.SparkSubmit"],
                                     capture_output=True, text=True).stdout.split()
        peaks = []
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks) if peaks else None
    except OSError:
        return None


def run_medspark(root: Path, warmup: Path, lake: Path) -> dict:
    """Ingest `root` in this process after a warm-up ingest of `warmup` (JVM start, JIT and
    Python worker start-up are timed apart); returns timings, CPU, counts and peak memory."""
    from medspark.config import load_settings
    from medspark.session import build_session
    from medspark.spark.ingest import IngestRequest, run_ingest

    settings = load_settings(None, ["spark.master=local[2]", "spark.log_level=ERROR"])
    start = time.perf_counter()
    spark = build_session(settings.spark, conf={"spark.ui.enabled": "false",
                                                "spark.ui.showConsoleProgress": "false",
                                                "spark.driver.memory": "2g"},
                          python_bound=True)  # as `medspark ingest` builds it
    spark.range(1).count()
    jvm_s = time.perf_counter() - start

    def ingest(src: Path, dst: Path) -> dict:
        shutil.rmtree(dst, ignore_errors=True)  # a kept --workdir: ingest afresh, not skip
        request = IngestRequest(inputs=[str(src)], lake=str(dst))
        return run_ingest(spark, settings, request, request.validate(settings))

    start = time.perf_counter()
    ingest(warmup, lake.with_name(lake.name + "-warm"))
    warm_s = time.perf_counter() - start
    jvm = jvm_pid()
    cpu0 = sum(tree_cpu_s(jvm)) + resource.getrusage(resource.RUSAGE_SELF).ru_utime
    start = time.perf_counter()
    manifest = ingest(root, lake)
    seconds = time.perf_counter() - start
    cpu1 = sum(tree_cpu_s(jvm)) + resource.getrusage(resource.RUSAGE_SELF).ru_utime
    result = {
        "jvm_start_s": jvm_s,
        "startup_s": warm_s,
        "ingest_s": seconds,
        "cpu_s": cpu1 - cpu0,
        "images": manifest["counts"]["rows"]["pixels"],
        "quarantined": manifest["counts"]["files_quarantined"],
        "accounted": manifest["counts"]["all_files_accounted"],
        "python_driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "jvm_driver_peak_mb": _jvm_peak_rss_mb(),
    }
    spark.stop()
    return result


def medspark_in_subprocess(root: Path, lake: Path) -> dict:
    """Fresh interpreter + JVM so peak memory figures are per run, not cumulative."""
    warmup = root.parent / "warmup"
    out = subprocess.run([sys.executable, __file__, "--medspark-only", str(root), str(warmup),
                          str(lake)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _round(round_no: int, files: list[Path], warm: list[Path], work: Path) -> dict:
    """One pool run then one medspark run (fresh JVM), printed with their ratios."""
    base = run_baseline(files, warm, work / "baseline")
    base_rate = base["images"] / base["seconds"]
    print(f"[round {round_no}] baseline Pool(2): {base['images']} images in "
          f"{base['seconds']:.1f}s = {base_rate:.1f} images/s; CPU "
          f"{1000 * base['cpu_s'] / base['images']:.1f} ms/image (start-up + warm-up "
          f"{base['startup_s']:.1f}s, not included)")
    full = medspark_in_subprocess(work / "all", work / "lake-all")
    rate = full["images"] / full["ingest_s"]
    print(f"[round {round_no}] medspark local[2]: {full['images']} images in "
          f"{full['ingest_s']:.1f}s = {rate:.1f} images/s; CPU "
          f"{1000 * full['cpu_s'] / full['images']:.1f} ms/image (JVM start "
          f"{full['jvm_start_s']:.1f}s and warm-up {full['startup_s']:.1f}s, not included); "
          f"every file accounted: {full['accounted']}")
    with_start = (base["seconds"] + base["startup_s"]) / (
        full["ingest_s"] + full["startup_s"] + full["jvm_start_s"])
    cpu = (base["cpu_s"] / base["images"]) / (full["cpu_s"] / full["images"])
    print(f"[round {round_no}] ratio medspark/pool = {rate / base_rate:.2f} (target >= 0.8); "
          f"with start-ups {with_start:.2f}; CPU per image pool/medspark = {cpu:.2f}")
    return {**full, "_ratios": (rate / base_rate, cpu)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workdir", help="keep data here (default: a temp dir, removed)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="pool/medspark pairs to run; the median ratio is printed (a shared "
                        "machine's speed drifts between runs)")
    parser.add_argument("--medspark-only", nargs=3, metavar=("ROOT", "WARMUP", "LAKE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.medspark_only:
        root, warmup, lake = map(Path, args.medspark_only)
        print(json.dumps(run_medspark(root, warmup, lake)))
        return 0
    if args.files < 8 or args.rounds < 1:
        parser.error("--files must be >= 8 and --rounds >= 1")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-"))
    try:
        start = time.perf_counter()
        files = generate(work / "all", args.files, args.size)
        warm = generate(work / "warmup", WARMUP_FILES, args.size)
        print(f"generated {len(files)} CT files of {args.size}x{args.size} (+{len(warm)} for "
              f"warm-up) in {time.perf_counter() - start:.1f}s under {work}")

        ratios = []
        for round_no in range(1, args.rounds + 1):
            full = _round(round_no, files, warm, work)
            ratios.append(full.pop("_ratios"))
        if args.rounds > 1:
            wall, cpu = (statistics.median(r[i] for r in ratios) for i in (0, 1))
            print(f"median of {args.rounds} rounds: ratio medspark/pool = {wall:.2f} (target >= "
                  f"0.8); CPU per image pool/medspark = {cpu:.2f}; rounds: "
                  + ", ".join(f"{w:.2f}" for w, _ in ratios))

        quarter = work / "quarter"
        shutil.rmtree(quarter, ignore_errors=True)
        quarter.mkdir()
        for path in files[: len(files) // 4]:
            os.link(path, quarter / f"{path.parent.name}_{path.name}")
        small = medspark_in_subprocess(quarter, work / "lake-quarter")
        for key in ("python_driver_peak_mb", "jvm_driver_peak_mb"):
            a, b = small[key], full[key]
            if a and b:
                print(f"{key}: {small['images']} images {a:.0f} MB, {full['images']} images "
                      f"{b:.0f} MB, growth x{b / a:.2f} for x{full['images'] / small['images']:.0f}"
                      " images")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
