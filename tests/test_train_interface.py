"""The train job's scale and shape: nothing row-sized reaches the driver, both imputer
strategies, groups without an id, the default settings on a plain table, per-group models
through `medspark train`, models on other filesystems, and MLlib vs its scikit-learn
counterpart on the same folds."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import yaml
from lake_io import read

from medspark.config import ConfigError, Settings, load_settings
from medspark.models.config import TrainSettings
from medspark.spark.predict import run_predict
from medspark.spark.train import data_fingerprint, preflight, prepare, run_train

EVAL_MAX = 100


def table(path: str, n_patients: int = 600, rows: int = 5, seed: int = 0,
          no_group_every: int = 0) -> str:
    """Patients with `rows` rows each; the label follows f0 + f1; 4% of values missing; every
    `no_group_every`-th row without a patient id."""
    rng = np.random.default_rng(seed)
    n = n_patients * rows
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] + x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    x[rng.random(x.shape) < 0.04] = np.nan
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(
        row_id=np.arange(n), patient_id=[f"p{i // rows:04d}" for i in range(n)], target=y,
        site=np.array(["A", "B", "C"])[(np.arange(n) // rows) % 3])
    if no_group_every:
        frame.loc[::no_group_every, "patient_id"] = None
    frame.to_parquet(path, index=False)
    return path


class DriverRows:
    """Row counts of every result a DataFrame hands to the driver (collect, toPandas, ...):
    the real methods run, their results are only counted."""

    def __init__(self, monkeypatch):
        from pyspark.sql.classic.dataframe import DataFrame

        self.sizes: list[tuple[str, int]] = []
        for name, size in (("collect", len), ("toPandas", len), ("tail", len),
                           ("toArrow", lambda t: t.num_rows)):
            monkeypatch.setattr(DataFrame, name, self._wrap(getattr(DataFrame, name), name,
                                                            size))

        def forbidden(*_a, **_k):
            raise AssertionError("toLocalIterator streams every row to the driver")

        monkeypatch.setattr(DataFrame, "toLocalIterator", forbidden)

    def _wrap(self, method, name, size):
        def counted(df, *args, **kwargs):
            out = method(df, *args, **kwargs)
            self.sizes.append((name, size(out)))
            return out
        return counted

    @property
    def largest(self) -> int:
        return max(n for _, n in self.sizes)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    return {"root": root, "table": table(str(root / "t.parquet"), no_group_every=50)}


def cfg(**kw) -> TrainSettings:
    doc = {"label": "target", "id_col": "row_id", "group_col": "patient_id", "n_boot": 20,
           "eval_max_rows": EVAL_MAX, "impute_sample_rows": EVAL_MAX,
           "selection": {"folds": 2, "metric": "roc_auc", "candidates": [
               {"algorithm": "LogisticRegression", "params": {"maxIter": 20, "regParam": 0.01}}]},
           **kw}
    return TrainSettings.model_validate(doc)


@pytest.fixture(scope="module")
def runs(spark, data):
    """The same selection twice under the driver guard: (A) engine auto on a lake given as a
    file:// URI: LogisticRegression as its scikit-learn counterpart in Spark tasks, fold
    imputers fitted in tasks; (B) training split over `sklearn_max_rows`: MLlib, imputers
    from Spark aggregates."""
    mp = pytest.MonkeyPatch()
    guard = DriverRows(mp)
    try:
        a = run_train(spark, Settings(), f"file://{data['root']}/lake", table=data["table"],
                      train=cfg())
        b = run_train(spark, Settings(), str(data["root"] / "lake"), table=data["table"],
                      train=cfg(sklearn_max_rows=1000))
    finally:
        mp.undo()
    return {"a": a, "b": b, "guard": guard}


def metrics_of(manifest) -> dict:
    with open(os.path.join(manifest["outputs"]["model"], "metrics.json")) as fh:
        return json.load(fh)


def test_no_row_sized_result_reaches_the_driver(runs):
    guard = runs["guard"]
    print("driver results (method, rows):", guard.sizes)
    assert len(guard.sizes) > 10
    # 3000 rows, 600 patients: every result is bounded by a setting (eval_max_rows) or by the
    # classes and folds, never by the rows or the patients
    assert guard.largest <= EVAL_MAX, guard.sizes
    for run in ("a", "b"):
        doc = metrics_of(runs[run])
        assert doc["evaluation"]["sampled"] is True
        assert doc["evaluation"]["rows"] == doc["counts"]["test_rows_scored"] > EVAL_MAX
        assert doc["evaluation"]["rows_used"] <= EVAL_MAX
        assert doc["test"]["roc_auc"]["value"] > 0.8


def test_engines_and_imputer_strategies(runs):
    a, b = runs["a"], runs["b"]
    assert a["best"]["kind"] == "sklearn" and b["best"]["kind"] == "mllib"
    assert a["best"]["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert a["imputer"]["fitted_by"] == "spark_tasks"
    assert b["imputer"]["fitted_by"] == "spark_aggregates"
    assert "sklearn_max_rows=1000" in b["selection"][0]["note"]
    # (A)'s table fits a task: read, split and staged there; (B)'s does not: Spark SQL
    assert a["split"]["prepared_by"].startswith("one Spark task")
    assert "more than one task takes" in b["split"]["prepared_by"]
    # the same folds (group hash) and the same objective: MLlib and its counterpart agree
    assert a["split"]["rows_by_fold"] == b["split"]["rows_by_fold"]
    assert abs(a["best"]["cv_mean"] - b["best"]["cv_mean"]) < 0.01
    # rows without a patient id are their own group, and say so
    assert a["split"]["groups_without_id"] == 60
    assert a["counts"]["rows"] == 3000 and a["counts"]["train_rows_rejected"] == 0
    with open(os.path.join(a["outputs"]["model"], "metadata.json")) as fh:
        meta = json.load(fh)
    assert meta["imputer"]["fitted_by"] == "spark_tasks" and meta["kind"] == "sklearn"


def test_models_on_other_filesystems(spark, runs, data):
    """A model folder written to and read from pyarrow filesystems that are not the lake's:
    a SubTreeFileSystem and an fsspec memory filesystem; same predictions."""
    import pyarrow.fs as pafs

    from medspark.models.folder import Folder
    from medspark.spark.models.artifacts import load_bundle, write_folder
    from medspark.spark.models.impute import accepted, impute

    fsspec = pytest.importorskip("fsspec")
    rows = spark.read.parquet(data["table"]).limit(200)
    targets = [pafs.SubTreeFileSystem(str(data["root"] / "elsewhere"), pafs.LocalFileSystem()),
               pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))]
    for run in ("a", "b"):  # scikit-learn and MLlib
        here = load_bundle(Folder.at(runs[run]["outputs"]["model"]))
        feats = here.meta["input_features"]

        def scores(bundle, feats=feats):
            done = bundle.model.transform(accepted(impute(rows, bundle.imputer, feats)))
            return done.select("row_id", "probability").toPandas().sort_values("row_id")

        expected = scores(here)
        for fs in targets:
            folder = Folder(fs, f"models/{run}")
            write_folder(folder, model=here.model, imputer=here.imputer,
                         leaderboard=pd.DataFrame({"a": [1]}), metrics={}, metadata=here.meta)
            assert folder.exists("metadata.json") and folder.exists("imputer/imputer.json")
            there = load_bundle(folder)
            assert there.kind == here.kind
            got = scores(there)
            np.testing.assert_allclose(np.vstack(got["probability"]),
                                       np.vstack(expected["probability"]), rtol=0, atol=1e-12)


def test_table_defaults_and_errors_before_spark(data, monkeypatch, capsys):
    """`--table` with the shipped defaults (aggregate: auto -> none); a missing column is a
    configuration error that names the setting, raised before a session is built."""
    from medspark import session
    from medspark.cli import main

    settings = load_settings(None)
    assert settings.train.aggregate == "auto" and settings.train.engine == "auto"
    pre = preflight(settings, str(data["root"] / "lake"), data["table"], id_col="row_id",
                    group_col="patient_id", label="target")
    assert pre.aggregate == "none" and pre.key == "row_id"
    with pytest.raises(ConfigError, match=r"'series_pseudo_uid' \(from train.series_col.*"
                                          r"set train.aggregate=none"):
        preflight(settings, str(data["root"] / "lake"), data["table"], id_col="row_id",
                  group_col="patient_id", label="target",
                  train=settings.train.model_copy(update={"aggregate": "series_max"}))

    def no_spark(*_a, **_k):
        raise AssertionError("Spark started before the configuration was checked")

    monkeypatch.setattr(session, "build_session", no_spark)
    code = main(["train", "--lake", str(data["root"] / "lake"), "--table", data["table"],
                 "--id-col", "row_id", "--group-col", "nope", "--label", "target"])
    err = capsys.readouterr().err
    assert code == 2 and "'nope' (from train.group_col (--group-col))" in err
    assert main(["config", "show", "--section", "train"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["engine"] == "auto" and shown["train"]["aggregate"] == "auto"


def test_per_group_models_through_medspark_train(spark, tmp_path):
    """`train.per_group: site`: one model per site, each selected on its own patients; a site
    that cannot be fitted (one class) is an error row; predict scores each row by its site's
    model and rejects the rows of a site without one."""
    path = str(tmp_path / "sites.parquet")
    frame = pd.read_parquet(table(path, n_patients=90, rows=3, seed=1))
    site_d = frame[frame["target"] == 1].head(12).assign(
        site="D", row_id=lambda f: f["row_id"] + 10_000, patient_id=lambda f: "d" + f["patient_id"])
    frame = pd.concat([frame, site_d], ignore_index=True)
    frame.to_parquet(path, index=False)
    lake = str(tmp_path / "lake")
    per_site = cfg(per_group="site", eval_max_rows=1000, selection={
        "folds": 2, "metric": "roc_auc", "candidates": [
            {"algorithm": "sklearn.linear_model.LogisticRegression", "grid": {"C": [0.1, 1.0]}},
            {"algorithm": "DecisionTreeClassifier", "params": {"maxDepth": 3}}]})
    manifest = run_train(spark, Settings(), lake, table=path, train=per_site)
    out = manifest["outputs"]["model"]
    # the fingerprint, made from the per-site aggregate, is the whole frame's
    prepared = prepare(spark, preflight(Settings(), lake, path, train=per_site), None, path)
    with open(os.path.join(out, "metadata.json")) as fh:
        assert json.load(fh)["data_fingerprint"] == data_fingerprint(
            prepared.frame.select(*prepared.hashed))
    groups = pd.read_parquet(os.path.join(out, "group_models.parquet")).set_index("site")
    assert sorted(groups.index) == ["A", "B", "C", "D"]
    assert groups.loc[["A", "B", "C"], "error"].isna().all()
    assert groups.loc["D", "model"] is None and groups.loc["D", "error"]
    assert (groups.loc[["A", "B", "C"], "n_rows"] == 90).all()
    assert manifest["counts"]["groups_fitted"] == 3 and manifest["test_metrics"]["roc_auc"] > 0.8
    predicted = run_predict(spark, Settings(), lake, manifest["model_id"], table=path,
                            run_date=dt.date(2026, 3, 1))
    assert predicted["counts"]["predicted"] == 270
    assert predicted["counts"]["rejected_by_step"] == {"no_group_model": 12}
    scored = read(predicted["outputs"]["predictions"]).set_index("row_id").sort_index()
    a_rows = frame[frame["site"] == "A"].set_index("row_id").sort_index()
    bundle = pickle.loads(groups.loc["A", "model"])
    imputed = bundle["imputer"].transform(a_rows.reset_index()).frame
    expected = bundle["pipeline"].predict_proba(imputed[bundle["features"]])[:, 1]
    np.testing.assert_allclose(scored.loc[a_rows.index, "score"], expected, rtol=0, atol=1e-12)


def test_imputation_report_counts_like_the_pandas_imputer(spark, data):
    """The report of the held-out and the training rows (one pandas pass per Arrow batch in
    Spark, summed on the driver) equals the pandas imputer's own report on the same rows."""
    from medspark.models.missing import MissingValuePlan
    from medspark.spark.models.impute import report

    pdf = pd.read_parquet(data["table"])
    feats = [f"f{i}" for i in range(6)]
    plan = MissingValuePlan.model_validate({
        "rules": [{"strategy": "drop_rows", "columns": ["f5"]},
                  {"strategy": "drop_columns", "columns": ["f4"], "max_missing_rate": 0.01},
                  {"strategy": "fill", "columns": ["*"], "method": "median"}],
        "id_columns": ["row_id"], "exclude": ["patient_id", "target", "site"]})
    fitted = plan.fit(pdf)
    got = report(spark.createDataFrame(pdf).repartition(3), fitted, feats, feats)
    want = fitted.transform(pdf).report
    assert got.rows_in == want.rows_in == len(pdf)
    assert got.rows_out == want.rows_out < len(pdf)
    assert got.rows_dropped_by_step == want.rows_dropped_by_step != {}
    assert got.columns_dropped == ["f4"]
    for c in feats:
        assert got.columns[c].missing_before == want.columns[c].missing_before > 0
        assert got.columns[c].missing_after == want.columns[c].missing_after


def test_held_out_scored_in_the_refit_task_equals_sparks_evaluation(spark, data, tmp_path):
    """A scikit-learn refit that also scores the held-out split in its task (split within
    `eval_max_rows`) hands over exactly what Spark's evaluation computes from the same model
    and imputer: the scored rows, the imputation report, the metrics."""
    from medspark.models.folder import Folder
    from medspark.spark.models.base import FOLD, GROUP, HeldOut, ModelContext, ModelSpec
    from medspark.spark.models.evaluation import evaluate
    from medspark.spark.models.folds import FoldSet, assign_folds
    from medspark.spark.models.sklearn_engine import SklearnModel
    from medspark.spark.train import prepare

    train = cfg(eval_max_rows=10_000, missing={"rules": [
        {"strategy": "drop_rows", "columns": ["f5"]},
        {"strategy": "fill", "columns": ["*"], "method": "median"}]})
    pre = preflight(Settings(), str(tmp_path / "lake"), data["table"], train=train)
    d = prepare(spark, pre, None, data["table"])
    framed, groups, _ = assign_folds(d.frame, group=d.group, key=d.key, stratify=True,
                                     test_size=0.2, k=2, seed=0, labels=d.labels)
    folds = FoldSet(framed, 2, d.key, d.features, [d.key, GROUP, "_ms_label", *d.features],
                    {}, Folder.at(str(tmp_path / "stage")))
    folds.stage()
    folds.plan = train.missing_plan([d.key], [GROUP, d.group, "_ms_label", FOLD])
    rows = folds.training_rows(in_task=True)
    rows.held_out = HeldOut(list(d.features))
    spec = ModelSpec("sklearn.linear_model.LogisticRegression", {"C": 1.0}, "sklearn",
                     "sklearn.linear_model.LogisticRegression")
    ctx = ModelContext("classification", 2, d.labels, True, 0, "roc_auc", 2)
    model = SklearnModel(spec, ctx).fit(rows)
    assert model.held_out is not None and model.imputer is not None
    test = folds.framed.where(f"{FOLD} = -1")
    kw = {"n_boot": 20, "seed": 0, "max_rows": 10_000}
    in_task = evaluate(model, test, model.imputer, d.features, d.key, **kw)
    model.held_out = None
    by_spark = evaluate(model, test, model.imputer, d.features, d.key, **kw)
    groups.unpersist()
    assert in_task.sampling.pop("scored_in") == "the refit task"
    assert by_spark.sampling.pop("scored_in") == "spark"
    assert in_task.sampling == by_spark.sampling
    assert in_task.report == by_spark.report and in_task.report.rows_dropped > 0
    assert in_task.counts == by_spark.counts
    a, b = in_task.sample, by_spark.sample[list(in_task.sample.columns)]
    assert list(a[d.key]) == list(b[d.key]) and len(a) == in_task.report.rows_out
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-12)
    assert (a["prediction"] == b["prediction"]).all() and (a["_ms_label"] == b["_ms_label"]).all()
    assert in_task.metrics == by_spark.metrics


@pytest.mark.parametrize("method", ["median", "mean"])
def test_spark_aggregate_fills_are_each_folds_statistics(spark, data, method):
    """Over `sklearn_max_rows` the fold imputers' first fill comes from one pass (per-fold
    sums and counts, or one key-hash sample for every imputer's medians): each imputer's
    statistic is that of its own rows (all training folds, or all but one), as fitting it on
    those rows alone gives; with a sample smaller than the rows, medians are middle values of
    the rows and the same on any Spark layout; a column with nothing observed in an imputer's
    rows is refused (means: exact, up to the order Spark adds them in)."""
    from medspark.models.missing import MissingValuePlan
    from medspark.spark.models.base import FOLD
    from medspark.spark.models.impute import fit_by_aggregates, fit_plan_spark

    pdf = pd.read_parquet(data["table"])
    pdf[FOLD] = (pdf["row_id"] % 4 - 1).astype("int32")  # -1 held out, folds 0..2
    frame = spark.createDataFrame(pdf)
    plan = MissingValuePlan.model_validate({
        "rules": [{"strategy": "fill", "method": method, "columns": ["*"]}],
        "id_columns": ["row_id"],
        "exclude": ["patient_id", "target", "site"]})
    folds = [None, 0, 1, 2]
    everything = len(pdf)  # a sample as large as the rows: every row
    fitted = fit_by_aggregates(frame, plan, folds, "row_id", 0, everything)
    small = 400  # medians from ~400 of the 2,250 training rows
    sampled = fit_by_aggregates(frame, plan, folds, "row_id", 0, small)
    relaid = fit_by_aggregates(spark.createDataFrame(pdf.sample(frac=1.0, random_state=1))
                               .repartition(5), plan, folds, "row_id", 0, small)
    feats = [f"f{i}" for i in range(6)]
    for f in folds:
        mine = pdf[(pdf[FOLD] >= 0) & (pdf[FOLD] != (-2 if f is None else f))]
        values = fitted[f].steps[0].values
        assert sorted(values) == feats
        one_pass = fit_plan_spark(spark.createDataFrame(mine), plan, "row_id", 0, everything,
                                  with_report=False).steps[0].values
        drawn, other = sampled[f].steps[0].values, relaid[f].steps[0].values
        if method == "median":  # the same rows and values whatever the order and partitions
            assert drawn == other
        else:  # sums in another order: the last bits may differ
            assert drawn == pytest.approx(other, rel=1e-13)
        for c in feats:
            seen = mine[c].dropna()
            exact = seen.mean() if method == "mean" else seen.median()
            assert values[c] == pytest.approx(exact, rel=1e-12, abs=1e-15)
            assert values[c] == pytest.approx(one_pass[c], rel=1e-12, abs=1e-15)
            if method == "median":  # ~300 rows of the imputer's: near the middle of them all
                below, above = (seen < drawn[c]).mean(), (seen > drawn[c]).mean()
                assert below <= 0.6 and above <= 0.6, (c, f, below, above)
                assert drawn[c] != pytest.approx(exact, rel=1e-9)  # a sample, not every row
            else:  # means are exact at any sample size
                assert drawn[c] == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert fitted[None].train_report is not None and fitted[0].train_report is None
    # f5 observed only in held-out rows: nothing to take the statistic of
    pdf.loc[pdf[FOLD] >= 0, "f5"] = np.nan
    with pytest.raises(ValueError, match=r"\['f5'\] have no observed value"):
        fit_by_aggregates(spark.createDataFrame(pdf), plan, folds, "row_id", 0, 100)


def test_medians_of_a_column_the_sample_misses(spark, data):
    """A sparse column with no observed value in the key-hash sample gets its median from
    every row (exact for so few values), not an error."""
    from medspark.spark.models.impute import _hash_sample, medians

    pdf = pd.read_parquet(data["table"])
    frame = spark.createDataFrame(pdf)
    drawn = {r["row_id"] for r in _hash_sample(frame, "row_id", 0, 300).select("row_id")
             .collect()}
    assert 0 < len(drawn) < len(pdf)
    outside = [k for k in pdf["row_id"] if k not in drawn][:3]
    pdf["f5"] = np.nan
    pdf.loc[pdf["row_id"].isin(outside), "f5"] = [7.0, 1.0, 4.0]
    found = medians(spark.createDataFrame(pdf), ["f0", "f5"], [None], "row_id", 0, 300)[None]
    assert found["f5"] == 4.0
    assert found["f0"] == pytest.approx(pdf.loc[pdf["row_id"].isin(drawn), "f0"].median(),
                                        rel=1e-12)


@pytest.mark.parametrize("how", ["staged", "table", "partitioned table"])
def test_rows_read_back_in_the_same_partitions_every_run(spark, tmp_path, how):
    """The same rows written twice to one folder (Spark names each write's files with a new
    random id) and read back with splits small enough that most are of equal length: every
    partition holds the same rows in the same order (MLlib seeds its bootstrap per partition;
    read as a folder, the listing order of the files decided it): the staged rows, and a
    `--table` folder."""
    from pyspark.sql import functions as F

    from medspark.models.folder import Folder
    from medspark.spark.models.base import FOLD
    from medspark.spark.models.tasks import read_staged, stage_rows
    from medspark.spark.train import read_table

    frame = spark.range(0, 60_000, 1, 8).select(
        F.format_string("r%06d", "id").alias("row_id"), F.lit(0).alias(FOLD),
        (F.col("id") % 2).cast("string").alias("site"), F.rand(1).alias("x"),
        F.rand(2).alias("y"))
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, str(64 * 1024))
    try:
        layouts = []
        path = str(tmp_path / "rows")
        for _ in range(2):  # as a re-run rewrites its staged rows, or a table is rewritten
            if how == "staged":
                read = read_staged(spark, stage_rows(frame, Folder.at(path), "row_id",
                                                     ["x", "y"])[0])
            else:
                writer = frame.write.mode("overwrite")
                (writer.partitionBy("site") if how == "partitioned table" else writer
                 ).parquet(path)
                read = read_table(spark, path)
            assert sorted(read.columns) == sorted(frame.columns)
            layouts.append(read.select("row_id").rdd.mapPartitionsWithIndex(
                lambda i, rows: [(i, [r.row_id for r in rows])]).collect())
    finally:
        spark.conf.set(key, before)
    assert len(layouts[0]) > 8 and sum(len(rows) for _, rows in layouts[0]) == 60_000
    assert layouts[0] == layouts[1]
