"""The sample's nodule label is learnable from medspark features on held-out patients."""

from __future__ import annotations

import json
from pathlib import Path

from medspark.config import load_settings
from medspark.sample import generate_sample
from medspark.spark.imaging import run_features
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.spark.train import run_train

TRAIN = [
    "train.aggregate=series_max",            # the label is per series; a nodule cuts few slices
    "train.features=[firstorder_*]",
    "train.test_size=0.4",
    "train.n_boot=200",
    "train.selection.folds=3",
    "train.selection.metric=roc_auc",
    "train.selection.candidates=[{algorithm: LogisticRegression, params: {maxIter: 100},"
    " grid: {regParam: [0.01, 0.1]}}]",
]


def test_lesion_label_is_learned_on_held_out_patients(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("sample-model")
    generate_sample(root / "sample", patients=32, seed=3, slices_per_series=10, size=128)
    lake = str(root / "lake")
    settings = load_settings(None, ["features.families=[firstorder]", *TRAIN])
    request = IngestRequest(inputs=[str(root / "sample" / "images")], lake=lake,
                            labels=str(root / "sample" / "labels.csv"))
    run_ingest(spark, settings, request, request.validate(settings))
    run_features(spark, settings, lake)
    manifest = run_train(spark, settings, lake)
    metrics = json.loads((Path(manifest["outputs"]["model"]) / "metrics.json").read_text())
    test = metrics["test"]
    assert manifest["counts"]["test_rows"] >= 8  # series of held-out patients
    assert test["roc_auc"]["value"] >= 0.9, test["roc_auc"]
    assert test["roc_auc"]["ci_low"] is not None
