"""A made-up, fully filled night: for tests, the docs screenshot and trying the renderer.

The numbers are random draws with a fixed seed (no real data, no PHI); two features are shifted
so the drift section has something to flag. `discovery_dir`, when given, receives a small
`summary.json` in the layout `medspark discover` is expected to write, with one plot beside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np

from medspark.report.drift import flag_drift
from medspark.report.model import (
    DataSection,
    Distribution,
    FeatureDrift,
    FilesSection,
    Histogram,
    HistoryEntry,
    ImagesSection,
    Metric,
    ModelSection,
    NightSummary,
    QualitySection,
    QuarantineReason,
    RiskRow,
    Stage,
    TrendPoint,
)

FEATURES = ["firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "glcm_Correlation",
            "shape_Sphericity", "shape_MeshVolume", "glrlm_RunEntropy", "ngtdm_Busyness"]


def _pseudo(i: int) -> str:
    return hashlib.sha256(f"example-{i}".encode()).hexdigest()[:16]


def _hist(values: np.ndarray, edges: np.ndarray) -> Histogram:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return Histogram(edges=edges.tolist(), counts=counts.tolist())


def _dist(values: np.ndarray, edges: np.ndarray) -> Distribution:
    q1, med, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return Distribution(n=len(values), median=float(med), q1=float(q1), q3=float(q3),
                        histogram=_hist(values, edges))


def _features(rng: np.random.Generator, n_tonight: int) -> DataSection:
    out = []
    for i, name in enumerate(FEATURES):
        prev = rng.normal(10 + i, 1 + i / 4, 4000)
        shift = (1.2 + i / 4) if i in (1, 5) else 0.0
        tonight = rng.normal(10 + i + shift, 1 + i / 4, n_tonight)
        edges = np.quantile(prev, np.linspace(0, 1, 21))
        edges[0], edges[-1] = min(edges[0], tonight.min()), max(edges[-1], tonight.max())
        out.append(FeatureDrift(feature=name, tonight=_dist(tonight, edges),
                                previous=_dist(prev, edges)))
    return DataSection(reference="the 30 nights before", features=flag_drift(out),
                       method="binned two-sample KS over 20 quantile bins of the reference; "
                              "BH q <= 0.05 and KS >= 0.1 flags")


def _discovery(folder: Path, rng: np.random.Generator) -> None:
    from medspark.figures import figure as _figure

    folder.mkdir(parents=True, exist_ok=True)
    fig = _figure((4.0, 3.0))
    ax = fig.add_subplot()
    ax.scatter(*rng.normal(size=(2, 60)), c=rng.integers(0, 3, 60), s=10)
    ax.set(title="clusters (PCA)")
    fig.savefig(folder / "clusters.png", format="png", dpi=80)
    entry = {
        "input": "features", "rows": 2440, "groups": 610, "n_features": 107, "label": "nodule",
        "task": "classification",
        "headlines": ["2440 rows from 610 patients/groups, 107 features, label 'nodule'.",
                      "Cluster 2 (18% of rows): high glcm_Contrast (+1.4 SD); label rate 0.31 "
                      "vs 0.10 overall (q=0.002).",
                      "glcm_Contrast for manufacturer=B increases 0.21 IQR/month (q=0.01)."],
        "clusters": {"k": 3, "algorithm": "kmeans", "silhouette": 0.41,
                     "clusters": [{"cluster": c, "size": int(s), "share": round(s / 244, 3),
                                   "label_rate": r, "top_features": [
                                       {"name": "glcm_Contrast", "smd": round(d, 2)}]}
                                  for c, s, r, d in [(0, 120, 0.05, -0.6), (1, 80, 0.07, 0.1),
                                                     (2, 44, 0.31, 1.4)]]},
        "rules": {"n_rules": 57, "top_label_rules": [
            {"antecedent": ["glcm_Contrast=Q4", "modality=CT"], "consequent": ["label=1"],
             "support": 0.06, "confidence": 0.71, "lift": 3.4, "n_rows": 146}]},
        "drift": {"batch": folder.name.removeprefix("run_date="), "n_drifted_features": 2,
                  "drifted": [{"name": "firstorder_Entropy", "psi": 0.31, "kind": "feature"},
                              {"name": "shape_MeshVolume", "psi": 0.27, "kind": "feature"}]},
        "plots": ["clusters.png"],
    }
    summary = {"schema_version": 1, "run_date": folder.name.removeprefix("run_date="),
               "inputs": {"features": entry}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def example_night(date: dt.date = dt.date(2025, 3, 14), *, seed: int = 0,
                  discovery_dir: str | Path | None = None) -> NightSummary:
    """A complete NightSummary with every section filled (discovery only with a folder)."""
    from medspark.report.discovery import load_discovery

    rng = np.random.default_rng(seed)
    n_images = 230
    stages = [
        Stage(name="ingest", status="ok", duration_s=84.2, counts={"files": 1240, "images": 230},
              throughput=14.7, throughput_unit="files/s", outputs=["catalog@12", "pixels@12"]),
        Stage(name="masks", status="ok", duration_s=21.5, counts={"images": 230},
              throughput=10.7),
        Stage(name="preprocess", status="ok", duration_s=48.0, counts={"images": 228},
              throughput=4.8),
        Stage(name="features", status="ok", duration_s=131.9, counts={"images": 228},
              throughput=1.7),
        Stage(name="predict", status="ok", duration_s=12.3, counts={"predictions": 228},
              throughput=18.5),
        Stage(name="discover", status="ok" if discovery_dir else "skipped", duration_s=40.1
              if discovery_dir else None,
              reason=None if discovery_dir else "medspark discover is not installed"),
        Stage(name="report", status="ok", duration_s=2.2),
    ]
    trend = [TrendPoint(date=date - dt.timedelta(days=k), quarantined=int(rng.poisson(6)),
                        step_errors=int(rng.poisson(1.5)), images=int(rng.integers(150, 300)))
             for k in range(29, 0, -1)]
    trend.append(TrendPoint(date=date, quarantined=10, step_errors=2, images=n_images))
    scores = rng.beta(1.2, 5, 228)
    top = np.argsort(scores)[::-1][:10]
    discovery = None
    if discovery_dir is not None:
        folder = Path(discovery_dir) / f"run_date={date.isoformat()}"
        _discovery(folder, rng)
        discovery = load_discovery(folder)
    return NightSummary(
        date=date, lake="/data/lake", run_id=f"nightly-{date.isoformat()}",
        started_at=dt.datetime.combine(date, dt.time(2, 0, 3)),
        finished_at=dt.datetime.combine(date, dt.time(2, 5, 43)),
        config_hash="3f1c9a7e52b04d6b8e0f", versions={"medspark": "0.1.0", "pyspark": "4.0"},
        stages=stages,
        files=FilesSection(listed=1240, new=240, skipped_already_ingested=1000, quarantined=[
            QuarantineReason(reason="not a readable image", count=6,
                             examples=["site-a/2025-03-14/notes.txt", "site-a/2025-03-14/x.bin"]),
            QuarantineReason(reason="unsupported transfer syntax", count=4,
                             examples=["site-b/s07/img0001.dcm"])]),
        images=ImagesSection(total=n_images, per_modality={"CT": 180, "MR": 40, "CR": 10},
                             per_body_part={"CHEST": 150, "ABDOMEN": 60, "HEAD": 20},
                             planes_per_series=Histogram(
                                 edges=[1, 2, 11, 51, 101, 201, 401],
                                 counts=[10, 4, 12, 30, 22, 6])),
        quality=QualitySection(trend=trend, step_errors={"resample": 1, "window": 1}),
        data=_features(rng, 228),
        model=ModelSection(
            model_id="rf-2025-03-01-7c2e", task="classification", trained_at="2025-03-01",
            validation_metrics={
                "roc_auc": Metric(value=0.87, ci_low=0.82, ci_high=0.91, n_boot_used=1000),
                "pr_auc": Metric(value=0.61, ci_low=0.52, ci_high=0.70, n_boot_used=1000),
                "confusion_matrix": Metric(value=[[180, 12], [9, 27]], labels=[0, 1])},
            predictions=228, class_counts={"0": 190, "1": 38}, score_name="P(nodule)",
            score_histogram=Histogram(edges=np.linspace(0, 1, 21).tolist(),
                                      counts=np.histogram(scores, np.linspace(0, 1, 21))[0]
                                      .tolist()),
            highest_risk=[RiskRow(series_id=_pseudo(int(i)), score=float(scores[i]),
                                  predicted="1" if scores[i] >= 0.5 else "0", modality="CT",
                                  body_part="CHEST") for i in top]),
        discovery=discovery,
        history=[HistoryEntry(date=p.date, status="ok" if p.step_errors < 3 else
                              "needs_attention", images=p.images, quarantined=p.quarantined,
                              step_errors=p.step_errors) for p in trend[-6:-1]],
    )
