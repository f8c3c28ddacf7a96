"""Model selection speed and driver memory: medspark train vs scikit-learn's GridSearchCV.

Writes a table of N rows x F numeric features (default 100k x 100; rows grouped into patients of
5 rows, binary label from a few informative features plus noise) as Parquet, in chunks (the
writer's memory does not grow with N), then:

1. medspark: `run_train` on a local[2] session (`spark.driver.memory=2g`) with one
   RandomForestClassifier candidate and a maxDepth grid, `engine: auto` (the candidate runs as
   its scikit-learn counterpart in Spark tasks while the training split fits a task, as MLlib
   beyond; such a table is also read, split and staged by one task, `train.prepare: auto`),
   K-fold CV grouped by patient, refit, held-out metrics with bootstrap CIs and plots.
   The JVM start is timed apart. While it runs, the driver's resident memory (the Python
   process and the JVM) is sampled from /proc every 0.2 s: its growth during the run must not
   grow with N (nothing row-sized is collected). Then (unless --once or --skip-sklearn) the
   same run again in the same session, timed apart: the first run in a fresh JVM also pays for
   compiling Spark's code paths and starting the Python workers, which a session that ran
   other jobs before train (`medspark nightly`, a notebook) has done; same model id. The
   scikit-learn baseline is then timed twice too (its second run reuses joblib's workers);
2. scikit-learn (unless --skip-sklearn): `GridSearchCV(RandomForestClassifier, same grid,
   GroupKFold(K), n_jobs=2)` on the same training rows (the patients medspark held out, read
   from its model folder, are held out here too), refit, held-out AUC: the baseline of
   the 1.1x target, timed alone. Also timed: the same outputs by hand (reading the table, the
   patient split, held-out metrics with patient-level bootstrap CIs, the model saved with
   joblib), which medspark's time includes; both ratios are printed;

and prints both times, the ratio, the CV and held-out AUCs (same selection: the same trees,
depths and folds count; the best depth and the AUCs should agree within noise).

    .venv/bin/python benchmarks/train.py --rows 100000 --features 100
    .venv/bin/python benchmarks/train.py --rows 2000000 --features 100 --skip-sklearn
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

TREES, DEPTHS, FOLDS, TEST_SIZE, SEED, PATIENT_ROWS = 30, [4, 8], 3, 0.2, 0, 5
CHUNK = 200_000


def make_table(path: Path, rows: int, features: int, seed: int = SEED) -> None:
    """The benchmark table, written chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.normal(size=(n, features))
            logit = x[:, :5] @ np.array([1.5, -1.0, 0.8, 0.6, -0.5]) + 0.5 * x[:, 5] * x[:, 6]
            label = (logit + rng.normal(scale=1.0, size=n) > 0).astype(int)
            ids = np.arange(start, start + n)
            table = pd.DataFrame(x, columns=[f"f{i:03d}" for i in range(features)])
            table.insert(0, "row_id", ids.astype(str))
            table.insert(1, "patient", (ids // PATIENT_ROWS).astype(str))
            table["label"] = label
            arrow = pa.Table.from_pandas(table, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, arrow.schema)
            writer.write_table(arrow)
    finally:
        if writer is not None:
            writer.close()


class PeakRSS:
    """Resident memory of processes, sampled from /proc in a thread: start and peak (MiB)."""

    def __init__(self, pids: dict[str, int], every: float = 0.2):
        self.pids, self.every = pids, every
        self.start = {k: self.rss(p) for k, p in pids.items()}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss(pid: int) -> float:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for k, p in self.pids.items():
                self.peak[k] = max(self.peak[k], self.rss(p))

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        return ", ".join(f"{k} {self.start[k]:.0f} -> peak {self.peak[k]:.0f} MiB "
                         f"(+{self.peak[k] - self.start[k]:.0f})" for k in self.pids)


def run_medspark(table: Path, lake: Path, again: bool = True,
                 eval_max_rows: int | None = None) -> dict:
    import os

    from medspark.config import load_settings
    from medspark.session import build_session
    from medspark.spark.train import run_train

    overrides = [
        "spark.master=local[2]", "spark.log_level=ERROR", "train.label=label",
        "train.id_col=row_id", "train.group_col=patient", "train.aggregate=none",
        "train.engine=auto", "train.features=[f*]", f"train.test_size={TEST_SIZE}",
        f"train.seed={SEED}", "train.n_boot=100", f"train.selection.folds={FOLDS}",
        "train.selection.metric=roc_auc",
        "train.selection.candidates=[{algorithm: RandomForestClassifier, params: "
        f"{{numTrees: {TREES}, seed: {SEED}}}, grid: {{maxDepth: {DEPTHS}}}}}]",
        *([f"train.eval_max_rows={eval_max_rows}"] if eval_max_rows else []),
    ]
    settings = load_settings(None, overrides)
    start = time.perf_counter()
    spark = build_session(settings.spark, conf={"spark.ui.enabled": "false",
                                                "spark.ui.showConsoleProgress": "false",
                                                "spark.driver.memory": "2g"})
    spark.range(1).count()
    jvm_s = time.perf_counter() - start
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    gc.collect()
    with PeakRSS({"python": os.getpid(), "jvm": jvm_pid}) as memory:
        start = time.perf_counter()
        manifest = run_train(spark, settings, str(lake), table=str(table))
        seconds = time.perf_counter() - start
    again_s = again_phases = None
    if again:  # the same run in the same session: the JVM's JIT and the Python workers warm
        start = time.perf_counter()
        repeat = run_train(spark, settings, str(lake) + "-again", table=str(table))
        again_s, again_phases = time.perf_counter() - start, repeat.get("seconds")
        assert repeat["best"] == manifest["best"] and repeat["model_id"] == manifest["model_id"]
    spark.stop()
    return {"seconds": seconds, "again_s": again_s, "again_phases": again_phases,
            "jvm_start_s": jvm_s, "best": manifest["best"],
            "test_auc": manifest["test_metrics"].get("roc_auc"), "memory": memory.summary(),
            "phases": manifest.get("seconds"), "engine": manifest["selection"][0]["kind"],
            "imputer": manifest["imputer"]["fitted_by"],
            "held_out": set(pd.read_parquet(Path(manifest["outputs"]["model"]) / "split")
                            .query("fold == -1")["group"])}


def run_sklearn(table_path: Path, out: Path, held_out: set[str] | None = None) -> dict:
    """GridSearchCV timed alone (`seconds`: the baseline of the target), and the same outputs
    by hand (`outputs_seconds`: also reading the table, the patient split, the held-out metrics
    with patient-level bootstrap CIs, and the model saved), which medspark's time includes.
    `held_out`: the patients medspark held out (its model folder's split), so both held-out
    AUCs are on the same patients, each model trained on the others (the patient split is
    still computed, for its time)."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from medspark.models.metrics import classification_metrics
    from medspark.models.splits import train_test_split_grouped

    start_all = time.perf_counter()
    table = pd.read_parquet(table_path)
    split = train_test_split_grouped(table, "patient", "label", TEST_SIZE, SEED)
    train, test = table.iloc[split.train], table.iloc[split.test]
    if held_out is not None:
        test_rows = table["patient"].isin(held_out).to_numpy()
        train, test = table[~test_rows], table[test_rows]
    cols = [c for c in table.columns if c.startswith("f")]
    search = GridSearchCV(
        RandomForestClassifier(n_estimators=TREES, random_state=SEED),
        {"max_depth": DEPTHS}, scoring="roc_auc", cv=GroupKFold(FOLDS), n_jobs=2, refit=True)
    start = time.perf_counter()
    search.fit(train[cols], train["label"], groups=train["patient"])
    prob = search.predict_proba(test[cols])[:, 1]
    auc = roc_auc_score(test["label"], prob)
    seconds = time.perf_counter() - start
    classification_metrics(test["label"].to_numpy(), prob, pos_label=1, n_boot=100, seed=SEED,
                           groups=test["patient"].to_numpy())
    joblib.dump(search.best_estimator_, out / "sklearn_model.joblib")
    return {"seconds": seconds, "outputs_seconds": time.perf_counter() - start_all,
            "best": search.best_params_, "cv_auc": search.best_score_, "test_auc": auc}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--skip-sklearn", action="store_true",
                        help="medspark only (the scale run: 2M rows)")
    parser.add_argument("--workdir", help="keep data here (default: a temp dir, removed)")
    parser.add_argument("--eval-max-rows", type=int,
                        help="train.eval_max_rows (default: the setting's): the held-out rows "
                             "the metrics use, the one driver-side cost that a setting bounds")
    parser.add_argument("--once", action="store_true",
                        help="time only the first run in a fresh JVM (not a second, warm one)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        path = work / "table.parquet"
        if not path.exists():
            make_table(path, args.rows, args.features)
        print(f"table: {args.rows} rows x {args.features} features, "
              f"{args.rows // PATIENT_ROWS} patients; RandomForest {TREES} trees, maxDepth "
              f"{DEPTHS}, {FOLDS}-fold grouped CV + refit", flush=True)
        for name in ("lake", "lake-again"):
            shutil.rmtree(work / name, ignore_errors=True)
        ms = run_medspark(path, work / "lake", again=not (args.once or args.skip_sklearn),
                          eval_max_rows=args.eval_max_rows)
        auc = ms["test_auc"]
        print(f"medspark train local[2] (engine {ms['engine']}, imputers {ms['imputer']}): "
              f"{ms['seconds']:.1f}s (JVM start {ms['jvm_start_s']:.1f}s apart; includes "
              f"bootstrap CIs and plots), best {ms['best']['params']} CV AUC "
              f"{ms['best']['cv_mean']:.4f}, held-out AUC "
              f"{auc if auc is None else round(auc, 4)}", flush=True)
        print(f"  phases (s): {ms['phases']}")
        print(f"  driver memory during the run: {ms['memory']}", flush=True)
        if ms["again_s"] is not None:
            print(f"medspark train again in the same session (JIT-compiled JVM, Python workers "
                  f"started, as when train follows other jobs): {ms['again_s']:.1f}s, same "
                  f"model id\n  phases (s): {ms['again_phases']}", flush=True)
        if not args.skip_sklearn:
            sk = run_sklearn(path, work, ms["held_out"])
            # like for like: the baseline's second run reuses joblib's worker processes
            sk2 = run_sklearn(path, work, ms["held_out"]) if ms["again_s"] is not None \
                else None
            print(f"scikit-learn GridSearchCV(n_jobs=2): {sk['seconds']:.1f}s, best "
                  f"{sk['best']} CV AUC {sk['cv_auc']:.4f}, held-out AUC "
                  f"{sk['test_auc']:.4f}; with the same outputs by hand (read, split, "
                  f"bootstrap CIs, model file) {sk['outputs_seconds']:.1f}s")
            print(f"ratio time medspark/scikit-learn = {ms['seconds'] / sk['seconds']:.2f} "
                  f"(GridSearchCV alone: the target's baseline); "
                  f"{ms['seconds'] / sk['outputs_seconds']:.2f} (same outputs by hand)")
            if sk2 is not None:
                print(f"scikit-learn again in the same process: GridSearchCV "
                      f"{sk2['seconds']:.1f}s, with the same outputs {sk2['outputs_seconds']:.1f}s")
                print(f"ratio of the second runs = {ms['again_s'] / sk2['seconds']:.2f} "
                      f"(GridSearchCV alone); {ms['again_s'] / sk2['outputs_seconds']:.2f} "
                      f"(same outputs by hand)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
