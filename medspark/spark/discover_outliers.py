"""Outliers: a robust model fitted on a bounded sample (driver), broadcast and applied to every
row in `mapInPandas`; the top N rows (Spark's take-ordered) are explained by their features."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.discover.config import OutlierSettings
from medspark.discover.outliers import OutlierModel
from medspark.spark.discover_input import GROUP, ID, DiscoverInput

OUTLIERS_SCHEMA = T.StructType([
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("id", T.StringType(), False),
    T.StructField("group_id", T.StringType(), True),
    T.StructField("score", T.DoubleType(), False),
    T.StructField("p_value", T.DoubleType(), True),
    T.StructField("method", T.StringType(), False),
    T.StructField("drivers", T.ArrayType(T.StructType([
        T.StructField("feature", T.StringType()), T.StructField("z", T.DoubleType())])), True),
])
SCORED = T.StructType([T.StructField("_id", T.StringType()), T.StructField("_group",
                                                                          T.StringType()),
                       T.StructField("score", T.DoubleType())])


@dataclass
class OutliersResult:
    table: pd.DataFrame
    summary: dict[str, Any]


def outliers(inp: DiscoverInput, cfg: OutlierSettings, seed: int) -> OutliersResult:
    """Fit on <= `fit_rows` sampled rows, score all rows, keep the top `top_n`."""
    feats, stats = inp.features, inp.stats
    frac = min(1.0, 1.2 * cfg.fit_rows / max(inp.rows, 1))
    sample_df = inp.df if frac >= 1 else inp.df.sample(False, frac, seed)
    sample = sample_df.select(*feats).limit(cfg.fit_rows).toPandas().to_numpy(dtype=float)
    model = OutlierModel.fit(sample, feats, [stats.median[f] for f in feats],
                             [stats.iqr(f) for f in feats], cfg.method, seed, cfg.components)
    bc = inp.df.sparkSession.sparkContext.broadcast(model)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        m = bc.value
        for pdf in batches:
            if len(pdf):
                yield pd.DataFrame({"_id": pdf[ID], "_group": pdf[GROUP],
                                    "score": m.score(pdf[feats].to_numpy(dtype=float))})

    scored = inp.df.select(ID, GROUP, *feats).mapInPandas(run, SCORED)
    top = scored.orderBy(F.desc("score")).limit(cfg.top_n).toPandas()
    quant = scored.agg(F.percentile_approx("score", [0.5, 0.9, 0.99], 1000).alias("q"),
                       F.count(F.lit(1)).alias("n")).first()
    ids = top["_id"].tolist()
    rows = inp.df.where(F.col(ID).isin(ids)).select(ID, *feats).toPandas().drop_duplicates(ID)
    rows = rows.set_index(ID).reindex(ids)
    drivers = model.drivers(rows.to_numpy(dtype=float), cfg.drivers) if len(ids) else []
    table = pd.DataFrame({
        "rank": np.arange(1, len(top) + 1, dtype=int), "id": top["_id"],
        "group_id": top["_group"], "score": top["score"],
        "p_value": model.p_values(top["score"].to_numpy()), "method": cfg.method,
        "drivers": [[{"feature": n, "z": z} for n, z in d] for d in drivers]})
    bc.unpersist()
    summary = {
        "method": cfg.method, "n_scored": int(quant["n"]), "top_n": int(len(table)),
        "fit": f"fitted on a random sample of {len(sample)} of {inp.rows} rows",
        "sampled": len(sample) < inp.rows,
        "score_quantiles": dict(zip(["p50", "p90", "p99"], [float(v) for v in quant["q"]],
                                    strict=True)) if quant["q"] else None,
        "top": [{"rank": int(r["rank"]), "id": r["id"], "group_id": r["group_id"],
                 "score": float(r["score"]),
                 "drivers": [f"{d['feature']} ({d['z']:+.1f} SD)" for d in r["drivers"]]}
                for r in table.head(10).to_dict("records")],
    }
    if cfg.method == "mahalanobis":
        summary["components"] = int(len(model.components))
    return OutliersResult(table, summary)
