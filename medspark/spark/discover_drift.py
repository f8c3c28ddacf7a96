"""Drift: the newest batch against the earlier ones, per feature (PSI, KS), per metadata column
(PSI, chi-square, unseen values) and, when a model is named, its score distribution (scores
read from `predictions/model=<id>/`, the latest per row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.discover import drift as dstats
from medspark.discover import fdr
from medspark.discover.config import DriftSettings
from medspark.jsonable import finite
from medspark.lake import Lake, table_of
from medspark.spark.discover_bins import J, V, bin_counts, melt, quantile_edges
from medspark.spark.discover_input import ID, IN_BATCH, DiscoverInput

SCORE = "_score"
DRIFT_SCHEMA = T.StructType([
    T.StructField("kind", T.StringType(), False),
    T.StructField("name", T.StringType(), False),
    T.StructField("batch", T.StringType(), False),
    T.StructField("reference", T.StringType(), False),
    T.StructField("n_batch", T.LongType(), False),
    T.StructField("n_reference", T.LongType(), False),
    T.StructField("reference_median", T.DoubleType(), True),
    T.StructField("batch_median", T.DoubleType(), True),
    T.StructField("shift_sd", T.DoubleType(), True),
    T.StructField("psi", T.DoubleType(), True),
    T.StructField("ks_statistic", T.DoubleType(), True),
    T.StructField("p_value", T.DoubleType(), True),
    T.StructField("q_value", T.DoubleType(), True),
    T.StructField("drifted", T.BooleanType(), True),
    T.StructField("new_values", T.ArrayType(T.StringType()), True),
])


@dataclass
class DriftResult:
    table: pd.DataFrame
    summary: dict[str, Any]


def model_scores(spark: SparkSession, lake: Lake, model: str, id_col: str) -> DataFrame | None:
    """`_id`, latest score of each row `model` scored (None when the lake has none)."""
    table = table_of("predictions", model)
    if not lake.exists(table):
        return None
    preds = lake.read(spark, table)
    if id_col not in preds.columns or "score" not in preds.columns:
        return None
    return (preds.groupBy(F.col(id_col).cast("string").alias(ID))
            .agg(F.max_by("score", "run_date").alias(SCORE)))


def drift(spark: SparkSession, inp: DiscoverInput, cfg: DriftSettings, level: float,
          lake: Lake) -> DriftResult:
    """The drift table (features, metadata mix, model scores)."""
    # only what drift reads: the cached input may also carry the feature space's vectors
    df = inp.df.where(F.col(IN_BATCH).isNotNull()).select(
        ID, IN_BATCH, *inp.features, *inp.metadata)
    names = list(inp.features)
    score_note = None
    scored = False
    if cfg.model:
        scores = model_scores(spark, lake, cfg.model, inp.id_col)
        if scores is None:
            score_note = (f"no predictions of model {cfg.model} by {inp.id_col} in "
                          f"{lake.path(table_of('predictions', cfg.model))}")
        else:
            df = df.join(scores, ID, "left")
            names.append(SCORE)
            scored = True
    n = {r[IN_BATCH]: r["count"] for r in df.groupBy(IN_BATCH).count().collect()}
    n_batch, n_ref = int(n.get(True, 0)), int(n.get(False, 0))
    batch, reference = ", ".join(inp.batch["batch"]), inp.batch["reference"]
    if min(n_batch, n_ref) < cfg.min_rows:
        return DriftResult(pd.DataFrame(columns=[f.name for f in DRIFT_SCHEMA.fields]), {
            "batch": batch, "reference": reference, "n_batch": n_batch, "n_reference": n_ref,
            "skipped": (f"no rows before batch {batch}" if n_ref == 0 else
                        f"batch and reference need {cfg.min_rows} rows each")})
    # the input is cached already; the join with the model's scores is not
    if scored:
        df = df.persist(StorageLevel.DISK_ONLY)
    # on disk: the long form has a row per value (100M at 1M rows x 100 features)
    long = melt(df, names, [IN_BATCH]).persist(StorageLevel.DISK_ONLY)
    try:
        binned = bin_counts(long, quantile_edges(long, len(names), cfg.ks_bins), IN_BATCH)
        mom = {(bool(r[IN_BATCH]), int(r[J])): r for r in long.groupBy(IN_BATCH, J).agg(
            F.percentile_approx(V, 0.5, 1000).alias("median"), F.avg(V).alias("mean"),
            F.stddev_samp(V).alias("sd")).collect()}
        rows = []
        for j, f in enumerate(names):
            res = dstats.feature_drift(binned.of(j, False), binned.of(j, True), cfg.bins)
            ref, new = mom.get((False, j)), mom.get((True, j))
            sd = ref["sd"] if ref else None
            shift = ((new["mean"] - ref["mean"]) / sd if sd and new and new["mean"] is not None
                     else np.nan)
            rows.append({"kind": "score" if f == SCORE else "feature",
                         "name": f"{cfg.model}" if f == SCORE else f,
                         "n_batch": int(binned.of(j, True).sum()),
                         "n_reference": int(binned.of(j, False).sum()),
                         "reference_median": ref["median"] if ref else np.nan,
                         "batch_median": new["median"] if new else np.nan, "shift_sd": shift,
                         "psi": res.psi, "ks_statistic": res.ks_statistic,
                         "p_value": res.p_value, "new_values": None})
        rows += _metadata_rows(df, inp)
    finally:
        long.unpersist()
        if scored:
            df.unpersist()
    table = pd.DataFrame(rows)
    table["batch"], table["reference"] = batch, reference
    table["q_value"] = fdr.bh_qvalues(table["p_value"].to_numpy(float))
    sig = fdr.significant(table["q_value"], level)
    unseen = table["new_values"].map(lambda v: bool(v))
    table["drifted"] = (sig & (table["psi"].fillna(0) >= cfg.psi_threshold)) | unseen
    table = table.sort_values(["drifted", "psi"], ascending=[False, False], ignore_index=True)
    drifted = table[table["drifted"]]
    summary = {
        "batch": batch, "reference": reference, "n_batch": n_batch, "n_reference": n_ref,
        "psi_threshold": cfg.psi_threshold, "fdr": level,
        "n_features": int((table["kind"] == "feature").sum()),
        "n_drifted_features": int((drifted["kind"] == "feature").sum()),
        "drifted": [finite(r) for r in drifted[
            ["kind", "name", "psi", "ks_statistic", "q_value", "shift_sd",
             "new_values"]].head(20).to_dict("records")],
        "approximation": f"KS over {cfg.ks_bins} pooled quantile bins, PSI over {cfg.bins} "
                         "reference-quantile bins",
    }
    if score_note:
        summary["score_note"] = score_note
    return DriftResult(table[[f.name for f in DRIFT_SCHEMA.fields]], summary)


def _metadata_rows(df: DataFrame, inp: DiscoverInput) -> list[dict]:
    if not inp.metadata:
        return []
    pairs = F.explode(F.array(*[F.struct(F.lit(m).alias("column"),
                                         F.coalesce(F.col(m), F.lit("(missing)")).alias("value"))
                                for m in inp.metadata]))
    pdf = (df.select(IN_BATCH, pairs.alias("_p")).groupBy(IN_BATCH, "_p.column", "_p.value")
           .count().toPandas())
    rows = []
    for column, part in pdf.groupby("column"):
        grid = part.pivot_table(index="value", columns=IN_BATCH, values="count", fill_value=0)
        ref = grid[False].to_numpy() if False in grid.columns else np.zeros(len(grid))
        new = grid[True].to_numpy() if True in grid.columns else np.zeros(len(grid))
        res = dstats.category_drift([str(v) for v in grid.index], ref, new)
        rows.append({"kind": "metadata", "name": column, "n_batch": int(new.sum()),
                     "n_reference": int(ref.sum()), "reference_median": np.nan,
                     "batch_median": np.nan, "shift_sd": np.nan, "psi": res.psi,
                     "ks_statistic": np.nan, "p_value": res.p_value,
                     "new_values": res.new_values or None})
    return rows

