"""The discover job: what a lake's features (or any Parquet table) say, as tables and a summary.

    discoveries/<kind>/run_date=<d>/input=<name>/   kinds: clusters, cluster_assignments,
        association_rules, feature_tests, feature_correlations, trends, trend_tests, drift,
        outliers (docs/discover.md: columns)
    discoveries/run_date=<d>/summary.json           headline findings, every input of the day
    discoveries/run_date=<d>/plots/<name>/*.png     cluster profiles, k choice, tests, trends,
                                                    drift
    _runs/<run_id>.json                             counts per analysis, what was sampled

Every analysis is Spark work over all rows (MLlib, SQL aggregates, approximate quantiles);
what reaches the driver is bounded by features, bins, clusters, periods or a stated sample.
A re-run for the same run date and input replaces exactly that partition of every kind.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.feature import PCA, RobustScaler, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark import jsonable
from medspark.config import Settings
from medspark.discover import correlation
from medspark.discover import plots as dplots
from medspark.discover import summary as dsummary
from medspark.discover.request import DiscoverRequest
from medspark.lake import Lake, read_text, write_bytes
from medspark.spark import (
    discover_clusters,
    discover_drift,
    discover_outliers,
    discover_rules,
    discover_tests,
    discover_trends,
)
from medspark.spark.discover_bins import finite
from medspark.spark.discover_input import DiscoverInput, prepare
from medspark.spark.runs import JobRun, job_run

log = logging.getLogger(__name__)
DISCOVERIES = "discoveries"
RAW, SCALED, PCA_COL = "_raw", "_x", "_pca"
KINDS = ("clusters", "cluster_assignments", "association_rules", "feature_tests",
         "feature_correlations", "trends", "trend_tests", "drift", "outliers")


# ------------------------------------------------------------------------------- writing
def write_discovery(spark: SparkSession, lake: Lake, frame: DataFrame | pd.DataFrame,
                    kind: str, schema: T.StructType, run_date: dt.date, name: str,
                    run_id: str) -> dict[str, Any]:
    """Replace the (run_date, input) partition of the Delta table `discoveries/<kind>` with
    `frame` in one commit (the one writer of discovery tables); returns the commit."""
    df = frame if isinstance(frame, DataFrame) else _spark_frame(spark, frame, schema)
    if isinstance(frame, pd.DataFrame):
        df = df.coalesce(1)
    df = df.select(*schema.fieldNames(), F.lit(run_date).alias("run_date"),
                   F.lit(name).alias("input"))
    table = f"{DISCOVERIES}/{kind}"
    partition = {"run_date": run_date.isoformat(), "input": name}
    result = lake.write_table(spark, df, table, run_id, "discover",
                              partition_by=["run_date", "input"], keys=[],
                              replace_where=partition)
    return {"table": lake.path(table), "partition": partition, **result.as_dict()}


def _spark_value(value: Any, dtype: T.DataType) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(dtype, T.DateType) and isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(dtype, T.IntegerType | T.LongType) and isinstance(value, float):
        return int(value)  # pandas turns an int column with gaps into floats
    if isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, T.StructType):
        return [{k: _spark_value(v, dtype.elementType[k].dataType) for k, v in item.items()}
                for item in value]
    return value


def _spark_frame(spark: SparkSession, pdf: pd.DataFrame, schema: T.StructType) -> DataFrame:
    """A bounded pandas table as a Spark frame of `schema` (NaN -> null)."""
    fields = schema.fields
    rows = [tuple(_spark_value(rec.get(f.name), f.dataType) for f in fields)
            for rec in pdf.to_dict("records")]
    return spark.createDataFrame(rows, schema)






# --------------------------------------------------------------------------- feature space
def feature_space(inp: DiscoverInput, settings_clusters, need_scaled: bool) -> DataFrame:
    """The input plus `_raw` (median-imputed feature vector), `_x` (scaled, clipped to
    +-`clip`) and `_pca`."""
    feats, med = inp.features, inp.stats.median
    medians = F.array(*[F.lit(float(med[f])) for f in feats])
    values = F.transform(F.array(*[F.col(f) for f in feats]), lambda x, i: F.coalesce(
        finite(x), F.element_at(medians, i + 1)))
    df = inp.df.withColumn(RAW, array_to_vector(values))
    if need_scaled:
        if settings_clusters.scaling == "robust":
            scaler = RobustScaler(inputCol=RAW, outputCol=SCALED, withCentering=True,
                                  withScaling=True)
        else:
            scaler = StandardScaler(inputCol=RAW, outputCol=SCALED, withMean=True,
                                    withStd=True)
        df = scaler.fit(df).transform(df)
        clip = settings_clusters.clip
        if clip:
            df = df.withColumn(SCALED, array_to_vector(F.transform(
                vector_to_array(F.col(SCALED)),
                lambda x: F.greatest(F.lit(-clip), F.least(F.lit(clip), x)))))
        k = settings_clusters.pca_components
        if k:
            df = PCA(k=min(k, len(feats)), inputCol=SCALED, outputCol=PCA_COL).fit(
                df).transform(df)
    return df


# ----------------------------------------------------------------------------------- run
def run_discover(spark: SparkSession, settings: Settings, request: DiscoverRequest) -> dict:
    """Run every enabled analysis; write the tables, summary, plots and run manifest."""
    lake = Lake(request.lake)
    with job_run(lake, "discover") as run:
        return _run(spark, settings, request, lake, run)


def _run(spark: SparkSession, settings: Settings, request: DiscoverRequest, lake: Lake,
         run: JobRun) -> dict:
    run_id, cfg = run.run_id, settings.discover
    run_date = cfg.run_date or dt.datetime.now(dt.UTC).date()
    timings: dict[str, float] = {}
    t0 = time.time()
    inp = prepare(spark, request, cfg)
    timings["prepare"] = round(time.time() - t0, 3)
    name = inp.name
    log.info("discover %s: %s, %d rows x %d features", run_id, name, inp.rows,
             len(inp.features))
    entry: dict[str, Any] = {
        "input": name, "run_id": run_id, "source": inp.source, "rows": inp.rows,
        "groups": inp.groups, "n_features": len(inp.features), "metadata": inp.metadata,
        "label": inp.label_col if inp.task else None, "task": inp.task,
        "classes": inp.classes, "positive": inp.positive, "dropped": inp.dropped,
        "skipped": {}, "plots": {}}
    outputs: dict[str, Any] = {}
    pngs: dict[str, bytes | None] = {}
    counts: dict[str, Any] = {"rows": inp.rows, "features": len(inp.features)}

    def write(frame, kind: str, schema: T.StructType) -> None:
        t = time.time()
        outputs[kind] = write_discovery(spark, lake, frame, kind, schema, run_date, name,
                                        run_id)
        timings["writes"] = round(timings.get("writes", 0.0) + time.time() - t, 3)

    def timed(key: str, fn):
        t = time.time()
        try:
            return fn()
        finally:
            timings[key] = round(time.time() - t, 3)

    def skip(analysis: str, reason: str) -> None:
        entry["skipped"][analysis] = reason

    clusters_on, corr_on = cfg.clusters.enabled, cfg.correlations.enabled
    rules_need_corr = cfg.rules.enabled and len(inp.features) > cfg.rules.max_features
    space = None
    try:
        if clusters_on or corr_on or rules_need_corr:
            t = time.time()
            # on disk (the page cache serves it): the input plus three vectors per row is
            # 3-4x the table, and its in-memory column batches ran a 2 GiB driver out of heap
            # at 1M rows x 100 features
            space = feature_space(inp, cfg.clusters, clusters_on).persist(
                StorageLevel.DISK_ONLY)
            space.count()  # cached before the frame it derives from is released
            inp.df.unpersist()
            inp.df = space  # one cached frame from here on
            timings["feature_space"] = round(time.time() - t, 3)

        tests = None
        if cfg.tests.enabled:
            if inp.task is None:
                skip("tests", "no label with two or more values")
            else:
                tests = timed("tests", lambda: discover_tests.feature_tests(
                    inp, cfg.tests, cfg.fdr))
                write(tests.table, "feature_tests", discover_tests.TESTS_SCHEMA)
                entry["tests"] = tests.summary
                counts["feature_tests"] = {"features": len(tests.table),
                                           "significant": tests.summary["n_significant"]}
                pngs["feature_tests"] = dplots.feature_tests(tests.table)

        corr = None
        if corr_on or rules_need_corr:
            corr = timed("correlations", lambda: discover_tests.correlations(
                spark, space, RAW, inp.features, cfg.correlations))
            if corr_on:
                write(corr.table, "feature_correlations", discover_tests.CORR_SCHEMA)
                entry["correlations"] = corr.summary
                counts["feature_correlations"] = {"pairs": len(corr.table),
                                                  "groups": corr.summary["n_groups"]}

        if clusters_on:
            vec = PCA_COL if cfg.clusters.pca_components else SCALED
            res = timed("clusters", lambda: discover_clusters.clusters(
                space, inp, cfg.clusters, vec, cfg.fdr, cfg.seed))
            try:
                write(res.table, "clusters", discover_clusters.CLUSTERS_SCHEMA)
                write(res.assignments, "cluster_assignments",
                      discover_clusters.ASSIGNMENT_SCHEMA)
            finally:
                res.assignments.unpersist()
            entry["clusters"] = res.summary
            counts["clusters"] = {"k": res.summary["k"], "rows_assigned": inp.rows,
                                  "selection_rows": res.summary["selection_rows"]}
            shares = dict(zip(res.table["cluster"], res.table["share"], strict=True))
            pngs["cluster_profiles"] = dplots.cluster_profiles(res.profile, shares)
            pngs["k_selection"] = dplots.k_selection(res.summary["k_scores"])

        if cfg.rules.enabled:
            feats = _rule_features(inp, cfg.rules.max_features, corr, tests)
            res = timed("rules", lambda: discover_rules.association_rules(
                inp, cfg.rules, feats, cfg.fdr))
            write(res.table, "association_rules", discover_rules.RULES_SCHEMA)
            entry["rules"] = res.summary
            counts["association_rules"] = {"rules": res.summary["n_rules"],
                                           "label_rules": res.summary["n_label_rules"]}

        if cfg.trends.enabled:
            if not inp.has_date:
                skip("trends", f"no date column ({cfg.date_col!r} not in the input)")
            else:
                res = timed("trends", lambda: discover_trends.trends(inp, cfg.trends, cfg.fdr))
                write(res.trends, "trends", discover_trends.TRENDS_SCHEMA)
                write(res.tests, "trend_tests", discover_trends.TESTS_SCHEMA)
                entry["trends"] = res.summary
                counts["trends"] = {"series": res.summary["n_series"],
                                    "trending": res.summary["n_trending"],
                                    "periods": res.summary["n_periods"]}
                pngs["trends"] = dplots.trends(res.trends, res.tests)

        if cfg.drift.enabled:
            if inp.batch is None:
                skip("drift", f"no batch column ({cfg.batch_col!r} not in the input)")
            else:
                res = timed("drift", lambda: discover_drift.drift(
                    spark, inp, cfg.drift, cfg.fdr, lake))
                write(res.table, "drift", discover_drift.DRIFT_SCHEMA)
                entry["drift"] = res.summary
                counts["drift"] = {k: res.summary.get(k) for k in
                                   ("n_batch", "n_reference", "n_drifted_features")}
                pngs["drift"] = dplots.drift(res.table, cfg.drift.psi_threshold)

        if cfg.outliers.enabled:
            res = timed("outliers", lambda: discover_outliers.outliers(
                inp, cfg.outliers, cfg.seed))
            write(res.table, "outliers", discover_outliers.OUTLIERS_SCHEMA)
            entry["outliers"] = res.summary
            counts["outliers"] = {"scored": res.summary["n_scored"],
                                  "written": res.summary["top_n"]}
    finally:
        inp.release()

    day_dir = f"{lake.path(DISCOVERIES)}/run_date={run_date.isoformat()}"
    if cfg.plots:
        for key, png in pngs.items():
            if png:
                rel = f"plots/{name}/{key}.png"
                write_bytes(f"{day_dir}/{rel}", png)
                entry["plots"][key] = rel
    entry["headlines"] = dsummary.headlines(entry)
    entry["timings_s"] = timings
    old = read_text(f"{day_dir}/summary.json")
    doc = dsummary.merge(json.loads(old) if old else None, run_date.isoformat(),
                         jsonable.finite(entry))
    write_bytes(f"{day_dir}/summary.json", json.dumps(doc, indent=2, default=str).encode())
    outputs["summary"] = f"{day_dir}/summary.json"
    sampled = {k: v for k, v in {
        "clusters": (entry.get("clusters") or {}).get("sample"),
        "outliers": (entry.get("outliers") or {}).get("fit"),
        "feature_tests": (entry.get("tests") or {}).get("approximation"),
        "drift": (entry.get("drift") or {}).get("approximation"),
    }.items() if v}
    return run.manifest(spark, settings, counts, outputs, input=name, source=inp.source,
                        run_date=run_date.isoformat(),
                        dates=[d.isoformat() for d in request.dates], sampled=sampled,
                        skipped=entry["skipped"], timings_s=timings,
                        headlines=entry["headlines"])


def _rule_features(inp: DiscoverInput, n: int, corr, tests) -> list[str]:
    """One feature per redundancy group, the most label-related (else first) first."""
    names = inp.features
    groups = corr.groups if corr is not None else list(range(len(names)))
    if tests is not None:
        prio = [float(tests.priority.get(f, 0.0)) for f in names]
    else:
        prio = [-float(i) for i in range(len(names))]
    return correlation.representatives(groups, names, prio)[:n]


