"""Model selection speed: medspark train (MLlib RandomForest, grouped CV) vs scikit-learn.

Generates a table of N rows x F numeric features (default 100k x 100; rows grouped into
patients, binary label from a few informative features plus noise) as Parquet, then in one run:

1. medspark: `run_train` on a local[2] session with one RandomForestClassifier candidate and a
   maxDepth grid, K-fold CV grouped by patient, refit on the training split, held-out metrics
   (JVM start timed apart);
2. scikit-learn: `GridSearchCV(RandomForestClassifier, same grid, GroupKFold(K), n_jobs=2)`
   on the same training rows, refit, held-out AUC;

and prints both times and their ratio. Both use the same number of trees, depths and folds;
the forests are different implementations, so the AUCs are printed to show both learned.

    .venv/bin/python benchmarks/train.py --rows 100000 --features 100
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TREES, DEPTHS, FOLDS, TEST_SIZE, SEED = 30, [4, 8], 3, 0.2, 0


def make_table(path: Path, rows: int, features: int, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float64)
    logit = x[:, :5] @ np.array([1.5, -1.0, 0.8, 0.6, -0.5]) + 0.5 * x[:, 5] * x[:, 6]
    label = (logit + rng.normal(scale=1.0, size=rows) > 0).astype(int)
    table = pd.DataFrame(x, columns=[f"f{i:03d}" for i in range(features)])
    table.insert(0, "row_id", np.arange(rows).astype(str))
    table.insert(1, "patient", (np.arange(rows) // 5).astype(str))  # 5 rows per patient
    table["label"] = label
    table.to_parquet(path, index=False)
    return table


def run_medspark(table: Path, lake: Path) -> dict:
    from medspark.config import load_settings
    from medspark.session import build_session
    from medspark.spark.train import run_train

    overrides = [
        "spark.master=local[2]", "spark.log_level=ERROR", "train.label=label",
        "train.id_col=row_id", "train.group_col=patient", "train.aggregate=none",
        "train.features=[f*]", f"train.test_size={TEST_SIZE}", f"train.seed={SEED}",
        "train.n_boot=100", f"train.selection.folds={FOLDS}",
        "train.selection.metric=roc_auc",
        "train.selection.candidates=[{algorithm: RandomForestClassifier, params: "
        f"{{numTrees: {TREES}, seed: {SEED}}}, grid: {{maxDepth: {DEPTHS}}}}}]",
    ]
    settings = load_settings(None, overrides)
    start = time.perf_counter()
    spark = build_session(settings.spark, conf={"spark.ui.enabled": "false",
                                                "spark.ui.showConsoleProgress": "false",
                                                "spark.driver.memory": "4g"})
    spark.range(1).count()
    jvm_s = time.perf_counter() - start
    start = time.perf_counter()
    manifest = run_train(spark, settings, str(lake), table=str(table))
    seconds = time.perf_counter() - start
    spark.stop()
    return {"seconds": seconds, "jvm_start_s": jvm_s, "best": manifest["best"],
            "test_auc": manifest["test_metrics"].get("roc_auc"),
            "test_patients": manifest["split"]}


def run_sklearn(table: pd.DataFrame) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from medspark.models.splits import train_test_split_grouped

    split = train_test_split_grouped(table, "patient", "label", TEST_SIZE, SEED)
    train, test = table.iloc[split.train], table.iloc[split.test]
    cols = [c for c in table.columns if c.startswith("f")]
    search = GridSearchCV(
        RandomForestClassifier(n_estimators=TREES, random_state=SEED),
        {"max_depth": DEPTHS}, scoring="roc_auc", cv=GroupKFold(FOLDS), n_jobs=2, refit=True)
    start = time.perf_counter()
    search.fit(train[cols], train["label"], groups=train["patient"])
    auc = roc_auc_score(test["label"], search.predict_proba(test[cols])[:, 1])
    return {"seconds": time.perf_counter() - start, "best": search.best_params_,
            "test_auc": auc}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--workdir", help="keep data here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        table = make_table(work / "table.parquet", args.rows, args.features)
        print(f"table: {args.rows} rows x {args.features} features, {args.rows // 5} patients; "
              f"RandomForest {TREES} trees, maxDepth {DEPTHS}, {FOLDS}-fold grouped CV + refit")
        sk = run_sklearn(table)
        print(f"scikit-learn GridSearchCV(n_jobs=2): {sk['seconds']:.1f}s, best {sk['best']}, "
              f"held-out AUC {sk['test_auc']:.3f}")
        ms = run_medspark(work / "table.parquet", work / "lake")
        auc = ms["test_auc"]
        print(f"medspark train local[2]: {ms['seconds']:.1f}s (JVM start {ms['jvm_start_s']:.1f}s "
              f"apart; includes bootstrap CIs and plots), best {ms['best']}, held-out AUC "
              f"{auc if auc is None else round(auc, 3)}")
        print(f"ratio time medspark/scikit-learn = {ms['seconds'] / sk['seconds']:.2f}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
