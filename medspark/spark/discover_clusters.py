"""Clusters: MLlib KMeans / BisectingKMeans / GaussianMixture on the scaled features, k chosen by
silhouette over a range (and agreement across seeds), then profiled from Spark aggregates.

k is chosen on a stratified sample of at most `clusters.selection_rows` rows brought to the
driver, where scikit-learn's counterparts of the MLlib estimators are fitted for every k and
seed (said in the summary); the MLlib model with the chosen k is fitted on every row up to
`clusters.fit_rows` (else on a seeded sample of that many: its iterations hold the vectors in
memory) and assigns every row. Per-row
silhouettes (squared Euclidean, as MLlib's `ClusteringEvaluator`) and distances come from the
clusters' aggregates in one `mapInPandas` pass, so nothing per row reaches the driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.clustering import BisectingKMeans, GaussianMixture, KMeans
from pyspark.ml.functions import vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.discover import clusters as cstats
from medspark.discover import enrichment, fdr
from medspark.discover.config import ClusterSettings
from medspark.discover.ranks import GroupMoments
from medspark.spark import discover_bins
from medspark.spark.discover_input import GROUP, ID, LABEL, DiscoverInput

CLUSTER = "_cluster"
ASSIGNMENT_SCHEMA = T.StructType([
    T.StructField("id", T.StringType(), False),
    T.StructField("group_id", T.StringType(), True),
    T.StructField("cluster", T.IntegerType(), False),
    T.StructField("distance", T.DoubleType(), True),
    T.StructField("silhouette", T.DoubleType(), True),
])
CLUSTERS_SCHEMA = T.StructType([
    T.StructField("cluster", T.IntegerType(), False),
    T.StructField("algorithm", T.StringType(), False),
    T.StructField("k", T.IntegerType(), False),
    T.StructField("size", T.LongType(), False),
    T.StructField("share", T.DoubleType(), False),
    T.StructField("silhouette", T.DoubleType(), True),
    T.StructField("top_features", T.ArrayType(T.StructType([
        T.StructField("name", T.StringType()), T.StructField("smd", T.DoubleType())])), True),
    T.StructField("label_rate", T.DoubleType(), True),
    T.StructField("label_lift", T.DoubleType(), True),
    T.StructField("label_distribution", T.MapType(T.StringType(), T.LongType()), True),
    T.StructField("label_p_value", T.DoubleType(), True),
    T.StructField("label_q_value", T.DoubleType(), True),
    T.StructField("label_enriched", T.BooleanType(), True),
    T.StructField("metadata_mix", T.ArrayType(T.StructType([
        T.StructField("column", T.StringType()), T.StructField("value", T.StringType()),
        T.StructField("share", T.DoubleType()), T.StructField("lift", T.DoubleType())])), True),
])


@dataclass
class ClustersResult:
    table: pd.DataFrame
    assignments: DataFrame  # persisted; the caller writes and releases it
    summary: dict[str, Any]
    profile: pd.DataFrame  # clusters x features standardised mean differences (plots)


def _estimator(cfg: ClusterSettings, k: int, seed: int, features_col: str, pred: str):
    common = {"k": k, "seed": seed, "maxIter": cfg.max_iter, "featuresCol": features_col,
              "predictionCol": pred}
    if cfg.algorithm == "kmeans":
        return KMeans(**common)
    if cfg.algorithm == "bisecting_kmeans":
        return BisectingKMeans(**common)
    return GaussianMixture(**common, probabilityCol=f"{pred}_prob")


def choose_model(space: DataFrame, inp: DiscoverInput, cfg: ClusterSettings, vec: str,
                 seed: int) -> tuple[Any, cstats.KScore, list[cstats.KScore], dict[str, Any]]:
    """Choose k on a bounded stratified sample (scikit-learn fits on the driver, every k x
    seed), then fit the MLlib model with the chosen k and best seed on every row."""
    frac = min(1.0, 1.1 * cfg.selection_rows / max(inp.rows, 1))
    sample = space
    if frac < 1.0:
        sample = (space.sampleBy(LABEL, dict.fromkeys(inp.classes, frac), seed)
                  if inp.task == "classification" else space.sample(False, frac, seed))
    x = sample.select(vector_to_array(F.col(vec)).alias("x")).limit(cfg.selection_rows) \
        .toPandas()["x"]
    x = np.stack(x.to_numpy()) if len(x) else np.zeros((0, 1))
    ks = list(range(cfg.k_min, min(cfg.k_max, max(cfg.k_min, len(x) - 1)) + 1))
    seeds = [seed + s for s in range(cfg.seeds)]
    scores, best = cstats.select_k(x, cfg.algorithm, ks, seeds, cfg.max_iter)
    chosen = cstats.choose_k(scores, cfg.min_stability)
    fit_on, fitted_rows = space.select(vec), inp.rows
    if inp.rows > cfg.fit_rows:  # bounded: MLlib caches the vectors it iterates over
        fit_on = fit_on.sample(False, min(1.0, 1.05 * cfg.fit_rows / inp.rows),
                               seed + 1).limit(cfg.fit_rows)
        fitted_rows = cfg.fit_rows
    model = _estimator(cfg, chosen.k, best[chosen.k], vec, CLUSTER).fit(fit_on)
    sampled = len(x) < inp.rows or fitted_rows < inp.rows
    fit = (f"model fitted on all {inp.rows} rows" if fitted_rows == inp.rows else
           f"model fitted on a random sample of about {fitted_rows} rows; every row assigned")
    info = {"selection_rows": int(len(x)), "rows": inp.rows, "sampled": sampled,
            "fit_rows": int(fitted_rows),
            "sample": (f"k chosen on a stratified sample of {len(x)} of {inp.rows} rows, {fit}"
                       if len(x) < inp.rows else f"k chosen on all {inp.rows} rows, {fit}")}
    return model, chosen, scores, info


def _geometry(assigned: DataFrame, vec: str) -> cstats.ClusterGeometry:
    arr = vector_to_array(F.col(vec))
    rows = assigned.groupBy(CLUSTER).agg(
        F.count(F.lit(1)).alias("n"), Summarizer.mean(F.col(vec)).alias("mean"),
        F.avg(F.aggregate(arr, F.lit(0.0), lambda acc, x: acc + x * x)).alias("sq"),
    ).collect()
    k = max(r[CLUSTER] for r in rows) + 1
    dim = len(rows[0]["mean"])
    sizes, means, sq = np.zeros(k), np.zeros((k, dim)), np.zeros(k)
    for r in rows:
        c = r[CLUSTER]
        sizes[c], means[c], sq[c] = r["n"], r["mean"].toArray(), r["sq"]
    return cstats.ClusterGeometry(sizes, means, sq)


def _assign(assigned: DataFrame, vec: str, geo: cstats.ClusterGeometry) -> DataFrame:
    """id, group_id, cluster, distance (to the cluster mean), silhouette per row."""
    frame = assigned.select(F.col(ID), F.col(GROUP), F.col(CLUSTER).cast("int"),
                            vector_to_array(F.col(vec)).alias("_xa"))

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if pdf.empty:
                continue
            x = np.stack(pdf["_xa"].to_numpy()) if len(pdf) else np.zeros((0, 1))
            labels = pdf[CLUSTER].to_numpy().astype(int)
            dist = np.linalg.norm(x - geo.means[labels], axis=1)
            yield pd.DataFrame({"id": pdf[ID], "group_id": pdf[GROUP], "cluster": labels,
                                "distance": dist,
                                "silhouette": cstats.silhouettes(x, labels, geo)})

    return frame.mapInPandas(run, ASSIGNMENT_SCHEMA)


def clusters(space: DataFrame, inp: DiscoverInput, cfg: ClusterSettings, vec: str,
             level: float, seed: int) -> ClustersResult:
    """Choose k, fit, assign every row, profile every cluster."""
    model, chosen, scores, info = choose_model(space, inp, cfg, vec, seed)
    # not cached: predicting is a nearest-centre lookup per row, cheaper to redo in each of the
    # few passes below than to write (and hold) another table as wide as the feature space
    needed = [c for c in dict.fromkeys([ID, GROUP, LABEL, *inp.metadata, *inp.features, vec])
              if c in space.columns]
    assigned = model.transform(space.select(*needed)).withColumn(
        CLUSTER, F.col(CLUSTER).cast("int"))
    geo = _geometry(assigned, vec)
    assignments = _assign(assigned, vec, geo).persist(StorageLevel.MEMORY_AND_DISK)
    sil = {r["cluster"]: r for r in assignments.groupBy("cluster").agg(
        F.avg("silhouette").alias("s")).collect()}
    table, profile, label_summary = _profiles(assigned, inp, cfg, level, geo, sil, chosen.k)
    overall = float(np.nansum([sil[c]["s"] * geo.sizes[c] for c in sil]) / geo.sizes.sum())
    summary = {
        "algorithm": cfg.algorithm, "scaling": cfg.scaling, "pca_components": cfg.pca_components,
        "k": chosen.k, "silhouette": overall, "stability": _none(chosen.stability),
        "k_scores": [{"k": s.k, "silhouette": _none(s.silhouette),
                      "stability": _none(s.stability)} for s in scores],
        **info, **label_summary,
        "clusters": [_record(r) for r in table.to_dict("records")],
    }
    return ClustersResult(table, assignments, summary, profile)


def _none(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _record(r: dict) -> dict:
    out = {}
    for k, v in r.items():
        if isinstance(v, float):
            out[k] = _none(v)
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _profiles(assigned: DataFrame, inp: DiscoverInput, cfg: ClusterSettings, level: float,
              geo: cstats.ClusterGeometry, sil: dict, k: int
              ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    feats = inp.features
    mom = discover_bins.moments(discover_bins.melt(assigned, feats, [CLUSTER]), [CLUSTER])
    mom = mom.set_index([CLUSTER, discover_bins.J])
    present = [c for c in range(len(geo.sizes)) if geo.sizes[c] > 0]
    nan = GroupMoments(0.0, float("nan"), float("nan"))
    moments = [[GroupMoments(float(mom.at[(c, j), "n"]), _f(mom.at[(c, j), "mean"]),
                             _f(mom.at[(c, j), "var"])) if (c, j) in mom.index else nan
                for j in range(len(feats))] for c in present]
    smd = cstats.standardized_differences(moments)
    profile = pd.DataFrame(smd, index=present, columns=feats)
    total = float(geo.sizes.sum())
    rows = {c: {"cluster": int(c), "algorithm": cfg.algorithm, "k": int(k),
                "size": int(geo.sizes[c]), "share": float(geo.sizes[c] / total),
                "silhouette": _f(sil[c]["s"]) if c in sil else np.nan,
                "top_features": [{"name": n, "smd": v} for n, v in
                                 cstats.top_features(smd[i], feats, cfg.top_features)],
                "label_rate": np.nan, "label_lift": np.nan, "label_distribution": None,
                "label_p_value": np.nan}
            for i, c in enumerate(present)}
    label_summary: dict[str, Any] = {}
    if inp.task == "classification":
        counts = assigned.groupBy(CLUSTER, LABEL).count().toPandas()
        grid = counts.pivot_table(index=CLUSTER, columns=LABEL, values="count",
                                  fill_value=0).reindex(index=present, columns=inp.classes,
                                                        fill_value=0)
        pos = inp.classes.index(inp.positive) if inp.positive is not None else None
        for c, e in zip(present, enrichment.class_enrichment(grid.to_numpy(), pos), strict=True):
            rows[c] |= {"label_rate": e.rate, "label_lift": e.lift, "label_p_value": e.p_value,
                        "label_distribution": {str(k): int(v) for k, v in grid.loc[c].items()}}
        label_summary = {"label_positive": inp.positive}
    elif inp.task == "regression":
        lab = {r[CLUSTER]: r for r in assigned.groupBy(CLUSTER).agg(
            F.count(LABEL).alias("n"), F.avg(LABEL).alias("m"),
            F.var_samp(LABEL).alias("v")).collect()}
        groups = [GroupMoments(float(lab[c]["n"]), _f(lab[c]["m"]), _f(lab[c]["v"]))
                  for c in present]
        for c, e in zip(present, enrichment.mean_enrichment(groups), strict=True):
            rows[c] |= {"label_rate": e.rate, "label_lift": e.lift, "label_p_value": e.p_value}
    table = pd.DataFrame([rows[c] for c in present])
    table["label_q_value"] = fdr.bh_qvalues(table["label_p_value"])
    table["label_enriched"] = fdr.significant(table["label_q_value"], level) & (
        table["label_lift"].fillna(0) > 1)
    if inp.task is None:
        table["label_enriched"] = None
    mix = _metadata_mix(assigned, inp, cfg, present) if inp.metadata else {}
    table["metadata_mix"] = [mix.get(c) for c in present]
    return table[[f.name for f in CLUSTERS_SCHEMA.fields]], profile, label_summary


def _metadata_mix(assigned: DataFrame, inp: DiscoverInput, cfg: ClusterSettings,
                  present: list[int]) -> dict[int, list[dict]]:
    pairs = F.explode(F.array(*[F.struct(F.lit(m).alias("column"),
                                         F.coalesce(F.col(m), F.lit("(missing)")).alias("value"))
                                for m in inp.metadata]))
    pdf = (assigned.select(CLUSTER, pairs.alias("_p"))
           .groupBy(CLUSTER, "_p.column", "_p.value").count().toPandas())
    out: dict[int, list[dict]] = {c: [] for c in present}
    overall = pdf.groupby(["column", "value"])["count"].sum()
    col_total = pdf.groupby("column")["count"].sum()
    for (c, column), part in pdf.groupby([CLUSTER, "column"]):
        n = part["count"].sum()
        for _, r in part.sort_values("count", ascending=False).head(cfg.metadata_values).iterrows():
            share = r["count"] / n
            base = overall[(column, r["value"])] / col_total[column]
            out[int(c)].append({"column": column, "value": r["value"], "share": float(share),
                                "lift": float(share / base) if base else None})
    return out


def _f(v) -> float:
    return float("nan") if v is None or pd.isna(v) else float(v)
