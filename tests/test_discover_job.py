"""`medspark discover` on tables made in the test: planted patterns are found, WDBC reads
sensibly, outputs are Delta partitions that a re-run replaces. Thresholds, not golden values."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from sklearn.metrics import adjusted_rand_score

from medspark.config import ConfigError, load_settings
from medspark.discover.request import DiscoverRequest
from medspark.spark.discover import run_discover

OFF = {k: f"discover.{k}.enabled=false" for k in
       ("clusters", "rules", "tests", "correlations", "trends", "drift", "outliers")}
RUN_DATE = "2026-03-01"


def only(*analyses: str) -> list[str]:
    return [v for k, v in OFF.items() if k not in analyses]


def discover(spark, root: Path, table: pd.DataFrame, overrides: list[str]) -> dict:
    path = root / "table.parquet"
    if not path.exists():
        table.to_parquet(path, index=False)
    settings = load_settings(None, [f"discover.run_date={RUN_DATE}", "discover.id_col=row_id",
                                    "discover.group_col=patient", *overrides])
    request = DiscoverRequest(lake=str(root / "lake"), table=str(path))
    request.validate(settings.discover)
    return run_discover(spark, settings, request)


def read(manifest: dict, kind: str) -> pd.DataFrame:
    out = manifest["outputs"][kind]
    df = DeltaTable(out["table"]).to_pandas()
    return df[(df["input"] == manifest["input"]) & (df["run_date"].astype(str) == RUN_DATE)]


# ------------------------------------------------------------ clusters, rules, outliers
@pytest.fixture(scope="module")
def planted(spark, tmp_path_factory):
    """300 patients x 2 images: a 20% subgroup shifted by 4 SD on c0..c3; label=1 with
    probability 0.95 when contrast=yes and f_b is in its top quartile (else 0.08); one row
    12 SD out on n0."""
    rng = np.random.default_rng(1)
    n = 600
    patient = np.arange(n) // 2
    sub = np.isin(patient, rng.choice(300, 60, replace=False))
    x = {f"c{i}": rng.normal(size=n) + 4.0 * sub for i in range(4)}
    x |= {f"n{i}": rng.normal(size=n) for i in range(4)}
    x["f_b"] = rng.normal(size=n)
    contrast = rng.random(n) < 0.3
    rule = contrast & (x["f_b"] > np.quantile(x["f_b"], 0.75))
    label = np.where(rule, rng.random(n) < 0.95, rng.random(n) < 0.08).astype(int)
    x["n0"][17] = 12.0
    table = pd.DataFrame({"row_id": [f"r{i}" for i in range(n)],
                          "patient": [f"p{p}" for p in patient], **x,
                          "contrast": np.where(contrast, "yes", "no"), "label": label})
    root = tmp_path_factory.mktemp("discover-planted")
    manifest = discover(spark, root, table, [
        *only("clusters", "rules", "outliers", "correlations"), "discover.label=label",
        "discover.clusters.k_max=3", "discover.clusters.max_iter=10",
        "discover.outliers.top_n=5"])
    return root, table, sub, manifest


def test_planted_subgroup_is_one_cluster(planted):
    _, table, sub, manifest = planted
    assign = read(manifest, "cluster_assignments").set_index("id").loc[table["row_id"]]
    assert adjusted_rand_score(sub, assign["cluster"]) >= 0.9
    clusters = read(manifest, "clusters")
    assert clusters["k"].iloc[0] == 2 and clusters["size"].sum() == len(table)
    small = clusters.loc[clusters["size"].idxmin()]
    assert {f["name"] for f in small["top_features"][:4]} == {"c0", "c1", "c2", "c3"}
    assert all(f["smd"] > 2 for f in small["top_features"][:4])
    assert np.isfinite(assign["distance"]).all() and assign["silhouette"].between(-1, 1).all()
    assert manifest["counts"]["clusters"]["rows_assigned"] == len(table)


def test_planted_rule_is_found_with_lift(planted):
    _, _, _, manifest = planted
    rules = read(manifest, "association_rules")
    label_rules = rules[rules["label_rule"]]
    hit = label_rules[label_rules["antecedent"].map(lambda a: set(a) == {"contrast=yes",
                                                                          "f_b=Q4"})]
    assert len(hit) == 1
    assert list(hit["consequent"].iloc[0]) == ["label=1"]
    assert hit["lift"].iloc[0] > 2 and hit["confidence"].iloc[0] > 0.8
    assert hit["q_value"].iloc[0] < 0.05 and hit["n_rows"].iloc[0] > 20
    assert label_rules["rank"].min() == 1


def test_planted_outlier_ranks_first(planted):
    _, _, _, manifest = planted
    top = read(manifest, "outliers").sort_values("rank")
    assert len(top) == 5 and top["id"].iloc[0] == "r17" and top["group_id"].iloc[0] == "p8"
    assert top["drivers"].iloc[0][0]["feature"] == "n0"


def test_outputs_summary_plots_manifest_and_rerun(spark, planted):
    root, table, _, manifest = planted
    day = root / "lake" / "discoveries" / f"run_date={RUN_DATE}"
    doc = json.loads((day / "summary.json").read_text())
    entry = doc["inputs"][manifest["input"]]
    assert manifest["input"].startswith("table-") and entry["rows"] == len(table)
    assert any("clusters" in h for h in entry["headlines"])
    assert set(entry["skipped"]) == set() and "tests" not in entry
    for rel in entry["plots"].values():
        assert (day / rel).read_bytes()[:4] == b"\x89PNG"
    assert {"cluster_profiles", "k_selection"} <= set(entry["plots"])
    saved = json.loads(Path(manifest["manifest_path"]).read_text())
    assert saved["counts"]["association_rules"]["label_rules"] >= 1
    assert "clusters" in saved["sampled"] and saved["tables_written"]
    n_rules = len(read(manifest, "association_rules"))
    again = discover(spark, root, table, [*only("rules"), "discover.label=label"])
    assert again["input"] == manifest["input"]
    assert len(read(again, "association_rules")) == n_rules  # replaced, not appended
    assert again["outputs"]["association_rules"]["version"] > \
        manifest["outputs"]["association_rules"]["version"]
    assert len(read(manifest, "clusters")) == 2  # other kinds untouched
    doc = json.loads((day / "summary.json").read_text())
    assert list(doc["inputs"]) == [manifest["input"]] and "clusters" not in \
        doc["inputs"][manifest["input"]]


# ------------------------------------------------------------------------- FDR tests
def test_feature_tests_control_the_false_discovery_rate(spark, tmp_path):
    """200 features, 5 informative: at least 4 found, at most 2 false ones; one value per
    patient (2 images each), so repeated images do not count twice."""
    rng = np.random.default_rng(2)
    patients, per = 150, 2
    y = rng.random(patients) < 0.5
    base = rng.normal(size=(patients, 200))
    base[:, :5] += 1.2 * y[:, None]
    x = np.repeat(base, per, axis=0) + 0.3 * rng.normal(size=(patients * per, 200))
    table = pd.DataFrame(x, columns=[f"f{i:03d}" for i in range(200)])
    table.insert(0, "row_id", [f"r{i}" for i in range(len(table))])
    table.insert(1, "patient", [f"p{i // per}" for i in range(len(table))])
    table["label"] = np.repeat(y.astype(int), per)
    manifest = discover(spark, tmp_path, table, [*only("tests"), "discover.label=label",
                                                 "discover.tests.bins=50", "discover.plots=false"])
    tests = read(manifest, "feature_tests")
    found = set(tests.loc[tests["significant"], "feature"])
    informative = {f"f{i:03d}" for i in range(5)}
    assert len(found & informative) >= 4 and len(found - informative) <= 2
    assert (tests["unit"] == "patient").all() and tests["n"].max() == patients
    assert set(tests.nsmallest(5, "rank")["feature"]) == informative
    assert (tests.loc[tests["feature"].isin(informative), "auc"] > 0.7).all()


# ---------------------------------------------------------------------- drift, trends
@pytest.fixture(scope="module")
def drift_trend(spark, tmp_path_factory):
    """24 months x 30 images; batches b1..b3 at random; `drifting` +1 SD in b3 only,
    `rising` +0.15 SD per month, 40 stable features; scanner A/B."""
    rng = np.random.default_rng(3)
    months, per = 24, 30
    n = months * per
    month = np.repeat(np.arange(months), per)
    batch = rng.choice(["b1", "b2", "b3"], n)
    x = {f"s{i:02d}": rng.normal(size=n) for i in range(40)}
    x["drifting"] = rng.normal(size=n) + 1.0 * (batch == "b3")
    x["rising"] = rng.normal(size=n) + 0.15 * month
    dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(month * 30.44 + 10, unit="D")
    table = pd.DataFrame({"row_id": [f"r{i}" for i in range(n)],
                          "patient": [f"p{i}" for i in range(n)], **x,
                          "scanner": rng.choice(["A", "B"], n), "day": dates.date,
                          "batch": batch})
    root = tmp_path_factory.mktemp("discover-drift")
    manifest = discover(spark, root, table, [
        *only("trends", "drift"), "discover.label=", "discover.date_col=day",
        "discover.batch_col=batch", "discover.trends.split_by=[scanner]",
        "discover.trends.min_rows_per_stratum=100", "discover.plots=false"])
    return manifest


def test_drifting_feature_is_flagged_and_stable_ones_rarely(drift_trend):
    drift = read(drift_trend, "drift")
    features = drift[drift["kind"] == "feature"].set_index("name")
    assert features.loc["drifting", "drifted"]
    assert features.loc["drifting", "shift_sd"] > 0.7
    stable = features.loc[[f"s{i:02d}" for i in range(40)], "drifted"]
    assert stable.mean() < 1 / 20
    assert (drift["batch"] == "b3").all() and (drift["reference"] == "batch < b3").all()
    meta = drift[drift["kind"] == "metadata"].set_index("name")
    assert not meta.loc["scanner", "drifted"]


def test_drift_of_a_models_scores_reads_each_rows_latest_prediction(spark, tmp_path):
    """`discover.drift.model`: the scores the model gave (its latest run per row) drift in the
    newest batch although no feature does."""
    from deltalake import write_deltalake

    from medspark.lake import Lake, table_of

    rng = np.random.default_rng(11)
    n = 600
    batch = rng.choice(["b1", "b2", "b3"], n)
    table = pd.DataFrame({"row_id": [f"r{i}" for i in range(n)],
                          "patient": [f"p{i}" for i in range(n)], "x": rng.normal(size=n),
                          "batch": batch})
    stable = np.clip(rng.normal(0.3, 0.1, n), 0, 1)
    latest = np.where(batch == "b3", np.clip(stable + 0.3, 0, 1), stable)
    runs = [pd.DataFrame({"row_id": table["row_id"], "score": s,
                          "run_date": pd.Timestamp(d).date()})
            for s, d in ((stable, "2026-01-01"), (latest, "2026-02-01"))]
    lake = Lake(str(tmp_path / "lake"))
    write_deltalake(lake.path(table_of("predictions", "m1")), pd.concat(runs[::-1]))
    manifest = discover(spark, tmp_path, table, [
        *only("drift"), "discover.label=", "discover.batch_col=batch",
        "discover.drift.model=m1", "discover.plots=false"])
    drift = read(manifest, "drift").set_index("kind")
    score, feature = drift.loc["score"], drift.loc["feature"]
    assert score["name"] == "m1" and score["drifted"] and score["shift_sd"] > 2
    assert score["n_batch"] == (batch == "b3").sum()
    assert feature["name"] == "x" and not feature["drifted"]


def test_upward_trend_is_flagged_flat_series_are_not(drift_trend):
    tests = read(drift_trend, "trend_tests")
    overall = tests[tests["split"] == "all"].set_index("feature")
    assert overall.loc["rising", "trending"] and overall.loc["rising", "direction"] == "up"
    assert 0.1 < overall.loc["rising", "slope"] < 0.2
    flat = overall.loc[[f"s{i:02d}" for i in range(40)], "trending"]
    assert not overall.loc["s00", "trending"] and flat.mean() < 1 / 20
    by_scanner = tests[(tests["split"] == "scanner") & (tests["feature"] == "rising")]
    assert set(by_scanner["stratum"]) == {"A", "B"} and by_scanner["trending"].all()
    trends = read(drift_trend, "trends")
    assert trends.loc[trends["split"] == "all", "period"].nunique() == 24
    assert (trends["n_images"] >= trends["n"]).all()


# ------------------------------------------------------------------------------- WDBC
def _args(**kw) -> argparse.Namespace:
    from medspark.commands.discover import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    argv = ["discover"]
    for k, v in kw.items():
        for item in v if isinstance(v, list) else [v]:
            argv += [f"--{k.replace('_', '-')}", str(item)]
    return parser.parse_args(argv)


def test_wdbc_clusters_agree_with_diagnosis_and_tests_rank_known_features(
        spark, tmp_path, wdbc_frame, capsys):
    from medspark.commands.discover import run

    wdbc_frame.to_parquet(tmp_path / "wdbc.parquet", index=False)
    sets = [*only("clusters", "tests"), "discover.clusters.k_min=2",
            "discover.clusters.k_max=2", "discover.clusters.seeds=1",
            "discover.clusters.scaling=standard", "discover.plots=false",
            f"discover.run_date={RUN_DATE}"]
    args = _args(lake=tmp_path / "lake", table=tmp_path / "wdbc.parquet", id_col="row_id",
                 group_col="patient_id", label="target", set=sets,
                 conf="spark.sql.shuffle.partitions=2")
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "2 clusters" in out and "features differ by label" in out
    manifest = json.loads(Path(out.splitlines()[-1].split()[-1]).read_text())
    assign = read(manifest, "cluster_assignments").set_index("id")
    truth = wdbc_frame.set_index(wdbc_frame["row_id"].astype(str))["target"]
    joined = pd.crosstab(assign["cluster"], truth.loc[assign.index])
    assert joined.max(axis=1).sum() / joined.to_numpy().sum() >= 0.85
    tests = read(manifest, "feature_tests").sort_values("rank")
    top = list(tests["feature"].head(8))
    assert {"worst_concave_points", "worst_perimeter"} <= set(top)
    assert tests["significant"].sum() >= 20


def test_command_errors_before_spark(tmp_path, wdbc_frame):
    from medspark.commands.discover import prepare

    wdbc_frame.to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises(ConfigError, match="--id-col"):
        prepare(_args(lake=tmp_path, table=tmp_path / "t.parquet"))
    with pytest.raises(ConfigError, match="discover.label='nope'"):
        prepare(_args(lake=tmp_path, table=tmp_path / "t.parquet", id_col="row_id",
                      label="nope"))
    with pytest.raises(ConfigError, match="not found"):
        prepare(_args(lake=tmp_path, table=tmp_path / "missing.parquet", id_col="row_id"))
    with pytest.raises(ConfigError, match="no feature set"):
        prepare(_args(lake=tmp_path / "empty-lake"))
    import pyarrow as pa
    from deltalake import write_deltalake

    for name in ("s1", "s2"):  # one Delta table per feature set
        write_deltalake(str(tmp_path / "two" / "features" / f"feature_set={name}"),
                        pa.table({"image_id": ["a"], "x": [1.0]}))
    with pytest.raises(ConfigError, match=r"feature sets \['s1', 's2'\]"):
        prepare(_args(lake=tmp_path / "two"))
    with pytest.raises(ConfigError, match="--date selects"):
        prepare(_args(lake=tmp_path, table=tmp_path / "t.parquet", id_col="row_id",
                      date="2026-01-01"))
