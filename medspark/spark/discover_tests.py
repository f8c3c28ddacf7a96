"""Feature tests (each feature against the label) and feature-feature correlations.

Classification: per class count/mean/variance (exact Spark aggregates) give Cohen's d and
Welch's t (ANOVA for more classes); per class counts over quantile bins give the Mann-Whitney
AUC, Cliff's delta and p-value (Kruskal-Wallis for more classes) without sorting the rows.
Regression: Spearman's rho as the Pearson correlation of bin mid-ranks. With a group column the
unit is the patient: one mean per patient (and label value for classification).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.discover import correlation, fdr, ranks
from medspark.discover.config import CorrelationSettings, TestSettings
from medspark.spark.discover_bins import (
    BIN,
    J,
    V,
    bin_counts,
    melt,
    moments,
    quantile_edges,
    with_bins,
)
from medspark.spark.discover_input import GROUP, LABEL, DiscoverInput

TESTS_SCHEMA = T.StructType([
    T.StructField("feature", T.StringType(), False),
    T.StructField("test", T.StringType(), False),
    T.StructField("unit", T.StringType(), False),
    T.StructField("n", T.LongType(), True),
    T.StructField("auc", T.DoubleType(), True),
    T.StructField("direction", T.StringType(), True),
    T.StructField("effect_size", T.DoubleType(), True),
    T.StructField("effect_measure", T.StringType(), True),
    T.StructField("rho", T.DoubleType(), True),
    T.StructField("mean_positive", T.DoubleType(), True),
    T.StructField("mean_negative", T.DoubleType(), True),
    T.StructField("p_value", T.DoubleType(), True),
    T.StructField("q_value", T.DoubleType(), True),
    T.StructField("significant", T.BooleanType(), True),
    T.StructField("rank", T.IntegerType(), True),
])
CORR_SCHEMA = T.StructType([
    T.StructField("feature_a", T.StringType(), False),
    T.StructField("feature_b", T.StringType(), False),
    T.StructField("r", T.DoubleType(), False),
    T.StructField("abs_r", T.DoubleType(), False),
    T.StructField("method", T.StringType(), False),
    T.StructField("group", T.IntegerType(), True),
])


@dataclass
class TestsResult:
    """The feature_tests table (pandas, one row per feature) and its headline."""

    __test__ = False

    table: pd.DataFrame
    summary: dict[str, Any]
    priority: dict[str, float] = field(default_factory=dict)  # |AUC - 0.5| or |rho|


def unit_frame(inp: DiscoverInput, patient_level: bool) -> tuple[DataFrame, str]:
    """Long rows `(_label, _j, _v)` the tests count: one per image and feature, or one mean
    per patient (and label value, for classification) and feature."""
    if not (patient_level and inp.has_group):
        return melt(inp.df, inp.features, [LABEL]), "image"
    long = melt(inp.df.where(F.col(GROUP).isNotNull()), inp.features, [GROUP, LABEL])
    if inp.task == "classification":
        return long.groupBy(GROUP, LABEL, J).agg(F.avg(V).alias(V)).drop(GROUP), "patient"
    return (long.groupBy(GROUP, J).agg(F.avg(LABEL).alias(LABEL), F.avg(V).alias(V))
            .drop(GROUP), "patient")


def feature_tests(inp: DiscoverInput, cfg: TestSettings, level: float) -> TestsResult:
    """One row per feature: test, effect, p, BH q, significant at `level`, rank."""
    units, unit = unit_frame(inp, cfg.patient_level)
    units = units.persist()
    try:
        if inp.task == "classification":
            rows = _classification(units, inp, cfg, unit)
        else:
            rows = _regression(units, inp, cfg, unit)
    finally:
        units.unpersist()
    table = pd.DataFrame(rows)
    table["q_value"] = fdr.bh_qvalues(table["p_value"])
    table["significant"] = fdr.significant(table["q_value"], level)
    strength = (table["auc"] - 0.5).abs() if inp.task == "classification" else table["rho"].abs()
    table = table.assign(_s=strength.fillna(-1)).sort_values(
        ["q_value", "_s"], ascending=[True, False], na_position="last").drop(columns="_s")
    table["rank"] = np.arange(1, len(table) + 1)
    priority = dict(zip(table["feature"], strength.reindex(table.index).fillna(0), strict=True))
    top = table.head(10)
    summary = {
        "unit": unit, "n_features": int(len(table)), "n_units": int(table["n"].max() or 0),
        "n_significant": int(table["significant"].sum()), "fdr": level,
        "method": str(table["test"].iloc[0]) if len(table) else None,
        "approximation": f"rank statistics over at most {cfg.bins} quantile bins per feature "
                         "(exact when a feature has fewer distinct values)",
        "top": [_clean(r) for r in top[["feature", "auc", "direction", "effect_size",
                                         "effect_measure", "rho", "p_value", "q_value",
                                         "significant"]].to_dict("records")],
    }
    return TestsResult(table, summary, priority)


def _clean(record: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else
                v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}


def _classification(units: DataFrame, inp: DiscoverInput, cfg: TestSettings,
                    unit: str) -> list[dict]:
    feats, classes, positive = inp.features, inp.classes, inp.positive
    mom = moments(units, [LABEL]).set_index([LABEL, J])
    binned = bin_counts(units, quantile_edges(units, len(feats), cfg.bins), LABEL)
    rows = []
    for j, f in enumerate(feats):
        groups = {c: ranks.GroupMoments(float(mom.at[(c, j), "n"]),
                                        _float_or_nan(mom.at[(c, j), "mean"]),
                                        _float_or_nan(mom.at[(c, j), "var"]))
                  for c in classes if (c, j) in mom.index}
        n = int(sum(g.n for g in groups.values()))
        row: dict[str, Any] = {"feature": f, "unit": unit, "n": n, "rho": np.nan}
        if positive is not None:
            neg = next(c for c in classes if c != positive)
            gp, gn = groups.get(positive), groups.get(neg)
            mw = ranks.mann_whitney_binned(binned.of(j, positive), binned.of(j, neg))
            d = ranks.cohen_d(gp, gn) if gp and gn else np.nan
            welch = ranks.welch_t(gp, gn) if gp and gn else ranks.TestResult(np.nan, np.nan)
            row |= {"auc": mw.auc, "mean_positive": gp.mean if gp else np.nan,
                    "mean_negative": gn.mean if gn else np.nan,
                    "direction": None if not np.isfinite(mw.auc) or mw.auc == 0.5 else
                    ("higher" if mw.auc > 0.5 else "lower")}
            if cfg.effect_size == "cohen_d":
                row |= {"effect_size": d, "effect_measure": "cohen_d"}
            else:
                row |= {"effect_size": mw.cliffs_delta, "effect_measure": "cliffs_delta"}
            if cfg.method == "mann_whitney":
                row |= {"test": "mann_whitney", "p_value": mw.p_value}
            else:
                row |= {"test": "welch_t", "p_value": welch.p_value}
        else:  # more than two classes
            counts = np.vstack([binned.of(j, c) for c in classes])
            kw = ranks.kruskal_binned(counts)
            row |= {"auc": np.nan, "direction": None, "mean_positive": np.nan,
                    "mean_negative": np.nan}
            n_all = counts.sum()
            row |= {"effect_size": kw.statistic / (n_all - 1) if n_all > 1 else np.nan,
                    "effect_measure": "epsilon_squared"}
            if cfg.method == "mann_whitney":
                row |= {"test": "kruskal_wallis", "p_value": kw.p_value}
            else:
                row |= {"test": "anova", "p_value": ranks.anova(list(groups.values())).p_value}
        rows.append(row)
    return rows


def _float_or_nan(v) -> float:
    return float("nan") if v is None or pd.isna(v) else float(v)


def _regression(units: DataFrame, inp: DiscoverInput, cfg: TestSettings,
                unit: str) -> list[dict]:
    """Spearman's rho: Pearson correlation of mid-ranks, ranks from quantile-bin counts."""
    feats = inp.features
    spark = units.sparkSession
    x_edges = quantile_edges(units, len(feats), cfg.bins)
    labels = units.where(F.col(J) == 0).select(F.lit(0).alias(J), F.col(LABEL).alias(V))
    y_edges = quantile_edges(labels, 1, cfg.bins)
    binned = with_bins(with_bins(units, x_edges), y_edges, value=LABEL, feature=None,
                       out="_ybin").where(F.col(BIN).isNotNull()).persist()
    try:
        x_counts = binned.groupBy(J, BIN).count().toPandas()
        y_counts = binned.where(F.col(J) == 0).groupBy("_ybin").count().toPandas()
        lookup = []
        for j, part in x_counts.groupby(J):
            totals = np.zeros(len(x_edges[int(j)]) + 1)
            np.add.at(totals, part[BIN].to_numpy(dtype=int), part["count"].to_numpy())
            lookup += [(int(j), b, float(r)) for b, r in enumerate(ranks.midranks(totals))]
        y_tot = np.zeros(len(y_edges[0]) + 1)
        np.add.at(y_tot, y_counts["_ybin"].to_numpy(dtype=int), y_counts["count"].to_numpy())
        x_rank = spark.createDataFrame(lookup, f"{J} int, {BIN} int, _xr double")
        y_rank = spark.createDataFrame([(b, float(r)) for b, r in
                                        enumerate(ranks.midranks(y_tot))], "_ybin int, _yr double")
        res = {int(r[J]): r for r in binned.join(F.broadcast(x_rank), [J, BIN])
               .join(F.broadcast(y_rank), "_ybin").groupBy(J)
               .agg(F.corr("_xr", "_yr").alias("rho"), F.count(F.lit(1)).alias("n")).collect()}
    finally:
        binned.unpersist()
    rows = []
    for j, f in enumerate(feats):
        r = res.get(j)
        rho = _float_or_nan(r["rho"]) if r else np.nan
        n = int(r["n"]) if r else 0
        rows.append({"feature": f, "test": "spearman", "unit": unit, "n": n, "auc": np.nan,
                     "direction": None if not np.isfinite(rho) or rho == 0 else
                     ("higher" if rho > 0 else "lower"),
                     "effect_size": rho, "effect_measure": "spearman_rho", "rho": rho,
                     "mean_positive": np.nan, "mean_negative": np.nan,
                     "p_value": ranks.spearman_p(rho, n)})
    return rows


# ------------------------------------------------------------------------- correlations
@dataclass
class CorrelationResult:
    matrix: np.ndarray
    names: list[str]
    groups: list[int]
    table: pd.DataFrame
    summary: dict[str, Any]


def correlations(spark: SparkSession, vectors: DataFrame, vector_col: str, names: list[str],
                 cfg: CorrelationSettings) -> CorrelationResult:
    """MLlib `Correlation.corr` over the (median-imputed) feature vectors, strong pairs and
    complete-linkage redundancy groups."""
    from pyspark.ml.stat import Correlation

    matrix = Correlation.corr(vectors, vector_col, cfg.method).first()[0].toArray()
    groups = correlation.redundancy_groups(matrix, names, cfg.threshold)
    pairs = correlation.strong_pairs(matrix, names, cfg.threshold)
    index = {n: i for i, n in enumerate(names)}
    table = pd.DataFrame(
        [{"feature_a": p.feature_a, "feature_b": p.feature_b, "r": p.r, "abs_r": abs(p.r),
          "method": cfg.method,
          "group": groups[index[p.feature_a]]
          if groups[index[p.feature_a]] == groups[index[p.feature_b]] else None}
         for p in pairs], columns=[f.name for f in CORR_SCHEMA.fields])
    members: dict[int, list[str]] = {}
    for n, g in zip(names, groups, strict=True):
        members.setdefault(g, []).append(n)
    redundant = [m for m in members.values() if len(m) > 1]
    summary = {"method": cfg.method, "threshold": cfg.threshold, "n_pairs": len(pairs),
               "n_groups": len(redundant), "n_features": len(names),
               "n_independent": len(members),
               "groups": sorted(redundant, key=len, reverse=True)[:20]}
    return CorrelationResult(matrix, names, groups, table, summary)
