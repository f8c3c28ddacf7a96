"""Trends: per period (and per scanner/modality stratum) image counts, feature medians and IQRs
and the label rate (Spark `percentile_approx` per group); per series a Theil-Sen slope and a
Mann-Kendall test, BH q-values over every series tested."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.discover import fdr
from medspark.discover.config import TrendSettings
from medspark.discover.trend import trend_test
from medspark.spark.discover_bins import J, V, melt
from medspark.spark.discover_input import DATE, LABEL, DiscoverInput

ALL = "all"
LABEL_SERIES = "label_rate"
TRENDS_SCHEMA = T.StructType([
    T.StructField("period", T.DateType(), False),
    T.StructField("split", T.StringType(), False),
    T.StructField("stratum", T.StringType(), False),
    T.StructField("n_images", T.LongType(), False),
    T.StructField("label_rate", T.DoubleType(), True),
    T.StructField("feature", T.StringType(), False),
    T.StructField("n", T.LongType(), True),
    T.StructField("median", T.DoubleType(), True),
    T.StructField("q1", T.DoubleType(), True),
    T.StructField("q3", T.DoubleType(), True),
    T.StructField("iqr", T.DoubleType(), True),
])
TESTS_SCHEMA = T.StructType([
    T.StructField("split", T.StringType(), False),
    T.StructField("stratum", T.StringType(), False),
    T.StructField("feature", T.StringType(), False),
    T.StructField("n_periods", T.IntegerType(), False),
    T.StructField("slope", T.DoubleType(), True),
    T.StructField("slope_low", T.DoubleType(), True),
    T.StructField("slope_high", T.DoubleType(), True),
    T.StructField("relative_slope", T.DoubleType(), True),
    T.StructField("tau", T.DoubleType(), True),
    T.StructField("p_value", T.DoubleType(), True),
    T.StructField("q_value", T.DoubleType(), True),
    T.StructField("trending", T.BooleanType(), True),
    T.StructField("direction", T.StringType(), True),
])
PERIOD_UNIT = {"day": "DAY", "week": "WEEK", "month": "MONTH", "quarter": "QUARTER",
               "year": "YEAR"}


@dataclass
class TrendsResult:
    trends: pd.DataFrame
    tests: pd.DataFrame
    summary: dict[str, Any]


def period_index(periods: pd.Series, period: str) -> np.ndarray:
    """Periods since the first one (time axis of the slopes: 'per period')."""
    d = pd.to_datetime(periods)
    if period in ("month", "quarter", "year"):
        months = d.dt.year * 12 + d.dt.month
        per = {"month": 1, "quarter": 3, "year": 12}[period]
        return ((months - months.min()) / per).to_numpy(dtype=float)
    days = (d - d.min()).dt.days.to_numpy(dtype=float)
    return days / 7.0 if period == "week" else days


def _strata(inp: DiscoverInput, cfg: TrendSettings) -> dict[str, list[str]]:
    """Values of each split column with enough rows (most frequent first)."""
    out: dict[str, list[str]] = {}
    for col in cfg.split_by:
        if col not in inp.metadata:
            continue
        rows = (inp.df.where(F.col(col).isNotNull() & F.col(DATE).isNotNull())
                .groupBy(col).count().where(F.col("count") >= cfg.min_rows_per_stratum)
                .orderBy(F.desc("count")).limit(cfg.max_strata).collect())
        if len(rows) > 1:  # one value is the same series as `all`
            out[col] = [r[col] for r in rows]
    return out


def trends(inp: DiscoverInput, cfg: TrendSettings, level: float) -> TrendsResult:
    """The trends and trend_tests tables."""
    strata = _strata(inp, cfg)
    pairs = [F.struct(F.lit(ALL).alias("split"), F.lit(ALL).alias("stratum"))]
    pairs += [F.when(F.col(c).isin(v), F.struct(F.lit(c).alias("split"),
                                                F.col(c).alias("stratum")))
              for c, v in strata.items()]
    feats = inp.features
    keys = ["period", "split", "stratum"]
    base = inp.df.where(F.col(DATE).isNotNull()).select(
        F.to_date(F.date_trunc(PERIOD_UNIT[cfg.period], F.col(DATE))).alias("period"),
        F.explode(F.filter(F.array(*pairs), lambda s: s.isNotNull())).alias("_s"),
        (_label_value(inp) if inp.task else F.lit(None).cast("double")).alias("_y"), *feats,
    ).select("period", "_s.split", "_s.stratum", "_y", *feats)
    periods = base.groupBy(*keys).agg(F.count(F.lit(1)).alias("n_images"),
                                      F.avg("_y").alias("label_rate")).toPandas()
    quant = (melt(base, feats, keys).where(F.col(V).isNotNull()).groupBy(*keys, J)
             .agg(F.count(V).alias("n"),
                  F.percentile_approx(V, [0.25, 0.5, 0.75], 1000).alias("q")).toPandas())
    records = []
    merged = quant.merge(periods, on=keys, how="left")
    for r in merged.to_dict("records"):
        q = r["q"]
        records.append({"period": r["period"], "split": r["split"], "stratum": r["stratum"],
                        "n_images": int(r["n_images"]), "label_rate": r["label_rate"],
                        "feature": feats[int(r[J])], "n": int(r["n"]), "median": q[1],
                        "q1": q[0], "q3": q[2], "iqr": q[2] - q[0]})
    table = pd.DataFrame(records, columns=[f.name for f in TRENDS_SCHEMA.fields])
    table = table.sort_values(["split", "stratum", "feature", "period"], ignore_index=True)
    tests = _tests(table, inp, cfg, level)
    n_periods = int(table.loc[table["split"] == ALL, "period"].nunique()) if len(table) else 0
    summary = {"period": cfg.period, "n_periods": n_periods,
               "strata": {k: v for k, v in strata.items()},
               "n_series": int(len(tests)), "n_trending": int(tests["trending"].sum()),
               "top": _top(tests)}
    if n_periods < cfg.min_periods:
        summary["note"] = f"{n_periods} periods: a series needs {cfg.min_periods} to be tested"
    return TrendsResult(table, tests, summary)


def _label_value(inp: DiscoverInput):
    if inp.task == "classification" and inp.positive is not None:
        return (F.col(LABEL) == inp.positive).cast("double")
    if inp.task == "regression":
        return F.col(LABEL)
    return F.lit(None).cast("double")


def _tests(table: pd.DataFrame, inp: DiscoverInput, cfg: TrendSettings,
           level: float) -> pd.DataFrame:
    rows = []
    enough = table[table["n"] >= cfg.min_rows_per_period]
    series = [(k, part[["period", "median"]].rename(columns={"median": "y"}))
              for k, part in enough.groupby(["split", "stratum", "feature"])]
    periods = table[table["n_images"] >= cfg.min_rows_per_period].drop_duplicates(
        ["split", "stratum", "period"])
    if inp.task and periods["label_rate"].notna().any():
        series += [((s, st, LABEL_SERIES), part[["period", "label_rate"]].rename(
            columns={"label_rate": "y"})) for (s, st), part in periods.groupby(["split",
                                                                                "stratum"])]
    for (split, stratum, feature), part in series:
        part = part.sort_values("period")
        if len(part) < cfg.min_periods:
            continue
        res = trend_test(period_index(part["period"], cfg.period), part["y"].to_numpy(float))
        scale = (inp.stats.iqr(feature) if feature in inp.features else
                 float(np.nanstd(part["y"])) or np.nan)
        rows.append({"split": split, "stratum": stratum, "feature": feature,
                     "n_periods": res.n_periods, "slope": res.slope, "slope_low": res.slope_low,
                     "slope_high": res.slope_high,
                     "relative_slope": res.slope / scale if scale else np.nan,
                     "tau": res.tau, "p_value": res.p_value})
    out = pd.DataFrame(rows, columns=[f.name for f in TESTS_SCHEMA.fields])
    out["q_value"] = fdr.bh_qvalues(out["p_value"].to_numpy(float))
    out["trending"] = fdr.significant(out["q_value"], level)
    out["direction"] = np.where(out["slope"] > 0, "up", np.where(out["slope"] < 0, "down",
                                                                  "flat"))
    return out.sort_values(["q_value", "p_value"], na_position="last", ignore_index=True)


def _top(tests: pd.DataFrame) -> list[dict]:
    top = tests[tests["trending"]].head(10)
    cols = ["split", "stratum", "feature", "slope", "relative_slope", "p_value", "q_value",
            "direction", "n_periods"]
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in top[cols].to_dict("records")]
