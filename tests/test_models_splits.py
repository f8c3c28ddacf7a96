"""Patient-grouped splits: no patient on both sides, stratification, determinism, leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medspark.models.splits import (
    Split,
    assert_no_leakage,
    check_leakage,
    group_labels,
    grouped_stratified_kfold,
    infer_task,
    train_test_split_grouped,
)


def patients(n_patients: int = 60, seed: int = 0, positive_rate: float = 0.3) -> pd.DataFrame:
    """1-6 rows (lesions/slices) per patient, one label per patient, one numeric outcome."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = int(rng.random() < positive_rate)
        for k in range(int(rng.integers(1, 7))):
            rows.append({"patient": f"P{p:03d}", "label": label, "volume": rng.gamma(2, 3),
                         "slice": k})
    return pd.DataFrame(rows)


def test_train_test_split_keeps_patients_whole_and_stratifies():
    df = patients()
    split = train_test_split_grouped(df, "patient", "label", test_size=0.25, seed=1)
    assert not set(split.train_groups) & set(split.test_groups)
    assert sorted(np.r_[split.train, split.test].tolist()) == list(range(len(df)))
    per_patient = group_labels(df["patient"].to_numpy(), df["label"].to_numpy())
    n_groups = len(per_patient)
    assert len(split.test_groups) == int(np.ceil(0.25 * n_groups))
    # the positive share among test PATIENTS is the overall one, to one patient
    overall = per_patient.mean()
    test_rate = per_patient[split.test_groups].mean()
    assert abs(test_rate - overall) <= 1 / len(split.test_groups)
    assert check_leakage(df, "patient", split).ok


def test_splits_are_deterministic_and_independent_of_row_order():
    df = patients()
    a = train_test_split_grouped(df, "patient", "label", seed=7)
    b = train_test_split_grouped(df, "patient", "label", seed=7)
    np.testing.assert_array_equal(a.test, b.test)
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    c = train_test_split_grouped(shuffled, "patient", "label", seed=7)
    assert sorted(c.test_groups) == sorted(a.test_groups)
    d = train_test_split_grouped(df, "patient", "label", seed=8)
    assert sorted(d.test_groups) != sorted(a.test_groups)
    assert a.to_dict()["test_groups"] == a.test_groups


def test_stratification_needs_two_patients_per_class():
    df = pd.DataFrame({"patient": ["a", "a", "b", "c", "d"], "label": [1, 1, 0, 0, 0]})
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have fewer than 2 groups"):
        train_test_split_grouped(df, "patient", "label", test_size=0.5)
    with pytest.raises(ValueError, match="no label"):
        train_test_split_grouped(df.assign(label=[1, None, 0, 0, 0]), "patient", "label")
    with pytest.raises(KeyError, match="'subject'"):
        train_test_split_grouped(df, "subject", "label")


def test_regression_and_unlabelled_splits_are_grouped_too():
    df = patients()
    assert infer_task(df["volume"]) == "regression" and infer_task(df["label"]) == "classification"
    for split in (train_test_split_grouped(df, "patient", "volume", seed=3),
                  train_test_split_grouped(df, "patient", None, seed=3)):
        assert not set(split.train_groups) & set(split.test_groups)


@pytest.mark.parametrize("label_col", ["label", "volume"])
def test_kfold_folds_partition_the_patients(label_col):
    df = patients(80, seed=2)
    folds = grouped_stratified_kfold(df, "patient", label_col, k=5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(len(df)))  # each row tested exactly once
    assert check_leakage(df, "patient", folds).ok
    again = grouped_stratified_kfold(df, "patient", label_col, k=5, seed=0)
    for f, g in zip(folds, again, strict=True):
        np.testing.assert_array_equal(f.test, g.test)
    if label_col == "label":  # stratified: near the base rate (sklearn < 1.8 failed this)
        rate = df["label"].mean()
        for f in folds:
            assert abs(df["label"].iloc[f.test].mean() - rate) < 0.15
    with pytest.raises(ValueError, match="k must be in"):
        grouped_stratified_kfold(df.head(3), "patient", label_col, k=5)


def test_leakage_checker_finds_shared_patients_and_duplicate_rows():
    df = pd.DataFrame({"patient": ["a", "a", "b", "b", "c"], "f": [1.0, 2.0, 3.0, 3.0, 4.0]})
    leaky = [(np.array([0, 2]), np.array([1, 3, 4]))]
    report = check_leakage(df, "patient", leaky, feature_cols=["f"])
    assert not report.ok
    assert report.shared_groups == {0: ["a", "b"]}
    assert report.duplicate_rows == {0: 1}  # row 3 is a copy of training row 2
    with pytest.raises(ValueError, match="leaks"):
        assert_no_leakage(df, "patient", leaky)
    clean = Split(np.array([0, 1]), np.array([2, 3, 4]), ["a"], ["b", "c"])
    assert check_leakage(df, "patient", clean, feature_cols=["f"]).to_dict() == {
        "ok": True, "shared_groups": {}, "duplicate_rows": {}}


def _patient_signature_table(n_patients: int = 200, rows: int = 5, seed: int = 0) -> pd.DataFrame:
    """Label is a property of the patient only; features are a patient-specific signature."""
    rng = np.random.default_rng(seed)
    signature = rng.normal(size=(n_patients, 10))
    label = rng.permutation(np.arange(n_patients) % 2)
    pid = np.repeat(np.arange(n_patients), rows)
    X = signature[pid] + 0.1 * rng.normal(size=(len(pid), 10))
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    df["patient"] = [f"P{p:03d}" for p in pid]
    df["label"] = label[pid]
    return df


def _out_of_fold_auc(df: pd.DataFrame, folds: list[tuple[np.ndarray, np.ndarray]]) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    X = df.filter(regex=r"^f\d").to_numpy()
    y = df["label"].to_numpy()
    scores = np.zeros(len(df))
    for train, test in folds:
        model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
        scores[test] = model.fit(X[train], y[train]).predict_proba(X[test])[:, 1]
    return float(roc_auc_score(y, scores))


def test_grouped_cv_scores_chance_where_row_level_cv_leaks():
    """Nothing generalises across patients here, so an honest CV must score ~0.5."""
    from sklearn.model_selection import KFold

    df = _patient_signature_table()
    grouped = [(f.train, f.test) for f in grouped_stratified_kfold(df, "patient", "label", k=5)]
    naive = list(KFold(5, shuffle=True, random_state=0).split(df))
    auc_grouped = _out_of_fold_auc(df, grouped)
    auc_naive = _out_of_fold_auc(df, naive)
    # measured: grouped 0.414, row-level 0.9999
    assert 0.3 <= auc_grouped <= 0.7, auc_grouped
    assert auc_naive >= 0.95, auc_naive
    assert auc_naive - auc_grouped > 0.25
    assert check_leakage(df, "patient", grouped).ok
    naive_report = check_leakage(df, "patient", naive)
    assert not naive_report.ok and len(naive_report.shared_groups) == 5
