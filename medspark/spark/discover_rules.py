"""Association rules with MLlib FPGrowth over items made from every row.

Items: a feature's lowest or highest quantile bin (`glcm_Contrast=Q1`, `=Q4`; cut points from
the shared approximate quantiles; middle bins only with `rules.middle_bins`: they are rarely a
finding and multiply the itemsets), a metadata value (`modality=CT`) and the label (`label=1`;
a numeric label by its quartile, every bin). Only one feature per redundancy group becomes
items, the most label-related first, at most `rules.max_features`: FPGrowth's itemsets grow
combinatorially with correlated items.
Rules whose consequent is the label are ranked apart; redundant rules are pruned; each rule
gets a one-sided binomial p-value and a BH q-value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml.fpm import FPGrowth
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.discover import enrichment, fdr
from medspark.discover import rules as rstats
from medspark.discover.config import RuleSettings
from medspark.spark.discover_input import LABEL, DiscoverInput

COLLECT_LIMIT = 50_000  # rules collected for pruning (by lift) per group
RULES_SCHEMA = T.StructType([
    T.StructField("antecedent", T.ArrayType(T.StringType()), False),
    T.StructField("consequent", T.ArrayType(T.StringType()), False),
    T.StructField("support", T.DoubleType(), False),
    T.StructField("confidence", T.DoubleType(), False),
    T.StructField("lift", T.DoubleType(), True),
    T.StructField("n_rows", T.LongType(), False),
    T.StructField("label_rule", T.BooleanType(), False),
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("p_value", T.DoubleType(), True),
    T.StructField("q_value", T.DoubleType(), True),
])


@dataclass
class RulesResult:
    table: pd.DataFrame
    summary: dict[str, Any]


def _bin_item(column: str, cuts: list[float], name: str | None = None,
              middle: bool = True) -> Column:
    """`name=Q<i>` for the quantile bin of `column` (bins are (cut_i-1, cut_i]); without
    `middle` only the lowest and the highest bin are items (null otherwise)."""
    x, name = F.col(column), name or column
    expr = None
    for i, cut in enumerate(cuts):
        item = F.lit(rstats.bin_item(name, i)) if middle or i == 0 else F.lit(None)
        expr = F.when(x <= cut, item) if expr is None else expr.when(x <= cut, item)
    last = F.lit(rstats.bin_item(name, len(cuts)))
    missing = x.isNull() | F.isnan(x) | (F.abs(x) == float("inf"))
    return F.when(missing, None).otherwise(expr.otherwise(last) if expr is not None else last)


def item_frame(inp: DiscoverInput, features: list[str], label_cuts: list[float] | None,
               middle_bins: bool = False) -> DataFrame:
    """One `items` array per row."""
    stats = inp.stats
    items = [_bin_item(f, sorted(set(stats.rule_cuts[f])), middle=middle_bins)
             for f in features]
    items += [F.when(F.col(m).isNotNull(), F.concat(F.lit(f"{m}="), F.col(m)))
              for m in inp.metadata]
    if inp.task == "classification":
        items.append(F.concat(F.lit(inp.label_items()), F.col(LABEL)))
    elif inp.task == "regression" and label_cuts:
        items.append(_bin_item(LABEL, label_cuts, inp.label_col))
    arr = F.array_distinct(F.filter(F.array(*items), lambda x: x.isNotNull()))
    return inp.df.select(arr.alias("items"))


def association_rules(inp: DiscoverInput, cfg: RuleSettings, features: list[str],
                      level: float) -> RulesResult:
    """FPGrowth rules, pruned and ranked (label rules apart)."""
    label_cuts = None
    if inp.task == "regression":
        q = inp.df.approxQuantile(LABEL, [i / cfg.bins for i in range(1, cfg.bins)], 0.001)
        label_cuts = sorted(set(q))
    items = item_frame(inp, features, label_cuts, cfg.middle_bins)
    model = FPGrowth(itemsCol="items", minSupport=cfg.min_support,
                     minConfidence=cfg.min_confidence).fit(items)
    rules = model.associationRules.where(F.size("antecedent") <= cfg.max_antecedent)
    prefix = inp.label_items()
    is_label = (F.size("consequent") == 1) & F.col("consequent")[0].startswith(prefix)
    # label items only as consequents: "label=1 -> x" restates a cluster or test profile
    rules = rules.withColumn("label_rule", is_label).where(
        ~F.exists("antecedent", lambda x: x.startswith(prefix))).persist()
    try:
        n_total = {r["label_rule"]: r["count"]
                   for r in rules.groupBy("label_rule").count().collect()}
        if sum(n_total.values()) <= COLLECT_LIMIT:
            found = rules.toPandas()
        else:  # the rules of highest lift in each group
            found = pd.concat([rules.where(F.col("label_rule") == flag).orderBy(
                F.desc("lift"), F.desc("confidence")).limit(COLLECT_LIMIT).toPandas()
                for flag in (True, False)], ignore_index=True)
    finally:
        rules.unpersist()
    frames = [_prune_rank(found[found["label_rule"] == flag], cfg, inp.rows)
              for flag in (True, False)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        table = pd.DataFrame(columns=[f.name for f in RULES_SCHEMA.fields])
    else:
        table["q_value"] = fdr.bh_qvalues(table["p_value"])
    label_rules = table[table["label_rule"].astype(bool)]
    summary = {
        "items_from_features": features, "items_from_metadata": inp.metadata,
        "min_support": cfg.min_support, "min_confidence": cfg.min_confidence,
        "n_rules_found": int(sum(n_total.values())), "n_rules": int(len(table)),
        "n_label_rules": int(len(label_rules)),
        "top_label_rules": _records(label_rules.head(10)),
        "top_rules": _records(table[~table["label_rule"].astype(bool)].head(10)),
    }
    if sum(n_total.values()) > COLLECT_LIMIT:
        summary["truncated"] = f"only the {COLLECT_LIMIT} rules of highest lift per group pruned"
    return RulesResult(table[[f.name for f in RULES_SCHEMA.fields]], summary)


def _prune_rank(part: pd.DataFrame, cfg: RuleSettings, rows: int) -> pd.DataFrame:
    if part.empty:
        return part
    rules = [rstats.Rule(tuple(a), tuple(c), float(s), float(conf), float(lift))
             for a, c, s, conf, lift in part[["antecedent", "consequent", "support",
                                               "confidence", "lift"]].itertuples(index=False)]
    kept = rstats.prune_redundant(rules)
    kept.sort(key=lambda r: (-r.lift, -r.confidence, -r.support, r.antecedent))
    kept = kept[:cfg.max_rules]
    label_rule = bool(part["label_rule"].iloc[0])
    out = []
    for i, r in enumerate(kept):
        n_rule = r.support * rows
        base = r.confidence / r.lift if r.lift else np.nan
        out.append({"antecedent": list(r.antecedent), "consequent": list(r.consequent),
                    "support": r.support, "confidence": r.confidence, "lift": r.lift,
                    "n_rows": int(round(n_rule)), "label_rule": label_rule, "rank": i + 1,
                    "p_value": enrichment.rule_p_value(n_rule, n_rule / r.confidence, base)})
    return pd.DataFrame(out)


def _records(df: pd.DataFrame) -> list[dict]:
    cols = ["antecedent", "consequent", "support", "confidence", "lift", "n_rows", "q_value"]
    out = []
    for r in df[cols].to_dict("records"):
        out.append({k: (list(v) if k in ("antecedent", "consequent") else
                        None if isinstance(v, float) and not np.isfinite(v) else
                        v.item() if isinstance(v, np.generic) else v) for k, v in r.items()})
    return out
