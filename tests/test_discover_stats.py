"""The Spark-free statistics of `medspark discover`, against scipy / scikit-learn references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import adjusted_rand_score, roc_auc_score, silhouette_samples

from medspark.config import ConfigError, load_settings
from medspark.discover import clusters, correlation, drift, enrichment, fdr, plots, ranks
from medspark.discover import rules as rrules
from medspark.discover import summary as dsummary
from medspark.discover.outliers import OutlierModel
from medspark.discover.trend import trend_test

RNG = np.random.default_rng(0)


def _bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts over [edge_i, edge_i+1) with -inf/+inf outermost (as Spark's Bucketizer)."""
    idx = np.searchsorted(edges, values, side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(float)


def _moments(x: np.ndarray) -> ranks.GroupMoments:
    return ranks.GroupMoments(len(x), float(np.mean(x)), float(np.var(x, ddof=1)))


# --------------------------------------------------------------------------------- FDR
def test_bh_matches_the_step_up_definition_and_skips_missing():
    p = np.array([0.001, 0.04, 0.03, 0.5, np.nan, 0.012])
    ok = p[np.isfinite(p)]
    order = np.argsort(ok)
    m = len(ok)
    expected = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):  # q_(i) = min_{j >= i} p_(j) m / j
        running = min(running, ok[order[rank - 1]] * m / rank)
        expected[order[rank - 1]] = running
    q = fdr.bh_qvalues(p)
    assert np.isnan(q[4])
    np.testing.assert_allclose(q[np.isfinite(p)], expected)
    assert list(fdr.significant(q, 0.05)) == [True, True, True, False, False, True]


# ----------------------------------------------------------------------- rank statistics
def test_mann_whitney_from_exact_bins_equals_scipy_and_sklearn():
    pos = np.round(RNG.normal(0.5, 1, 60), 1)  # rounding: ties across classes
    neg = np.round(RNG.normal(0.0, 1, 80), 1)
    edges = np.unique(np.concatenate([pos, neg]))
    res = ranks.mann_whitney_binned(_bins(pos, edges), _bins(neg, edges))
    ref = stats.mannwhitneyu(pos, neg, method="asymptotic")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert res.auc == pytest.approx(roc_auc_score(y, np.r_[pos, neg]), rel=1e-12)
    assert res.cliffs_delta == pytest.approx(2 * res.auc - 1)


def test_mann_whitney_with_coarse_bins_stays_close():
    pos, neg = RNG.normal(0.8, 1, 2000), RNG.normal(0, 1, 3000)
    exact = roc_auc_score(np.r_[np.ones(2000), np.zeros(3000)], np.r_[pos, neg])
    edges = np.quantile(np.r_[pos, neg], np.linspace(0, 1, 101)[1:-1])
    res = ranks.mann_whitney_binned(_bins(pos, edges), _bins(neg, edges))
    assert abs(res.auc - exact) < 0.01
    assert res.p_value < 1e-50


def test_kruskal_from_bins_equals_scipy():
    groups = [np.round(RNG.normal(m, 1, n), 1) for m, n in ((0, 40), (0.4, 50), (1.0, 30))]
    edges = np.unique(np.concatenate(groups))
    res = ranks.kruskal_binned(np.vstack([_bins(g, edges) for g in groups]))
    ref = stats.kruskal(*groups)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-6)


def test_moment_tests_equal_scipy_on_the_raw_values():
    a, b, c = RNG.normal(1, 2, 50), RNG.normal(0, 1, 70), RNG.normal(0.5, 1, 40)
    welch = ranks.welch_t(_moments(a), _moments(b))
    assert welch.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    pooled = np.sqrt(((49) * a.var(ddof=1) + 69 * b.var(ddof=1)) / 118)
    assert ranks.cohen_d(_moments(a), _moments(b)) == pytest.approx((a.mean() - b.mean())
                                                                    / pooled)
    f = ranks.anova([_moments(a), _moments(b), _moments(c)])
    ref = stats.f_oneway(a, b, c)
    assert f.statistic == pytest.approx(ref.statistic) and f.p_value == pytest.approx(ref.pvalue)
    both = ranks.combine([_moments(a), _moments(b)])
    ab = np.r_[a, b]
    assert both.mean == pytest.approx(ab.mean()) and both.var == pytest.approx(ab.var(ddof=1))


def test_spearman_p_equals_scipy():
    x = RNG.normal(size=40)
    y = x + RNG.normal(size=40)
    ref = stats.spearmanr(x, y)
    assert ranks.spearman_p(ref.statistic, 40) == pytest.approx(ref.pvalue, rel=1e-9)


def test_midranks_of_tie_groups():
    np.testing.assert_allclose(ranks.midranks([2, 1, 3]), [1.5, 3, 5])


# ----------------------------------------------------------------------------- trends
def test_trend_flags_an_upward_series_not_a_flat_one():
    t = np.arange(24.0)
    up = trend_test(t, 0.2 * t + RNG.normal(0, 1, 24))
    assert up.p_value < 0.01 and 0.1 < up.slope < 0.3 and up.slope_low < 0.2 < up.slope_high
    flat = trend_test(t, RNG.normal(0, 1, 24))
    assert flat.p_value > 0.05
    assert trend_test(t, np.ones(24)).p_value == 1.0
    assert np.isnan(trend_test([1, 2], [1, 2]).p_value)


# ------------------------------------------------------------------------------ drift
def test_ks_from_exact_bins_equals_scipy():
    a, b = np.round(RNG.normal(0, 1, 300), 2), np.round(RNG.normal(0.3, 1, 200), 2)
    edges = np.unique(np.r_[a, b])
    d, p = drift.ks_binned(_bins(a, edges), _bins(b, edges))
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-6)


def test_psi_separates_a_one_sd_shift_from_noise():
    ref = RNG.normal(0, 1, 5000)
    edges = np.quantile(ref, np.linspace(0, 1, 201)[1:-1])
    stable = drift.feature_drift(_bins(ref, edges), _bins(RNG.normal(0, 1, 1000), edges), 10)
    shifted = drift.feature_drift(_bins(ref, edges), _bins(RNG.normal(1, 1, 1000), edges), 10)
    assert stable.psi < 0.05 and stable.p_value > 0.01
    assert shifted.psi > 0.5 and shifted.p_value < 1e-20 and shifted.ks_statistic > 0.3
    assert drift.psi([10, 10], [10, 10]) == pytest.approx(0.0)
    # the coarse groups hold about a tenth of the reference each
    sizes = np.bincount(drift.merge_bins(_bins(ref, edges), 10), weights=_bins(ref, edges))
    assert len(sizes) == 10 and sizes.min() > 0.08 * len(ref)


def test_category_drift_names_unseen_values():
    res = drift.category_drift(["CT", "MR", "PET"], [500, 300, 0], [50, 30, 40])
    assert res.new_values == ["PET"] and res.p_value < 1e-10 and res.psi > 0.25
    same = drift.category_drift(["CT", "MR"], [500, 300], [50, 30])
    assert same.new_values == [] and same.p_value > 0.5


# ------------------------------------------------------------------------- enrichment
def test_class_enrichment_of_clusters():
    table = np.array([[80, 20], [10, 90], [30, 70]])  # columns: class 0, class 1
    res = enrichment.class_enrichment(table, positive=1)
    assert res[1].rate == pytest.approx(0.9) and res[1].lift > 1.4 and res[1].p_value < 1e-10
    assert res[0].lift < 1
    assert res[1].p_value == pytest.approx(
        stats.fisher_exact([[90, 10], [90, 110]]).pvalue)
    multi = enrichment.class_enrichment(np.array([[50, 5, 5], [5, 50, 5]]), positive=None)
    assert all(e.p_value < 1e-10 and np.isnan(e.rate) for e in multi)


def test_rule_p_value_and_mean_enrichment():
    assert enrichment.rule_p_value(95, 100, 0.2) < 1e-30
    assert enrichment.rule_p_value(20, 100, 0.2) > 0.3
    groups = [_moments(RNG.normal(5, 1, 50)), _moments(RNG.normal(0, 1, 200))]
    res = enrichment.mean_enrichment(groups)
    assert res[0].p_value < 1e-10 and res[0].lift > 1


# ------------------------------------------------------------------------------ rules
def test_prune_keeps_interactions_and_drops_redundant_rules():
    r = rrules.Rule
    rules = [r(("a",), ("y=1",), 0.2, 0.9, 3.0),
             r(("a", "b"), ("y=1",), 0.1, 0.85, 2.8),  # longer, no better: pruned
             r(("c",), ("y=1",), 0.3, 0.4, 1.3),
             r(("c", "d"), ("y=1",), 0.1, 0.95, 3.1),  # the interaction: kept
             r(("a", "b"), ("z=1",), 0.1, 0.5, 1.2)]  # other consequent: kept
    kept = rrules.prune_redundant(rules)
    assert [k.antecedent for k in kept] == [("a",), ("c",), ("c", "d"), ("a", "b")]
    assert rrules.bin_item("glcm_Contrast", 3) == "glcm_Contrast=Q4"


# --------------------------------------------------------------------------- clusters
def test_adjusted_rand_from_a_contingency_table_equals_sklearn():
    a, b = RNG.integers(0, 3, 300), RNG.integers(0, 4, 300)
    b[:150] = a[:150]
    table = pd.crosstab(a, b).to_numpy()
    assert clusters.adjusted_rand_from_table(table) == pytest.approx(adjusted_rand_score(a, b))


def test_silhouettes_from_aggregates_equal_sklearn_squared_euclidean():
    x = np.r_[RNG.normal(0, 1, (40, 3)), RNG.normal(4, 1, (30, 3)), [[9, 9, 9]]]
    labels = np.r_[np.zeros(40), np.ones(30), [2]].astype(int)
    geo = clusters.ClusterGeometry(
        np.bincount(labels).astype(float), np.vstack([x[labels == c].mean(0) for c in range(3)]),
        np.array([np.mean(np.sum(x[labels == c] ** 2, 1)) for c in range(3)]))
    ours = clusters.silhouettes(x, labels, geo)
    ref = silhouette_samples(x, labels, metric="sqeuclidean")
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert ours[-1] == 0.0  # a singleton


def test_standardized_differences_find_the_shifted_features():
    inside = RNG.normal([3, 0, 0], 1, (50, 3))
    rest = RNG.normal(0, 1, (200, 3))
    moments = [[_moments(g[:, j]) for j in range(3)] for g in (inside, rest)]
    smd = clusters.standardized_differences(moments)
    assert smd[0, 0] > 2 and abs(smd[0, 1]) < 0.5 and smd[1, 0] < -2
    top = clusters.top_features(smd[0], ["a", "b", "c"], 2)
    assert top[0][0] == "a"


def test_choose_k_prefers_silhouette_among_stable_fits():
    k = clusters.KScore
    scores = [k(2, 0.5, 0.99), k(3, 0.6, 0.4), k(4, 0.55, 0.95)]
    assert clusters.choose_k(scores).k == 3
    assert clusters.choose_k(scores, min_stability=0.9).k == 4


# ------------------------------------------------------------------------- correlation
def test_redundancy_groups_and_representatives():
    base = RNG.normal(size=500)
    x = np.c_[base, base + RNG.normal(0, 0.1, 500), -base + RNG.normal(0, 0.1, 500),
              RNG.normal(size=500)]
    names = ["a", "b", "c", "d"]
    corr = np.corrcoef(x, rowvar=False)
    groups = correlation.redundancy_groups(corr, names, 0.9)
    assert groups[0] == groups[1] == groups[2] != groups[3]
    pairs = correlation.strong_pairs(corr, names, 0.9)
    assert len(pairs) == 3 and all(abs(p.r) >= 0.9 for p in pairs)
    reps = correlation.representatives(groups, names, [0.1, 0.5, 0.2, 0.3])
    assert reps == ["b", "d"]


# --------------------------------------------------------------------------- outliers
@pytest.mark.parametrize("method", ["mahalanobis", "isolation_forest"])
def test_outlier_model_ranks_a_planted_row_first(method):
    x = RNG.normal(size=(500, 6))
    x[:, 1] = x[:, 0] + RNG.normal(0, 0.1, 500)  # collinear pair
    x[7] = [0, 0, 6, 10, -8, 6]
    x[9, 2] = np.nan  # a missing value scores like the median
    med, iqr = np.nanmedian(x, 0), np.subtract(*np.nanpercentile(x, [75, 25], 0))
    model = OutlierModel.fit(x, list("abcdef"), med, iqr, method=method, seed=0)
    scores = model.score(x)
    assert np.argmax(scores) == 7 and np.isfinite(scores).all()
    assert [d[0] for d in model.drivers(x[[7]], 2)[0]] == ["d", "e"]


# ---------------------------------------------------------------------------- summary
def _entry() -> dict:
    return {
        "input": "table-abc", "rows": 100, "groups": 50, "n_features": 3, "label": "y",
        "task": "classification", "positive": "1",
        "clusters": {"k": 2, "algorithm": "kmeans", "silhouette": 0.5, "stability": 0.9,
                     "sample": "k chosen on all 100 rows", "clusters": [
                         {"cluster": 0, "size": 30, "share": 0.3, "label_rate": 0.9,
                          "label_lift": 2.0, "label_q_value": 1e-5, "label_enriched": True,
                          "top_features": [{"name": "a", "smd": 2.0}]},
                         {"cluster": 1, "size": 70, "share": 0.7, "label_rate": 0.2,
                          "label_lift": 0.5, "label_q_value": 1e-5, "label_enriched": False,
                          "top_features": [{"name": "a", "smd": -2.0}]}]},
        "tests": {"n_significant": 1, "n_features": 3, "fdr": 0.05, "unit": "patient",
                  "n_units": 50, "top": [{"feature": "a", "auc": 0.9, "direction": "higher",
                                          "rho": None, "significant": True}]},
        "drift": {"batch": "b2", "reference": "batch < b2", "n_batch": 10, "n_reference": 90,
                  "n_drifted_features": 1, "n_features": 3,
                  "drifted": [{"kind": "feature", "name": "a", "psi": 0.8, "shift_sd": 1.1},
                              {"kind": "metadata", "name": "manufacturer", "psi": 2.0,
                               "new_values": ["ACME"]}]},
    }


def test_headlines_and_merge():
    lines = dsummary.headlines(_entry())
    text = "\n".join(lines)
    assert lines[0].startswith("100 rows from 50")
    assert "label rate 0.90 vs 0.41 overall" in text and "enriched" in text
    assert "AUC for y=1: a 0.90 (higher)" in text
    assert "new values ['ACME']" in text
    doc = dsummary.merge(None, "2026-02-01", {"input": "x", "v": 1})
    doc = dsummary.merge(doc, "2026-02-01", {"input": "y", "v": 2})
    doc = dsummary.merge(doc, "2026-02-01", {"input": "x", "v": 3})
    assert doc["inputs"] == {"x": {"input": "x", "v": 3}, "y": {"input": "y", "v": 2}}
    assert dsummary.merge(doc, "2026-02-02", {"input": "z"})["inputs"].keys() == {"z"}


def test_plots_are_png():
    profile = pd.DataFrame([[2.0, -1.0], [-2.0, 1.0]], columns=["a", "b"])
    png = plots.cluster_profiles(profile, {0: 0.3, 1: 0.7})
    assert png[:4] == b"\x89PNG"
    assert plots.k_selection([{"k": 2, "silhouette": 0.5, "stability": None}])[:4] == b"\x89PNG"
    assert plots.drift(pd.DataFrame(columns=["psi"]), 0.1) is None


# ----------------------------------------------------------------------------- config
def test_discover_settings_are_validated():
    s = load_settings(None, ["discover.clusters.k_max=4", "discover.label="])
    assert s.discover.clusters.k_max == 4 and s.discover.label is None
    assert s.discover.enabled() == ["clusters", "rules", "tests", "correlations", "trends",
                                    "drift", "outliers"]
    with pytest.raises(ConfigError, match="unknown key 'discover.clusters.kmax'"):
        load_settings(None, ["discover.clusters.kmax=4"])
    with pytest.raises(ConfigError, match="k_max"):
        load_settings(None, ["discover.clusters.k_min=5", "discover.clusters.k_max=3"])
    with pytest.raises(ConfigError, match="discover.tests.method"):
        load_settings(None, ["discover.tests.method=anova"])
