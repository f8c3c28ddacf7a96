"""Metrics against sklearn, bootstrap CIs (row and patient level), and the PNG plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from medspark.models import plots
from medspark.models.metrics import (
    average_precision,
    bootstrap,
    classification_metrics,
    clustering_metrics,
    regression_metrics,
    roc_auc,
)

BINARY = ["accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "f1", "sensitivity",
          "specificity", "brier", "confusion_matrix"]


@pytest.fixture(scope="module")
def wdbc_oof():
    """Out-of-fold probabilities of a logistic regression on the WDBC breast cancer data."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000))
    proba = cross_val_predict(model, X, y, cv=5, method="predict_proba")[:, 1]
    return X, y, proba


def noisy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), 2)  # rounded: many ties
    return y, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_values_equal_sklearn(seed):
    y, s = noisy_scores(300, seed)
    p = (s >= 0.5).astype(int)
    m = classification_metrics(y, s, n_boot=10, seed=seed)
    assert list(m) == BINARY
    expected = {
        "accuracy": skm.accuracy_score(y, p),
        "balanced_accuracy": skm.balanced_accuracy_score(y, p),
        "roc_auc": skm.roc_auc_score(y, s),
        "pr_auc": skm.average_precision_score(y, s),
        "f1": skm.f1_score(y, p),
        "sensitivity": skm.recall_score(y, p),
        "specificity": skm.recall_score(y, p, pos_label=0),
        "brier": skm.brier_score_loss(y, s),
    }
    for name, value in expected.items():
        assert m[name]["value"] == pytest.approx(value, abs=1e-12), name
    assert m["confusion_matrix"]["value"] == skm.confusion_matrix(y, p).tolist()
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_wdbc_metrics_with_cis(wdbc_oof):
    _, y, proba = wdbc_oof
    m = classification_metrics(y, proba, n_boot=1000, seed=0)
    json.dumps(m, allow_nan=False)  # JSON-able as it is
    assert m["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, proba), abs=1e-12)
    for name in BINARY[:-1]:
        entry = m[name]
        assert set(entry) == {"value", "ci_low", "ci_high", "n_boot_used"}
        assert entry["n_boot_used"] == 1000  # 569 rows, both classes always drawn
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    assert 0.95 < m["roc_auc"]["ci_low"] < m["roc_auc"]["ci_high"] <= 1.0
    assert m["accuracy"]["ci_high"] - m["accuracy"]["ci_low"] < 0.06
    assert m["confusion_matrix"]["labels"] == [0, 1]
    assert sum(map(sum, m["confusion_matrix"]["value"])) == len(y)


def test_bootstrap_is_deterministic_given_the_seed():
    y, s = noisy_scores(200, 5)
    a = classification_metrics(y, s, n_boot=300, seed=11)
    assert a == classification_metrics(y, s, n_boot=300, seed=11)
    b = classification_metrics(y, s, n_boot=300, seed=12)
    assert a["roc_auc"]["value"] == b["roc_auc"]["value"]
    assert a["roc_auc"]["ci_low"] != b["roc_auc"]["ci_low"]


def test_single_class_resamples_are_skipped_and_counted():
    y = np.array([1] + [0] * 11)
    s = np.linspace(0.9, 0.0, 12)
    m = classification_metrics(y, s, n_boot=2000, seed=0)
    # P(no positive among 12 draws) = (11/12)^12 = 0.352: about 1296 of 2000 usable
    used = m["roc_auc"]["n_boot_used"]
    assert 1200 < used < 1400
    assert {m[k]["n_boot_used"] for k in BINARY[:-1]} == {used}  # paired: same resamples
    # independent count of the same draws
    rng = np.random.default_rng(0)
    drawn = [y[rng.integers(0, 12, size=12)] for _ in range(2000)]
    assert used == sum(1 for d in drawn if 0 < d.sum() < 12)

    groups = np.repeat(np.arange(6), 2)  # the one positive patient is P0
    mg = classification_metrics(y, s, groups=groups, n_boot=2000, seed=0)
    # P(patient 0 not drawn in 6) = (5/6)^6 = 0.335
    assert 1250 < mg["roc_auc"]["n_boot_used"] < 1420
    all_one_class = classification_metrics(np.zeros(5), np.linspace(0, 1, 5), n_boot=50)
    assert all_one_class["roc_auc"] == {"value": None, "ci_low": None, "ci_high": None,
                                        "n_boot_used": 0}
    assert all_one_class["accuracy"]["value"] == pytest.approx(0.4)


def test_patient_level_bootstrap_widens_intervals_for_correlated_rows():
    """10 identical rows per patient carry the information of one: the group CI must see that."""
    y, s = noisy_scores(40, 3)
    reps = 10
    yy, ss = np.repeat(y, reps), np.repeat(s, reps)
    groups = np.repeat(np.arange(40), reps)
    rows = classification_metrics(yy, ss, n_boot=1000, seed=0)["roc_auc"]
    patients = classification_metrics(yy, ss, groups=groups, n_boot=1000, seed=0)["roc_auc"]
    per_patient = classification_metrics(y, s, n_boot=1000, seed=0)["roc_auc"]
    width = {k: v["ci_high"] - v["ci_low"] for k, v in
             {"rows": rows, "patients": patients, "one_row": per_patient}.items()}
    assert width["patients"] > 2.5 * width["rows"]
    assert width["patients"] == pytest.approx(width["one_row"], rel=0.2)


def test_labels_thresholds_and_explicit_predictions():
    y = np.array(["benign", "malignant", "malignant", "benign", "malignant", "benign"])
    s = np.array([0.1, 0.8, 0.4, 0.3, 0.9, 0.6])
    m = classification_metrics(y, s, n_boot=20)
    assert m["confusion_matrix"]["labels"] == ["benign", "malignant"]
    assert m["sensitivity"]["value"] == pytest.approx(2 / 3)
    m = classification_metrics(y, s, threshold=0.35, n_boot=20)
    assert m["sensitivity"]["value"] == 1.0 and m["specificity"]["value"] == pytest.approx(2 / 3)
    pred = np.array(["benign"] * 6)
    m = classification_metrics(y, s, y_pred=pred, n_boot=20)
    assert m["sensitivity"]["value"] == 0.0 and m["f1"]["value"] == 0.0
    m = classification_metrics(y, 1 - s, pos_label="benign", n_boot=20)
    assert m["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y == "benign", 1 - s))
    with pytest.raises(ValueError, match="3 classes"):
        classification_metrics([0, 1, 2], [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="finite scores"):
        classification_metrics([0, 1], [0.1, np.nan])


def test_regression_metrics_and_their_cis():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_predict

    X, y = load_diabetes(return_X_y=True)
    pred = cross_val_predict(Ridge(alpha=0.1), X, y, cv=5)
    m = regression_metrics(y, pred, n_boot=500, seed=0)
    assert m["rmse"]["value"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert m["mae"]["value"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"]["value"] == pytest.approx(skm.r2_score(y, pred))
    for entry in m.values():
        assert entry["ci_low"] < entry["value"] < entry["ci_high"] and entry["n_boot_used"] == 500
    groups = np.arange(len(y)) // 4
    assert regression_metrics(y, pred, groups=groups, n_boot=500)["r2"]["n_boot_used"] == 500
    const = regression_metrics([1.0, 1.0, 1.0], [1.0, 2.0, 0.0], n_boot=50)
    assert const["r2"]["value"] is None and const["r2"]["n_boot_used"] == 0
    assert const["mae"]["value"] == pytest.approx(2 / 3) and const["mae"]["n_boot_used"] == 50


def test_bootstrap_of_a_custom_metric_and_bad_groups():
    x = np.arange(10.0)
    out = bootstrap(lambda i: {"mean": float(x[i].mean())}, 10, n_boot=200, seed=1, ci=0.9)
    assert out["mean"]["value"] == 4.5 and out["mean"]["ci_low"] < 4.5 < out["mean"]["ci_high"]
    with pytest.raises(ValueError, match="groups has 3 entries"):
        bootstrap(lambda i: {"m": 0.0}, 10, groups=[1, 2, 3])


def test_clustering_metrics():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    m = clustering_metrics(X, y)
    assert m["silhouette"]["value"] == pytest.approx(skm.silhouette_score(X, y))
    assert m["cluster_sizes"]["value"] == {"0": 50, "1": 50, "2": 50}
    noisy = y.copy()
    noisy[:5] = -1  # DBSCAN-style noise: counted, not scored
    m = clustering_metrics(X, noisy)
    assert m["cluster_sizes"]["value"]["-1"] == 5 and m["n_clusters"]["value"] == 3
    assert m["silhouette"]["value"] == pytest.approx(skm.silhouette_score(X[5:], y[5:]))
    assert clustering_metrics(X, np.zeros(150))["silhouette"]["value"] is None
    json.dumps(m, allow_nan=False)


# -------------------------------------------------------------------------------------- plots
def _png(path, min_size=(300, 300)):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img[..., :3].std() > 0.05  # something was drawn
    return img


def test_plots_write_pngs(tmp_path, wdbc_oof):
    _, y, proba = wdbc_oof
    pred = (proba >= 0.5).astype(int)
    assert plots.plot_roc(y, proba, tmp_path / "a" / "roc.png") == tmp_path / "a" / "roc.png"
    _png(tmp_path / "a" / "roc.png")
    _png(plots.plot_pr(y, proba, tmp_path / "pr.png"))
    _png(plots.plot_calibration(y, proba, tmp_path / "cal.png", n_bins=8, strategy="quantile"))
    _png(plots.plot_confusion_matrix(y, pred, tmp_path / "cm.png", labels=[1, 0]))
    _png(plots.plot_confusion_matrix(y, pred, tmp_path / "cmn.png", normalize=True))


def test_importance_plot_shows_the_top_n(tmp_path, wdbc_oof):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y, _ = wdbc_oof
    coef = LogisticRegression(max_iter=1000).fit(StandardScaler().fit_transform(X), y).coef_[0]
    names = list(load_breast_cancer().feature_names)
    few = _png(plots.plot_feature_importance(names, coef, tmp_path / "top5.png", top_n=5),
               (200, 300))
    many = _png(plots.plot_feature_importance(names, coef, tmp_path / "top25.png", top_n=25))
    assert many.shape[0] > few.shape[0]  # taller with more bars
    with pytest.raises(ValueError, match="3 names for 30 values"):
        plots.plot_feature_importance(names[:3], coef, tmp_path / "bad.png")
