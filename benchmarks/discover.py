"""`medspark discover` at scale: each analysis' time, and driver memory as rows grow.

For every size (default 100k and 1M rows) a fresh child process (fresh JVM) generates a table
in Spark (`spark.range` + `rand`/`randn` columns: F numeric features, a few informative for a
binary label, a 15% subgroup shifted on 5 features, 5 images per patient, 24 months of dates,
6 batches with a drift in the newest, two categorical columns), writes it as Parquet, then runs
`run_discover` on it with every analysis on, and reports the manifest's per-analysis timings and
the driver's memory: the Python driver's peak RSS (what medspark itself holds: collected
aggregates and bounded samples) and the driver JVM's peak RSS. In local mode the driver JVM is
also the executor, so its RSS includes Spark's task memory and cached blocks; on a cluster that
lives in the executors.

    .venv/bin/python benchmarks/discover.py --rows 100000,1000000 --features 100
    .venv/bin/python benchmarks/discover.py --rows 100000,200000 --features 100   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANALYSES = ("prepare", "feature_space", "tests", "correlations", "clusters", "rules", "trends",
            "drift", "outliers", "writes")


def _vm(pid: int | str, key: str) -> float | None:
    """VmHWM / VmRSS of a process in MiB (Linux), None elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def make_table(spark, path: str, rows: int, features: int, seed: int = 0) -> None:
    """The synthetic table, generated and written by Spark (nothing through the driver)."""
    from pyspark.sql import functions as F

    df = spark.range(rows).withColumn("patient", (F.col("id") / 5).cast("long"))
    df = df.withColumn("_sub", F.rand(seed) < 0.15).withColumn(
        "batch", (F.col("id") % 6).cast("int")).withColumn(
        "study_date", F.date_add(F.lit("2023-01-01").cast("date"),
                                 (F.col("id") % 730).cast("int")))
    cols = []
    for i in range(features):
        x = F.randn(seed + 1 + i)
        if i < 5:  # the subgroup's profile
            x = x + F.when(F.col("_sub"), 3.0).otherwise(0.0)
        if i == 10:  # drift in the newest batch
            x = x + F.when(F.col("batch") == 5, 1.0).otherwise(0.0)
        if i == 11:  # a slow upward trend
            x = x + F.datediff("study_date", F.lit("2023-01-01")) / 365.0
        cols.append(x.alias(f"f{i:03d}"))
    df = df.select("id", "patient", "batch", "study_date", "_sub", *cols)
    logit = sum(F.col(f"f{i:03d}") * w for i, w in zip(range(5, 10), (1.5, -1.0, 0.8, 0.6,
                                                                       -0.5), strict=True))
    df = df.withColumn("label", ((logit + F.randn(seed + 999)) > 0).cast("int"))
    df = df.withColumn("site", F.when(F.rand(seed + 7) < 0.6, "A").otherwise("B"))
    df = df.withColumn("scanner", F.when(F.col("site") == "A", "X").when(
        F.rand(seed + 8) < 0.5, "Y").otherwise("Z"))
    (df.drop("_sub").withColumn("id", F.col("id").cast("string"))
     .withColumn("patient", F.col("patient").cast("string"))
     .withColumn("batch", F.concat(F.lit("b"), F.col("batch").cast("string")))
     .write.mode("overwrite").parquet(path))


def child(rows: int, features: int, workdir: Path) -> dict:
    from medspark.config import load_settings
    from medspark.discover.request import DiscoverRequest
    from medspark.session import build_session
    from medspark.spark.discover import run_discover

    settings = load_settings(None, [
        "spark.log_level=ERROR", "discover.id_col=id", "discover.group_col=patient",
        "discover.label=label", "discover.date_col=study_date", "discover.batch_col=batch",
        "discover.trends.split_by=[scanner]", "discover.run_date=2026-01-01"])
    spark = build_session(settings.spark)
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    table = str(workdir / f"table-{rows}")
    t0 = time.time()
    marker = workdir / f"table-{rows}.done"  # a kept --workdir keeps its tables
    if not marker.exists():
        make_table(spark, table, rows, features)
        marker.write_text(f"{rows} rows x {features} features\n")
    generate_s = time.time() - t0
    request = DiscoverRequest(lake=str(workdir / f"lake-{rows}"), table=table)
    request.validate(settings.discover)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.time()
    manifest = run_discover(spark, settings, request)
    out = {
        "rows": rows, "features": features, "generate_s": round(generate_s, 1),
        "discover_s": round(time.time() - t0, 1), "timings_s": manifest["timings_s"],
        "python_driver_peak_rss_mib": round(resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python_driver_peak_rss_before_mib": round(rss_before, 1),
        "jvm_driver_peak_rss_mib": _vm(jvm_pid, "VmHWM"),
        "counts": manifest["counts"], "sampled": manifest["sampled"],
        "headlines": manifest["headlines"],
    }
    spark.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    ap.add_argument("--features", type=int, default=100)
    ap.add_argument("--workdir", help="keep tables and lakes here (default: a temp folder)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-discover-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.rows.split(",")]
    if args.child:
        print("RESULT " + json.dumps(child(sizes[0], args.features, work), default=str))
        return 0
    results = []
    try:
        for n in sizes:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", "--rows", str(n), "--features",
                 str(args.features), "--workdir", str(work)],
                capture_output=True, text=True, env={**os.environ,
                                                     "PYTHONPATH": str(Path(__file__).parents[1])})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
                return 1
            results.append(json.loads(line[len("RESULT "):]))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"medspark discover, {args.features} features, local mode")
    print(f"{'rows':>22}" + "".join(f"{r['rows']:>12,}" for r in results))
    for key in ANALYSES:
        print(f"{key + ' (s)':>22}" + "".join(
            f"{r['timings_s'].get(key, float('nan')):>12.1f}" for r in results))
    print(f"{'total discover (s)':>22}" + "".join(f"{r['discover_s']:>12.1f}" for r in results))
    print(f"{'Python driver RSS MiB':>22}" + "".join(
        f"{r['python_driver_peak_rss_mib']:>12.0f}" for r in results))
    print(f"{'JVM driver RSS MiB':>22}" + "".join(
        f"{(r['jvm_driver_peak_rss_mib'] or float('nan')):>12.0f}" for r in results))
    for r in results:
        print(f"\n{r['rows']:,} rows: sampled: {json.dumps(r['sampled'])}")
        for h in r["headlines"]:
            print(f"  {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
