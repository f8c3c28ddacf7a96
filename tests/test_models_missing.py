"""Missing-value plans: every strategy, fit-on-train/apply-on-test, save/load, reports, WDBC."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from medspark.models.missing import (
    FittedImputer,
    MissingColumnError,
    MissingValuePlan,
    interpolate_1d,
    resolve_columns,
)

NAN = np.nan


def plan(*rules: dict, **kw) -> MissingValuePlan:
    return MissingValuePlan.from_config({"rules": list(rules), **kw})


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "rule, message",
    [
        ({"strategy": "fill", "columns": ["a"], "method": "constant"}, "value"),
        ({"strategy": "fill", "columns": ["a"], "method": "mean", "value": 1.0}, "value"),
        ({"strategy": "interpolate", "columns": ["a"], "method": "polynomial",
          "order_by": "z"}, "order"),
        ({"strategy": "fill", "columns": ["a"], "methd": "mean"}, "methd"),
        ({"strategy": "impute_magic", "columns": ["a"]}, "impute_magic"),
        ({"strategy": "drop_columns", "max_missing_rate": 1.5}, "max_missing_rate"),
        ({"strategy": "fill", "columns": [], "method": "mean"}, "columns"),
    ],
)
def test_invalid_config_is_rejected_with_the_key(rule, message):
    with pytest.raises(ValidationError, match=message):
        plan(rule)


YAML_PLAN = """
id_columns: [image_id]
exclude: [label, slice_position]
rules:
  - strategy: drop_columns            # columns defaults to ["*"]
    max_missing_rate: 0.5
  - strategy: drop_rows
    columns: [age]
  - strategy: interpolate
    columns: ["glcm_*"]
    method: polynomial
    order: 2
    order_by: slice_position
    group_by: [series_pseudo_uid]
    edges: nearest
    fallback: {method: median}
  - strategy: model
    columns: ["re:shape_.*"]
    estimator: iterative
  - strategy: fill
    columns: ["*"]
    method: median
  - strategy: fill
    columns: [site]
    method: mode
"""


def test_the_documented_yaml_plan_validates_and_runs():
    import yaml

    p = MissingValuePlan.from_config(yaml.safe_load(YAML_PLAN))
    assert MissingValuePlan.from_config(p) is p
    assert [r.strategy for r in p.rules] == [
        "drop_columns", "drop_rows", "interpolate", "model", "fill", "fill"]
    res = p.fit_transform(_radiomics_like(8, 0))[1]
    assert res.report.columns_dropped == ["glcm_sparse"]
    left = res.frame.drop(columns=["label"]).isna().sum()
    assert left.sum() == 0, left[left > 0]


def test_patterns_globs_regexes_exclusions_and_types():
    df = pd.DataFrame({
        "image_id": ["a", "b"], "label": [0, 1], "glcm_contrast": [1.0, NAN],
        "glcm_energy": [2.0, 3.0], "firstorder_mean": [4.0, 5.0], "site": ["x", None],
    })
    assert resolve_columns(["glcm_*"], df) == ["glcm_contrast", "glcm_energy"]
    assert resolve_columns(["re:(glcm|firstorder)_.*n.*"], df) == [
        "glcm_contrast", "glcm_energy", "firstorder_mean"]
    assert resolve_columns(["*"], df, exclude=["label", "re:.*_id"], numeric_only=True) == [
        "glcm_contrast", "glcm_energy", "firstorder_mean"]
    assert resolve_columns(["*"], df, exclude=["label"]) == [
        "image_id", "glcm_contrast", "glcm_energy", "firstorder_mean", "site"]
    assert resolve_columns(["nope_*"], df) == []
    with pytest.raises(MissingColumnError, match="'nope'"):
        resolve_columns(["nope"], df)
    with pytest.raises(ValueError, match="'site' is not numeric"):
        resolve_columns(["site"], df, numeric_only=True)


# --------------------------------------------------------------------------------- strategies
def test_drop_rows_rejects_and_reports_rows_at_fit_and_at_prediction():
    train = pd.DataFrame({"id": [1, 2, 3, 4], "a": [1.0, NAN, 3.0, 4.0], "b": [1.0, 2, 3, NAN]})
    p = plan({"strategy": "drop_rows", "columns": ["a"]}, id_columns=["id"])
    fitted, res = p.fit_transform(train)
    assert res.frame["id"].tolist() == [1, 3, 4]
    assert res.rejected.to_dict("records") == [
        {"id": 2, "step": "0:drop_rows", "reason": "missing a"}]
    assert res.report.rows_dropped == 1 and res.report.rows_out == 3
    assert fitted.train_report == res.report

    test = pd.DataFrame({"id": [7, 8, 9], "a": [NAN, 5.0, NAN], "b": [NAN, NAN, 1.0]})
    out = fitted.transform(test)
    assert out.frame["id"].tolist() == [8]
    assert out.rejected.index.tolist() == [0, 2]  # the input's index: joinable back
    assert out.rejected["id"].tolist() == [7, 9]
    assert set(out.rejected["reason"]) == {"missing a"}
    assert out.report.rows_dropped_by_step == {"0:drop_rows": 2}
    assert out.report.columns["a"].missing_before == 2
    assert out.report.columns["a"].rate_before == pytest.approx(2 / 3)
    assert out.report.columns["a"].missing_after == 0
    assert out.report.columns["b"].missing_after == 1  # no rule for b: left as it is


def test_drop_rows_names_every_missing_column_of_a_row():
    df = pd.DataFrame({"a": [NAN, 1.0], "b": [NAN, NAN], "c": [1.0, 1.0]})
    res = plan({"strategy": "drop_rows", "columns": ["a", "b", "c"]}).fit_transform(df)[1]
    assert res.rejected["reason"].tolist() == ["missing a, b", "missing b"]
    assert res.frame.empty and res.report.rows_out == 0


def test_drop_columns_uses_the_training_rates_at_prediction():
    train = pd.DataFrame({
        "mostly_gone": [NAN, NAN, NAN, 1.0], "half": [NAN, NAN, 1.0, 2.0],
        "full": [1.0, 2.0, 3.0, 4.0], "label": [NAN, NAN, NAN, 0],
    })
    p = plan({"strategy": "drop_columns", "max_missing_rate": 0.5}, exclude=["label"])
    fitted, res = p.fit_transform(train)
    assert list(res.frame.columns) == ["half", "full", "label"]  # 0.5 is not above 0.5
    assert res.report.columns_dropped == ["mostly_gone"]
    assert fitted.describe()[0] == {"strategy": "drop_columns", "dropped": ["mostly_gone"],
                                    "rates": {"mostly_gone": 0.75}}
    assert res.report.columns["mostly_gone"].missing_after is None

    test = pd.DataFrame({"mostly_gone": [1.0, 2.0], "half": [NAN, NAN], "full": [1.0, 2.0],
                         "label": [1, 0]})
    out = fitted.transform(test)
    assert list(out.frame.columns) == ["half", "full", "label"]  # decided at fit, not refitted
    # a dropped column need not be there at prediction time
    out2 = fitted.transform(test.drop(columns="mostly_gone"))
    assert list(out2.frame.columns) == ["half", "full", "label"]


def test_fill_methods_apply_training_statistics_to_test_rows():
    train = pd.DataFrame({
        "m": [1.0, 2.0, 6.0, NAN], "md": [1.0, 2.0, 100.0, NAN],
        "mo": ["ct", "mr", "ct", None], "c": [NAN, 5.0, 5.0, 5.0],
    })
    p = plan(
        {"strategy": "fill", "columns": ["m"], "method": "mean"},
        {"strategy": "fill", "columns": ["md"], "method": "median"},
        {"strategy": "fill", "columns": ["mo"], "method": "mode"},
        {"strategy": "fill", "columns": ["c"], "method": "constant", "value": -1.0},
    )
    fitted, res = p.fit_transform(train)
    assert res.frame["m"].tolist() == [1.0, 2.0, 6.0, 3.0]
    assert res.frame["md"].tolist() == [1.0, 2.0, 100.0, 2.0]
    assert res.frame["mo"].tolist() == ["ct", "mr", "ct", "ct"]
    assert res.frame["c"].tolist() == [-1.0, 5.0, 5.0, 5.0]

    # the test rows have very different statistics: the training ones must be used
    test = pd.DataFrame({"m": [NAN, 1000.0, 1000.0], "md": [NAN, -50.0, -50.0],
                         "mo": [None, "us", "us"], "c": [NAN, 0.0, 0.0]})
    out = fitted.transform(test).frame
    assert out.iloc[0].tolist() == [3.0, 2.0, "ct", -1.0]
    assert out.iloc[1].tolist() == [1000.0, -50.0, "us", 0.0]
    assert [d["values"] for d in fitted.describe()] == [
        {"m": 3.0}, {"md": 2.0}, {"mo": "ct"}, {"c": -1.0}]


def test_fill_refuses_a_column_with_nothing_observed():
    df = pd.DataFrame({"a": [NAN, NAN], "b": [1.0, 2.0]})
    with pytest.raises(ValueError, match="'a' has no observed value"):
        plan({"strategy": "fill", "columns": ["*"], "method": "median"}).fit(df)


def test_rules_apply_in_order_each_fitted_on_the_previous_output():
    df = pd.DataFrame({"id": range(6), "label": [0, 1, 0, 1, 0, NAN],
                       "glcm_a": [1.0, NAN, NAN, NAN, NAN, 2.0],
                       "glcm_b": [1.0, NAN, 3.0, 4.0, 5.0, 6.0], "shape_c": [NAN, 1, 1, 1, 1, 1]})
    p = plan(
        {"strategy": "drop_columns", "columns": ["glcm_*"], "max_missing_rate": 0.5},
        {"strategy": "fill", "columns": ["*"], "method": "median"},
        id_columns=["id"], exclude=["label"],
    )
    fitted, res = p.fit_transform(df)
    assert res.report.columns_dropped == ["glcm_a"]
    assert fitted.describe()[1]["values"] == {"glcm_b": 4.0, "shape_c": 1.0}  # no id, no label
    assert res.frame["label"].isna().sum() == 1


def test_interpolation_follows_slice_order_within_each_series():
    # rows shuffled; slice spacing unequal; two series with different trends
    df = pd.DataFrame({
        "series_pseudo_uid": ["s1"] * 5 + ["s2"] * 4,
        "slice_position": [0.0, 1.0, 3.0, 4.0, 10.0, 5.0, 6.0, 7.0, 8.0],
        "glcm_contrast": [0.0, NAN, 30.0, NAN, 100.0, NAN, 60.0, NAN, 80.0],
    }).sample(frac=1.0, random_state=3)
    p = plan({"strategy": "interpolate", "columns": ["glcm_*"], "order_by": "slice_position",
              "group_by": ["series_pseudo_uid"]})
    fitted, res = p.fit_transform(df)
    got = res.frame.set_index(["series_pseudo_uid", "slice_position"])["glcm_contrast"]
    assert got[("s1", 1.0)] == pytest.approx(10.0)  # on the slice positions, not row numbers
    assert got[("s1", 4.0)] == pytest.approx(30.0 + 70.0 / 7.0)
    assert got[("s2", 7.0)] == pytest.approx(70.0)
    assert got[("s2", 5.0)] == 60.0  # edge: nearest valid value of its own series
    assert res.rejected.empty
    assert res.frame.index.tolist() == df.index.tolist()  # row order kept


def test_polynomial_order_2_recovers_a_quadratic_exactly():
    x = np.array([-3.0, -2.2, -1.0, 0.0, 0.5, 1.7, 2.0, 3.5, 4.0, 5.5])
    truth = 2.0 * x**2 - 3.0 * x + 1.5
    y = truth.copy()
    y[[1, 4, 5, 8]] = NAN
    df = pd.DataFrame({"s": "one", "z": x, "f": y})
    p = plan({"strategy": "interpolate", "columns": ["f"], "method": "polynomial", "order": 2,
              "order_by": "z", "group_by": ["s"]})
    out = p.fit_transform(df)[1].frame
    np.testing.assert_allclose(out["f"].to_numpy(), truth, rtol=0, atol=1e-9)
    linear = interpolate_1d(x, y)  # linear cannot: the check has teeth
    assert np.abs(linear - truth).max() > 0.5


def test_interpolate_1d_edges_duplicates_and_low_point_counts():
    x = np.array([0.0, 1.0, 1.0, 2.0, 3.0, NAN])
    y = np.array([NAN, 2.0, 4.0, NAN, 5.0, NAN])
    np.testing.assert_allclose(interpolate_1d(x, y), [3.0, 2.0, 4.0, 4.0, 5.0, NAN])
    np.testing.assert_allclose(interpolate_1d(x, y, edges="nan"), [NAN, 2.0, 4.0, 4.0, 5.0, NAN])
    # polynomial with only two distinct valid positions falls back to a straight line
    np.testing.assert_allclose(
        interpolate_1d(x, y, method="polynomial", order=3), [3.0, 2.0, 4.0, 4.0, 5.0, NAN])
    one = interpolate_1d(np.array([0.0, 1.0, 2.0]), np.array([NAN, 7.0, NAN]))
    np.testing.assert_allclose(one, [7.0, 7.0, 7.0])


def test_interpolation_rows_it_cannot_fill_are_reported_or_take_the_fallback():
    df = pd.DataFrame({
        "image_id": [f"i{k}" for k in range(8)],
        "series": ["a", "a", "a", "b", "b", None, "c", "c"],
        "z": [0.0, 1.0, 2.0, 0.0, 1.0, 0.0, NAN, 1.0],
        "f": [NAN, 1.0, 3.0, NAN, NAN, NAN, NAN, 5.0],
    })
    rule = {"strategy": "interpolate", "columns": ["f"], "order_by": "z", "group_by": ["series"],
            "edges": "nan"}
    res = plan(rule, id_columns=["image_id"]).fit_transform(df)[1]
    assert res.frame["image_id"].tolist() == ["i1", "i2", "i7"]
    reasons = dict(zip(res.rejected["image_id"], res.rejected["reason"], strict=True))
    assert reasons == {
        "i0": "f: beyond the group's valid values (edges=nan), no fallback",
        "i3": "f: no valid value in its group, no fallback",
        "i4": "f: no valid value in its group, no fallback",
        "i5": "f: group key ['series'] missing, no fallback",
        "i6": "f: order key 'z' missing, no fallback",
    }
    assert res.report.rows_dropped == 5

    with_fallback = {**rule, "fallback": {"method": "mean"}}
    fitted, res = plan(with_fallback, id_columns=["image_id"]).fit_transform(df)
    assert res.rejected.empty
    assert res.frame["f"].tolist() == [3.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 5.0]  # mean(1, 3, 5)
    # the fallback is the TRAINING mean, also on a test series with nothing observed
    test = pd.DataFrame({"image_id": ["t0", "t1"], "series": ["new", "new"], "z": [0.0, 1.0],
                         "f": [NAN, NAN]})
    assert fitted.transform(test).frame["f"].tolist() == [3.0, 3.0]


def _linear_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    c = rng.normal(size=n)
    return pd.DataFrame({"id": range(n), "a": a, "c": c, "b": 2.0 * a - c + 1.0})


@pytest.mark.parametrize("estimator", ["iterative", "bayesian_ridge", "random_forest"])
def test_model_imputation_predicts_from_the_other_columns(estimator):
    train = _linear_table(300, 0)
    train.loc[train.index[::5], "b"] = NAN
    train.loc[train.index[1::7], "a"] = NAN
    p = plan({"strategy": "model", "columns": ["b"], "estimator": estimator, "n_estimators": 50},
             id_columns=["id"])
    fitted, res = p.fit_transform(train)
    assert res.frame["b"].notna().all() and res.frame["a"].isna().sum() == len(train.index[1::7])

    test = _linear_table(40, 1)
    truth = test["b"].to_numpy()
    test["b"] = NAN
    got = fitted.transform(test).frame["b"].to_numpy()
    tolerance = 0.5 if estimator == "random_forest" else 1e-3
    assert np.abs(got - truth).mean() < tolerance
    # not refitted: a test frame with a different relation still gets the training one
    flipped = test.assign(b=np.where(np.arange(40) < 20, NAN, -5.0 * test["a"]))
    np.testing.assert_allclose(fitted.transform(flipped).frame["b"].to_numpy()[:20], got[:20])


def test_regressors_train_on_complete_rows_unless_told_otherwise():
    df = _linear_table(30, 3)
    df.loc[df.index[::2], "a"] = NAN  # 15 rows keep a
    df.loc[df.index[1::4], "b"] = NAN  # only 7 rows keep both
    rule = {"strategy": "model", "columns": ["b"], "estimator": "bayesian_ridge"}
    with pytest.raises(ValueError, match="only 7 complete training row"):
        plan(rule, id_columns=["id"]).fit(df)
    fitted = plan({**rule, "train_rows": "observed_target"}, id_columns=["id"]).fit(df)
    assert fitted.transform(df).frame["b"].notna().all()


def test_model_imputation_fills_every_column_of_a_pattern():
    df = _linear_table(200, 2)
    rng = np.random.default_rng(0)
    holes = df[["a", "b", "c"]].mask(rng.random((200, 3)) < 0.15)
    df[["a", "b", "c"]] = holes
    res = plan({"strategy": "model", "columns": ["*"], "estimator": "bayesian_ridge"},
               id_columns=["id"]).fit_transform(df)[1]
    assert res.report.columns["a"].missing_before > 0
    assert all(res.report.columns[c].missing_after == 0 for c in "abc")


def _all_strategies_plan() -> MissingValuePlan:
    return plan(
        {"strategy": "drop_columns", "columns": ["glcm_*"], "max_missing_rate": 0.6},
        {"strategy": "drop_rows", "columns": ["age"]},
        {"strategy": "interpolate", "columns": ["glcm_*"], "method": "polynomial", "order": 2,
         "order_by": "slice_position", "group_by": ["series_pseudo_uid"],
         "fallback": {"method": "median"}},
        {"strategy": "model", "columns": ["shape_*"], "estimator": "iterative"},
        {"strategy": "model", "columns": ["firstorder_*"], "estimator": "random_forest",
         "n_estimators": 20},
        {"strategy": "fill", "columns": ["site"], "method": "mode"},
        id_columns=["image_id"], exclude=["label", "slice_position"],
    )


def _radiomics_like(n_series: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_series):
        for k in range(6):
            rows.append({"image_id": f"{seed}-{s}-{k}", "series_pseudo_uid": f"{seed}-s{s}",
                         "slice_position": 2.5 * k, "age": float(rng.integers(20, 80)),
                         "site": rng.choice(["A", "B"]), "label": int(s % 2)})
    df = pd.DataFrame(rows)
    z = df["slice_position"].to_numpy()
    df["glcm_contrast"] = 0.1 * z**2 + rng.normal(size=len(df)) * 0.01
    df["glcm_sparse"] = rng.normal(size=len(df))
    df["shape_area"] = rng.normal(10, 2, size=len(df))
    df["shape_perimeter"] = 3.5 * df["shape_area"] + rng.normal(size=len(df)) * 0.1
    df["firstorder_mean"] = df["shape_area"] * 2 + rng.normal(size=len(df))
    holes = rng.random((len(df), 6)) < 0.15
    for j, col in enumerate(["glcm_contrast", "shape_area", "shape_perimeter",
                             "firstorder_mean", "age", "site"]):
        df.loc[holes[:, j], col] = None
    df.loc[rng.random(len(df)) < 0.8, "glcm_sparse"] = NAN
    return df


def test_save_load_round_trip_gives_an_identical_transform(tmp_path):
    fitted, train_res = _all_strategies_plan().fit_transform(_radiomics_like(12, 0))
    assert train_res.report.columns_dropped == ["glcm_sparse"]
    test = _radiomics_like(5, 1)
    expected = fitted.transform(test)
    assert expected.frame[["glcm_contrast", "shape_area", "firstorder_mean", "site"]].notna().all(
        ).all()
    assert (expected.rejected["reason"] == "missing age").all() and len(expected.rejected) > 0

    fitted.save(tmp_path / "imputer")
    state = json.loads((tmp_path / "imputer" / "imputer.json").read_text())
    assert [s["strategy"] for s in state["steps"]] == [
        "drop_columns", "drop_rows", "interpolate", "model", "model", "fill"]
    assert state["train_report"]["columns_dropped"] == ["glcm_sparse"]
    loaded = FittedImputer.load(tmp_path / "imputer")
    again = loaded.transform(test)
    pd.testing.assert_frame_equal(again.frame, expected.frame)
    pd.testing.assert_frame_equal(again.rejected, expected.rejected)
    assert again.report == expected.report
    assert loaded.train_report == fitted.train_report

    unpickled = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(unpickled.transform(test).frame, expected.frame)


def test_a_missing_required_column_is_named_at_prediction_time():
    fitted = _all_strategies_plan().fit(_radiomics_like(6, 0))
    test = _radiomics_like(2, 1)
    with pytest.raises(MissingColumnError, match="shape_perimeter"):
        fitted.transform(test.drop(columns=["shape_perimeter"]))
    with pytest.raises(MissingColumnError, match="series_pseudo_uid, slice_position|slice_pos"):
        fitted.transform(test.drop(columns=["slice_position", "series_pseudo_uid"]))
    assert "glcm_sparse" not in fitted.required_columns()  # dropped at fit: not needed
    with pytest.raises(ValueError, match="index must be unique"):
        fitted.transform(pd.concat([test, test]))


# -------------------------------------------------------------------------- reference check
@pytest.mark.parametrize("rule", [
    {"strategy": "fill", "columns": ["*"], "method": "median"},
    {"strategy": "model", "columns": ["*"], "estimator": "iterative"},
    {"strategy": "model", "columns": ["*"], "estimator": "bayesian_ridge",
     "train_rows": "observed_target"},
], ids=["median", "iterative", "per_column_bayesian_ridge"])
def test_wdbc_with_20_percent_missing_keeps_cv_accuracy_at_least_0_93(rule):
    """Breast cancer (WDBC), 20% of values removed (seeded), imputer fitted per training fold."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    y = data.target.to_numpy()
    holes = np.random.default_rng(0).random(data.data.shape) < 0.2
    X = data.data.mask(holes)
    assert 0.19 < X.isna().to_numpy().mean() < 0.21
    accuracies = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        fitted, train = plan(rule).fit_transform(X.iloc[tr])
        test = fitted.transform(X.iloc[te])
        assert train.report.rows_dropped == 0 and not test.frame.isna().any().any()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(train.frame, y[tr])
        accuracies.append(float((model.predict(test.frame) == y[te]).mean()))
    # measured: median 0.9561, iterative 0.9719, per-column BayesianRidge 0.9772
    # (the complete data, same folds: 0.9789)
    assert np.mean(accuracies) >= 0.93, accuracies


def test_medians_leaving_out_each_fold():
    """Column medians over the rows of every fold but one (None: all rows), NaN ignored, NaN
    for a column with nothing observed in those rows: what pandas gives on each subset."""
    from medspark.models.impute_steps import medians_leaving_out

    rng = np.random.default_rng(3)
    folds = rng.integers(0, 3, size=101)
    values = rng.normal(size=(101, 3))
    values[rng.random((101, 3)) < 0.2] = np.nan
    values[folds != 1, 2] = np.nan  # column 2: observed only in fold 1
    out = medians_leaving_out(folds, values, [None, 0, 1, 2])
    for i, f in enumerate([None, 0, 1, 2]):
        rows = pd.DataFrame(values if f is None else values[folds != f])
        np.testing.assert_allclose(out[i], rows.median().to_numpy(), rtol=1e-15)
    assert np.isnan(out[2, 2]) and not np.isnan(out[1, 2])
