"""The morning report's figures, aggregated in Spark from the lake (never rows on the driver).

The figures describe the night as the lake holds it (rows of `ingest_date = <date>`, tonight's
predictions), not the last run's counters, so the report of a night that was killed and
resumed, or re-run, shows the whole night.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import Settings
from medspark.lake import Lake, table_of
from medspark.report import (
    DataSection,
    Distribution,
    FeatureDrift,
    FilesSection,
    Histogram,
    ImagesSection,
    Metric,
    ModelSection,
    NightSummary,
    QualitySection,
    QuarantineReason,
    RiskRow,
    Stage,
    TrendPoint,
    flag_drift,
    history_from_reports,
    load_discovery,
)

ERROR_COLUMNS = {"preprocessed": "preprocess_error", "features": "feature_error"}


def night_summary(spark: SparkSession, settings: Settings, lake: Lake, date: dt.date,
                  state: dict[str, Any], manifests: dict[str, dict[str, Any]]) -> NightSummary:
    """Everything the report shows about one night."""
    from medspark.spark.imaging import feature_set_hash, pipeline_hash

    cfg = settings.nightly
    tables = {"features": table_of("features", feature_set_hash(settings)),
              "preprocessed": table_of("preprocessed", pipeline_hash(settings))}
    step_errors = _step_errors(spark, lake, tables, date)
    files = _files(spark, lake, date, manifests.get("ingest"), cfg.examples_per_reason)
    images = _images(spark, lake, date)
    stages = [Stage(name=s["name"], status=s["status"] if s["status"] != "pending" else "ok",
                    reason=s.get("reason"), duration_s=s.get("duration_s"),
                    counts={k: v for k, v in (s.get("counts") or {}).items()
                            if isinstance(v, int) and not isinstance(v, bool)},
                    throughput=_throughput(s), outputs=_outputs(s.get("outputs") or {}))
              for s in state["stages"] if s["name"] != "report"]
    history = history_from_reports(f"{lake.root}/reports", before=date)
    return NightSummary(
        date=date, lake=lake.root, attention=list(state["attention"]),
        run_id=state["run_id"], started_at=state["started_at"],
        finished_at=dt.datetime.now(dt.UTC), config_hash=state["config_hash"],
        versions={k: v for k, v in state["versions"].items() if v},
        stages=stages, files=files, images=images,
        quality=QualitySection(trend=_trend(lake, date, files, images, step_errors),
                               step_errors=step_errors),
        data=_drift(spark, lake, tables["features"], date, cfg),
        model=_model(spark, lake, manifests.get("predict"), date, cfg.top_risk),
        discovery=load_discovery(f"{lake.root}/discoveries/run_date={date.isoformat()}"),
        history=history,
    )


def _throughput(stage: dict[str, Any]) -> float | None:
    counts, seconds = stage.get("counts") or {}, stage.get("duration_s") or 0
    n = next((counts.get(k) for k in ("images", "rows", "predicted", "files_processed")
              if isinstance(counts.get(k), int)), None)
    return round(n / seconds, 2) if n and seconds else None


def _outputs(outputs: dict[str, Any]) -> list[str]:
    out = []
    for name, o in outputs.items():
        if isinstance(o, dict) and o.get("version") is not None:
            out.append(f"{os.path.basename(str(o.get('table', name)))}@v{o['version']}")
    return out


def _day(df: DataFrame, date: dt.date, column: str = "ingest_date") -> DataFrame:
    return df.where(F.col(column) == F.lit(date))


def _files(spark: SparkSession, lake: Lake, date: dt.date, ingest: dict[str, Any] | None,
           examples: int) -> FilesSection | None:
    if not lake.exists("catalog") and not lake.exists("quarantine"):
        return None
    new = 0
    reasons: list[QuarantineReason] = []
    if lake.exists("catalog"):
        new += _day(lake.read(spark, "catalog"), date).select("source_path").distinct().count()
    if lake.exists("quarantine"):
        q = _day(lake.read(spark, "quarantine"), date)
        rows = (q.groupBy("error_class").agg(
            F.countDistinct("source_path").alias("n"),
            F.slice(F.sort_array(F.collect_set(F.coalesce("source_relpath", "source_path"))),
                    1, examples).alias("examples"))
            .orderBy(F.desc("n")).limit(100).collect())
        reasons = [QuarantineReason(reason=r["error_class"], count=r["n"],
                                    examples=list(r["examples"])) for r in rows]
        new += sum(r.count for r in reasons)
    counts = (ingest or {}).get("counts", {})
    listed = int(counts.get("files_listed", new))
    unaccounted = 0 if counts.get("all_files_accounted", True) else max(
        0, counts.get("files_processed", 0) - counts.get("files_cataloged", 0)
        - counts.get("files_quarantined", 0))
    return FilesSection(listed=max(listed, new), new=new,
                        skipped_already_ingested=max(0, listed - new), quarantined=reasons,
                        unaccounted=unaccounted)


def _images(spark: SparkSession, lake: Lake, date: dt.date) -> ImagesSection | None:
    if not lake.exists("catalog"):
        return None
    planes = _day(lake.read(spark, "catalog"), date).where(F.col("plane_index").isNotNull()) \
        .dropDuplicates(["image_id"])
    per = {}
    for col in ("modality", "body_part"):
        per[col] = {(r[col] or "unknown"): r["count"] for r in
                    planes.groupBy(col).count().orderBy(F.desc("count")).limit(50).collect()}
    total = sum(per["modality"].values())
    sizes = planes.where(F.col("series_pseudo_uid").isNotNull()).groupBy(
        "series_pseudo_uid").count().groupBy(F.col("count").alias("planes")).count() \
        .orderBy("planes").limit(10_000).collect()
    hist = None
    if sizes:
        values = np.array([r["planes"] for r in sizes], dtype=float)
        weights = np.array([r["count"] for r in sizes], dtype=float)
        edges = np.histogram_bin_edges(values, bins=min(20, len(values)) or 1)
        if edges[0] == edges[-1]:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
        counts, edges = np.histogram(values, bins=edges, weights=weights)
        hist = Histogram(edges=edges.tolist(), counts=counts.tolist())
    return ImagesSection(total=total, per_modality=per["modality"],
                         per_body_part=per["body_part"], planes_per_series=hist)


def _step_errors(spark: SparkSession, lake: Lake, tables: dict[str, str], date: dt.date
                 ) -> dict[str, int]:
    """Tonight's images that failed a step, by step and reason."""
    from medspark.spark.runs import count_by, reason_of

    out: dict[str, int] = {}
    for family, table in tables.items():
        if lake.exists(table):
            col = ERROR_COLUMNS[family]
            rows = _day(lake.read(spark, table), date).select(reason_of(col).alias("reason"))
            for reason, n in count_by(rows, "reason").items():
                out[f"{family}: {reason}"] = n
    return out


def _trend(lake: Lake, date: dt.date, files: FilesSection | None,
           images: ImagesSection | None, step_errors: dict[str, int]) -> list[TrendPoint]:
    """Quarantine and step-error counts of the last 30 nights (their reports' summaries),
    tonight's from the lake."""
    points = []
    for path in sorted(glob.glob(f"{lake.root}/reports/*/summary.json")):
        try:
            with open(path) as fh:
                doc = json.load(fh)
            day = dt.date.fromisoformat(doc["date"])
        except (OSError, ValueError, KeyError):
            continue
        if day >= date or (date - day).days > 30:
            continue
        quarantined = sum(q.get("count", 0) for q in (doc.get("files") or {}).get(
            "quarantined", []))
        errors = sum(((doc.get("quality") or {}).get("step_errors") or {}).values())
        points.append(TrendPoint(date=day, quarantined=quarantined, step_errors=errors,
                                 images=(doc.get("images") or {}).get("total")))
    points.append(TrendPoint(
        date=date, quarantined=sum(q.count for q in files.quarantined) if files else 0,
        step_errors=sum(step_errors.values()), images=images.total if images else None))
    return points


def _drift(spark: SparkSession, lake: Lake, table: str, date: dt.date, cfg
           ) -> DataSection | None:
    """Tonight's feature distributions against the previous nights': histograms on edges
    from the reference's approximate quantiles, binned KS, BH q values, flags."""
    from medspark.features import feature_names

    if not lake.exists(table):
        return None
    rows = lake.read(spark, table)
    names = [n for n in feature_names(None) if n in rows.columns] or [
        f.name for f in rows.schema.fields if f.dataType.typeName() == "double"]
    start = date - dt.timedelta(days=cfg.reference_nights)
    ref = rows.where((F.col("ingest_date") < F.lit(date)) & (F.col("ingest_date") >= F.lit(
        start)))
    tonight = _day(rows, date)
    clean = [F.when(~F.isnan(n), F.col(n).cast("double")).alias(n) for n in names]
    ref, tonight = ref.select(*clean), tonight.select(*clean)
    n_ref, n_tonight = ref.count(), tonight.count()
    if n_tonight == 0:
        return DataSection(reference=f"the previous {cfg.reference_nights} nights",
                           method="no features tonight")
    probs = list(np.linspace(0, 1, cfg.drift_bins + 1))
    base = ref if n_ref else tonight
    quantiles = base.approxQuantile(names, probs, 0.001)
    drifts = []
    for name, q in zip(names, quantiles, strict=True):
        edges = np.unique(np.asarray(q, dtype=float))
        if edges.size < 2:
            continue
        drifts.append((name, edges))
    if not drifts:
        return None

    def counts(df: DataFrame, n: int) -> dict[str, list[float]]:
        """Rows per bin of every feature, in one pass: MLlib's Bucketizer (a binary search per
        value) on all columns, the (feature, bin) pairs stacked and counted."""
        if n == 0:
            return {}
        from pyspark.ml.feature import Bucketizer

        splits = [[-float("inf"), *edges[1:-1].tolist(), float("inf")] for _, edges in drifts]
        names = [name for name, _ in drifts]
        binned = Bucketizer(splitsArray=splits, inputCols=names,
                            outputCols=[f"_b{i}" for i in range(len(names))],
                            handleInvalid="keep").transform(df)
        pairs = binned.select(F.explode(F.array(*[
            F.struct(F.lit(i).alias("f"), F.col(f"_b{i}").alias("b"))
            for i in range(len(names))])).alias("p")).select("p.f", "p.b")
        got = pairs.groupBy("f", "b").count().collect()  # features x bins rows
        out = {name: [0.0] * (len(edges) - 1) for name, edges in drifts}
        for r in got:
            name, edges = drifts[r["f"]]
            # a null value bins to null, a NaN to the extra last bucket of "keep": neither counts
            if r["b"] is not None and r["b"] < len(edges) - 1:
                out[name][int(r["b"])] += float(r["count"])
        return out

    c_ref, c_tonight = counts(ref, n_ref), counts(tonight, n_tonight)
    stats = _medians(tonight, ref, [n for n, _ in drifts], n_ref)
    features = []
    for name, edges in drifts:
        t_hist = Histogram(edges=edges.tolist(), counts=c_tonight[name])
        r_hist = Histogram(edges=edges.tolist(), counts=c_ref[name]) if c_ref else None
        features.append(FeatureDrift(
            feature=name,
            tonight=Distribution(n=n_tonight, histogram=t_hist, **stats["tonight"][name]),
            previous=Distribution(n=n_ref, histogram=r_hist, **stats["ref"][name])
            if r_hist else None))
    flagged = flag_drift(features, fdr=cfg.drift_fdr, min_ks=cfg.drift_min_ks)
    flagged.sort(key=lambda f: (not f.flagged, -(f.ks_statistic or 0)))
    return DataSection(
        reference=f"the previous {cfg.reference_nights} nights ({n_ref} rows)",
        method=f"binned two-sample KS on {cfg.drift_bins} quantile bins of the reference, "
               f"Benjamini-Hochberg q <= {cfg.drift_fdr} and KS >= {cfg.drift_min_ks} "
               f"(of {len(flagged)} features, the {cfg.drift_features} shown first)",
        features=flagged[:cfg.drift_features])


def _medians(tonight: DataFrame, ref: DataFrame, names: list[str], n_ref: int
             ) -> dict[str, dict[str, dict[str, float | None]]]:
    out: dict[str, dict[str, dict[str, float | None]]] = {"tonight": {}, "ref": {}}
    for side, df in (("tonight", tonight), ("ref", ref)):
        if side == "ref" and not n_ref:
            out["ref"] = {n: {} for n in names}
            continue
        qs = df.approxQuantile(names, [0.25, 0.5, 0.75], 0.001)
        for name, q in zip(names, qs, strict=True):
            out[side][name] = {"median": q[1], "q1": q[0], "q3": q[2]} if q else {}
    return out


def _model(spark: SparkSession, lake: Lake, predict: dict[str, Any] | None, date: dt.date,
           top: int) -> ModelSection | None:
    if not predict:
        return None
    model_id = predict["model_id"]
    table = table_of("predictions", model_id)
    model_dir = f"{lake.path('models')}/{model_id}"
    meta, metrics = {}, {}
    for name, target in (("metadata.json", meta), ("metrics.json", metrics)):
        try:
            with open(os.path.join(model_dir, name)) as fh:
                target.update(json.load(fh))
        except (OSError, ValueError):
            pass
    validation = {k: Metric(value=v.get("value"), ci_low=v.get("ci_low"),
                            ci_high=v.get("ci_high"), n_boot_used=v.get("n_boot_used"),
                            labels=v.get("labels"))
                  for k, v in (metrics.get("test") or {}).items()
                  if isinstance(v, dict) and "value" in v}
    section = ModelSection(model_id=model_id, task=meta.get("task"),
                           trained_at=meta.get("created_at"), validation_metrics=validation)
    if not lake.exists(table):
        return section
    preds = _day(lake.read(spark, table), date, "run_date")
    label = "predicted_label" if "predicted_label" in preds.columns else "prediction"
    classes = {str(r[label]): r["count"] for r in preds.groupBy(label).count().collect()}
    section.predictions = sum(classes.values())
    section.class_counts = classes if meta.get("task") == "classification" else {}
    if section.predictions:
        lo, hi = preds.agg(F.min("score"), F.max("score")).first()
        lo, hi = (0.0, 1.0) if meta.get("task") == "classification" else (lo, hi)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, 21)
        bucket = F.least(F.lit(19), F.greatest(F.lit(0), F.floor(
            (F.col("score") - F.lit(lo)) / F.lit((edges[-1] - lo) / 20)).cast("int")))
        by = {r["b"]: r["count"] for r in preds.groupBy(bucket.alias("b")).count().collect()}
        section.score_histogram = Histogram(edges=edges.tolist(),
                                            counts=[float(by.get(b, 0)) for b in range(20)])
        section.score_name = f"P({label} = {meta['labels'][-1]})" \
            if meta.get("task") == "classification" and meta.get("labels") else "score"
        section.highest_risk = _risk(spark, lake, preds, meta, label, top)
    return section


def _risk(spark: SparkSession, lake: Lake, preds: DataFrame, meta: dict[str, Any], label: str,
          top: int) -> list[RiskRow]:
    """The series with the highest score tonight (pseudonymous ids only)."""
    key = meta.get("key_col", "image_id")
    if key == "series_pseudo_uid" or key not in preds.columns:
        rows = preds.withColumnRenamed(key, "series_pseudo_uid") if key in preds.columns \
            else preds
        info = None
    else:
        info = lake.read(spark, "catalog").select(
            F.col("image_id").alias(key), "series_pseudo_uid", "modality", "body_part") \
            .dropDuplicates([key])
        rows = preds.join(info, key, "left")
    if "series_pseudo_uid" not in rows.columns:
        return []
    if info is None:
        info = lake.read(spark, "catalog").select("series_pseudo_uid", "modality", "body_part") \
            .dropDuplicates(["series_pseudo_uid"])
        rows = rows.join(info, "series_pseudo_uid", "left")
    best = rows.where(F.col("series_pseudo_uid").isNotNull()).groupBy("series_pseudo_uid").agg(
        F.max("score").alias("score"), F.max_by(label, "score").alias("predicted"),
        F.first("modality").alias("modality"), F.first("body_part").alias("body_part"))
    return [RiskRow(series_id=r["series_pseudo_uid"], score=float(r["score"]),
                    predicted=None if r["predicted"] is None else str(r["predicted"]),
                    modality=r["modality"], body_part=r["body_part"])
            for r in best.orderBy(F.desc("score")).limit(top).collect()]
