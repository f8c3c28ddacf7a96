"""Preprocessing speed: medspark's fused ImagePreprocessor (local[2]) vs a multiprocessing.Pool(2).

Generates N CT-like int16 slices (`medspark.sample.anatomy.ct_slice`, seeded, 100 slices per
synthetic patient) as plane rows and writes them once to one Parquet file (image_id, height,
width, channels, dtype, data, pixel_spacing_mm; `--row-group` rows per row group, snappy),
standing in for the lake's pixels table, plus a small warm-up file (`--warmup` more slices).
Then, in the same run, with a typical chain (segment: lung_mask; preprocess: window lung,
resize 256, clahe, gaussian sigma 1):

1. single process: decode_plane -> Pipeline.apply -> encode_plane/encode_mask on a sample of
   the rows (one OpenCV thread), reported as ms/image;
2. baseline: a spawn-context `multiprocessing.Pool(2)`. Each task reads one row group of the
   input file itself with pyarrow (as a Spark task reads its own split: no pixel bytes are
   pickled from the parent, which would only slow the baseline down), runs the same per-row
   functions as `ImagePreprocessor` (decode, chain, encode, error row on failure) and writes its
   own Parquet file with the same columns as medspark's output. Workers use one OpenCV thread,
   as medspark's Python workers do;
3. medspark: `ImagePreprocessor(segment=..., preprocess=...).transform(spark.read.parquet(...))`
   then `.write.parquet(...)`, on a local[2] session.

Both sides are timed warm: the Pool after its workers have started and processed the warm-up
file, Spark after the JVM has started and the same warm-up file has gone through the same
read -> transform -> write path (so Python workers are up and the JVM's hot paths compiled).
Those start-up costs are printed apart, with the cold ratio (start-ups included, JVM launch
excluded).

Spark reads the input as `--spark-tasks` byte ranges (`spark.sql.files.maxPartitionBytes` =
file size / tasks): by default a multiple of the 2 cores with about 256 images per task. A
Spark task has a fixed cost (tens of ms of CPU in the JVM and the Python worker), so one task
per 32-image row group, like the Pool's tasks, costs ~10-20% more CPU per image; Spark's own
split size (128 MiB: 7 tasks for 2000 images) leaves a core idle while the 7th task runs.

Prints images/s of both and their ratio (target >= 0.8), CPU ms per image of each side (JVM
and Python workers apart; wall-clock figures on a busy machine mean little, CPU time is
steadier), and checks that both wrote byte-identical images and masks.

    .venv/bin/python benchmarks/preprocess.py --files 2000
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from cpu import jvm_pid, tree_cpu_s

SEGMENT: list[Any] = [{"step": "lung_mask"}]
PREPROCESS: list[Any] = [
    {"step": "window", "preset": "lung"},
    {"step": "resize", "size": 256},
    {"step": "clahe"},
    {"step": "gaussian", "sigma": 1.0},
]
SLICES_PER_PATIENT = 100
FOV_MM = 360.0

INPUT_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
    ("channels", pa.int32()), ("dtype", pa.string()), ("data", pa.binary()),
    ("pixel_spacing_mm", pa.list_(pa.float64())),
])
# What ImagePreprocessor writes (no augmentation): the input columns, then its new ones.
OUTPUT_SCHEMA = pa.schema([
    *INPUT_SCHEMA, ("mask", pa.binary()), ("source_image_id", pa.string()),
    ("augment_index", pa.int32()), ("pipeline_hash", pa.string()),
    ("preprocess_error", pa.string()),
])


# -- data ------------------------------------------------------------------------------------

def generate(path: Path, warmup_path: Path, n_images: int, n_warmup: int, size: int,
             row_group: int) -> int:
    """Write `n_images` CT slices as plane rows to `path` (and `n_warmup` more to
    `warmup_path`), `row_group` rows per row group; returns the size of `path`."""
    from medspark.planes import encode_plane
    from medspark.sample.anatomy import ct_slice, random_body

    spacing = [FOV_MM / size] * 2
    for target, count, first in ((path, n_images, 0), (warmup_path, n_warmup, n_images)):
        rows: list[dict[str, Any]] = []
        with pq.ParquetWriter(target, INPUT_SCHEMA) as writer:
            for start in range(first, first + count, SLICES_PER_PATIENT):
                rng = np.random.default_rng(start)
                body = random_body(rng)
                n = min(SLICES_PER_PATIENT, first + count - start)
                for k, z in enumerate(np.linspace(0.25, 0.75, n)):
                    hu = ct_slice(size, float(z), rng, body=body)
                    rows.append({"image_id": f"bench-{start + k:06d}", **encode_plane(hu),
                                 "pixel_spacing_mm": spacing})
                    if len(rows) == row_group:
                        writer.write_table(pa.Table.from_pylist(rows, INPUT_SCHEMA))
                        rows = []
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, INPUT_SCHEMA))
    return path.stat().st_size


def digests(path: Path) -> dict[str, str]:
    """image_id -> sha256 of (shape, dtype, data, mask) over an output directory."""
    out: dict[str, str] = {}
    columns = ["image_id", "data", "mask", "height", "width", "dtype"]
    dataset = pads.dataset(path, format="parquet")
    for batch in dataset.to_batches(columns=columns, batch_size=64):
        for r in batch.to_pylist():
            h = hashlib.sha256(f"{r['height']}x{r['width']}:{r['dtype']}:".encode())
            h.update(r["data"] or b"")
            h.update(r["mask"] or b"")
            out[r["image_id"]] = h.hexdigest()
    return out


# -- the per-image work ----------------------------------------------------------------------

def _config():
    from medspark.steps import ProcessingConfig

    return ProcessingConfig(segment=SEGMENT, preprocess=PREPROCESS)


def _row_processor():
    """One input row dict -> one output row dict: what ImagePreprocessor does per image."""
    from medspark.planes import decode_mask, decode_plane, encode_mask, encode_plane, spacing_of

    cfg = _config()
    pipeline, digest = cfg.pipeline(), cfg.hash()

    def process(rec: dict[str, Any]) -> dict[str, Any]:
        base = {**rec, "source_image_id": rec["image_id"], "augment_index": 0,
                "pipeline_hash": digest, "preprocess_error": None}
        try:
            image, spacing, mask = pipeline.apply(decode_plane(rec), spacing_of(rec),
                                                  decode_mask(rec))
        except Exception as e:  # noqa: BLE001 - as ImagePreprocessor: an error is a row
            return {**base, "data": None, "mask": None,
                    "preprocess_error": f"{type(e).__name__}: {e}"[:500]}
        return {**base, **encode_plane(image), "mask": encode_mask(mask),
                "pixel_spacing_mm": list(spacing) if spacing else None}

    return process


def single_process_ms(source: Path, n: int) -> float:
    """Median ms/image of the per-row work in this process, with one OpenCV thread."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        process = _row_processor()
        sample = next(pq.ParquetFile(source).iter_batches(batch_size=n)).to_pylist()
        process(sample[0])  # warm-up
        times = []
        for rec in sample:
            start = time.perf_counter()
            process(rec)
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e3
    finally:
        cv2.setNumThreads(threads)


# -- baseline: multiprocessing.Pool(2) -------------------------------------------------------

_PROCESS = None


def _init_worker() -> None:
    import cv2

    global _PROCESS
    cv2.setNumThreads(1)  # one process per core, as in medspark's Python workers
    _PROCESS = _row_processor()


def _baseline_chunk(args: tuple[str, int, str]) -> int:
    """One Pool task: read one row group, process its rows, write one Parquet file."""
    source, group, out = args
    assert _PROCESS is not None
    rows = pq.ParquetFile(source).read_row_group(group).to_pylist()
    result = [_PROCESS(r) for r in rows]
    pq.write_table(pa.Table.from_pylist(result, OUTPUT_SCHEMA),
                   f"{out}/part-{group:05d}.parquet")
    return len(result)


def _tasks(source: Path, out: Path) -> list[tuple[str, int, str]]:
    out.mkdir(parents=True)
    groups = pq.ParquetFile(source).metadata.num_row_groups
    return [(str(source), g, str(out)) for g in range(groups)]


def run_baseline(source: Path, warmup: Path, out: Path) -> dict[str, float]:
    """Pool(2) over the row groups of `source`, after a warm-up pass over `warmup`."""
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(2, initializer=_init_worker) as pool:
        sum(pool.imap_unordered(_baseline_chunk, _tasks(warmup, out.with_name("pool-warm"))))
        startup = time.perf_counter() - start
        parent0, workers0 = tree_cpu_s(os.getpid())
        start = time.perf_counter()
        images = sum(pool.imap_unordered(_baseline_chunk, _tasks(source, out)))
        seconds = time.perf_counter() - start
        parent1, workers1 = tree_cpu_s(os.getpid())
    return {"images": images, "seconds": seconds, "startup_s": startup,
            "cpu_s": parent1 - parent0 + workers1 - workers0}


# -- medspark --------------------------------------------------------------------------------

def run_medspark(source: Path, warmup: Path, out: Path, split_bytes: int | None,
                 batch_records: int, partitions: int) -> dict[str, Any]:
    """ImagePreprocessor over `source` on local[2], after the same job over `warmup`."""
    from pyspark.sql import functions as F

    from medspark.config import load_settings
    from medspark.ml.stages import ImagePreprocessor
    from medspark.session import build_session

    settings = load_settings(None, ["spark.master=local[2]", "spark.log_level=ERROR"])
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.driver.memory": "2g"}
    if batch_records:
        conf["spark.sql.execution.arrow.maxRecordsPerBatch"] = str(batch_records)
    start = time.perf_counter()
    spark = build_session(settings.spark, conf=conf, python_bound=True)  # as the CLI does
    spark.range(1).count()
    jvm_s = time.perf_counter() - start
    try:
        stage = ImagePreprocessor(segment=SEGMENT, preprocess=PREPROCESS)

        def job(src: Path, dst: Path):
            planes = spark.read.parquet(str(src))
            if partitions:
                planes = planes.repartition(partitions)
            stage.transform(planes).write.mode("overwrite").parquet(str(dst))
            return planes

        # warm-up in two tasks, so that both Python workers are started
        split_key = "spark.sql.files.maxPartitionBytes"
        spark.conf.set(split_key, str(warmup.stat().st_size // 2 + 1))
        start = time.perf_counter()
        job(warmup, out.with_name("spark-warm"))
        warm_s = time.perf_counter() - start
        if split_bytes:
            spark.conf.set(split_key, str(split_bytes))
        else:
            spark.conf.unset(split_key)
        jvm = jvm_pid()
        jvm0, py0 = tree_cpu_s(jvm)
        start = time.perf_counter()
        planes = job(source, out)
        seconds = time.perf_counter() - start
        jvm1, py1 = tree_cpu_s(jvm)
        n_parts = planes.rdd.getNumPartitions()
        written = spark.read.parquet(str(out))
        return {"jvm_start_s": jvm_s, "startup_s": warm_s, "seconds": seconds,
                "jvm_cpu_s": jvm1 - jvm0, "python_cpu_s": py1 - py0, "partitions": n_parts,
                "images": written.count(),
                "errors": written.where(F.col("preprocess_error").isNotNull()).count(),
                "batch": (spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch"),
                          spark.conf.get("spark.sql.execution.arrow.maxBytesPerBatch"))}
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="number of images")
    parser.add_argument("--size", type=int, default=512, help="image rows = cols")
    parser.add_argument("--workdir", help="keep data here (default: a temp dir, removed)")
    parser.add_argument("--row-group", type=int, default=32,
                        help="rows per input Parquet row group = images per Pool task")
    parser.add_argument("--warmup", type=int, default=64,
                        help="images of the warm-up pass (both sides)")
    parser.add_argument("--spark-tasks", type=int, default=None,
                        help="Spark tasks (input splits); default: 2 x round(N / 512), at least "
                        "2; 0: Spark's default split size")
    parser.add_argument("--batch-records", type=int, default=0,
                        help="spark.sql.execution.arrow.maxRecordsPerBatch (0: Spark's default)")
    parser.add_argument("--partitions", type=int, default=0,
                        help="repartition (shuffle) the input to this many partitions")
    parser.add_argument("--sample", type=int, default=50,
                        help="images timed in the single-process measurement")
    args = parser.parse_args(argv)
    if args.files < 8 or args.warmup < 2:
        parser.error("--files must be >= 8 and --warmup >= 2")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("pool-out", "pool-warm", "spark-out", "spark-warm"):
        shutil.rmtree(work / stale, ignore_errors=True)
    source, warmup = work / "planes.parquet", work / "warmup.parquet"
    try:
        start = time.perf_counter()
        nbytes = generate(source, warmup, args.files, args.warmup, args.size, args.row_group)
        groups = pq.ParquetFile(source).metadata.num_row_groups
        print(f"generated {args.files} (+{args.warmup} warm-up) CT slices of {args.size}x"
              f"{args.size} int16 in {time.perf_counter() - start:.1f}s: {nbytes / 2**20:.0f} "
              f"MiB of Parquet, {groups} row groups of {args.row_group} under {work}")
        print(f"chain: segment {[s['step'] for s in SEGMENT]}, preprocess "
              f"{[s['step'] for s in PREPROCESS]}")

        n = min(args.sample, args.files)
        ms = single_process_ms(source, n)
        print(f"single process: {ms:.1f} ms/image (median of {n}; decode + chain + encode, "
              f"1 OpenCV thread) = {2000 / ms:.1f} images/s on 2 cores at best")

        base = run_baseline(source, warmup, work / "pool-out")
        base_rate = base["images"] / base["seconds"]
        base_cpu = base["cpu_s"] / base["images"] * 1e3
        print(f"baseline Pool(2): {base['images']} images in {base['seconds']:.1f}s = "
              f"{base_rate:.1f} images/s; CPU {base_cpu:.1f} ms/image "
              f"(start-up + warm-up {base['startup_s']:.1f}s, not included)")

        tasks = args.spark_tasks
        if tasks is None:
            tasks = 2 * max(1, round(args.files / 512))
        split = -(-nbytes // tasks) if tasks else None
        split_text = f"{split / 2**20:.1f} MiB" if split else "Spark's default"
        res = run_medspark(source, warmup, work / "spark-out", split, args.batch_records,
                           args.partitions)
        rate = res["images"] / res["seconds"]
        jvm_ms = res["jvm_cpu_s"] / res["images"] * 1e3
        py_ms = res["python_cpu_s"] / res["images"] * 1e3
        print(f"medspark local[2]: {res['images']} images in {res['seconds']:.1f}s = "
              f"{rate:.1f} images/s; CPU {jvm_ms + py_ms:.1f} ms/image = JVM {jvm_ms:.1f} + "
              f"Python workers {py_ms:.1f} (JVM start {res['jvm_start_s']:.1f}s and warm-up "
              f"{res['startup_s']:.1f}s, not included); {res['partitions']} partitions, "
              f"split {split_text}, arrow batch <= {res['batch'][0]} records / "
              f"{res['batch'][1]}; {res['errors']} errors")
        cold = (res["images"] / (res["seconds"] + res["startup_s"])) / (
            base["images"] / (base["seconds"] + base["startup_s"]))
        print(f"ratio medspark/pool = {rate / base_rate:.2f} (target >= 0.8); with start-ups "
              f"{cold:.2f}; CPU per image pool/medspark = {base_cpu / (jvm_ms + py_ms):.2f}")

        ours, theirs = digests(work / "spark-out"), digests(work / "pool-out")
        same = sum(1 for k, v in ours.items() if theirs.get(k) == v)
        print(f"identical outputs: {same}/{len(theirs)} images ({len(ours)} from medspark)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
