"""Acceptance of the deep models on the synthetic sample lake (run by hand; minutes).

Writes `medspark sample` (default 64 patients, seed 3, 10 slices of 128 px per CT series;
nodule and non-nodule patients alternate), ingests it with its labels, preprocesses the CT
planes (lung window, resized to 64 px) and trains on held-out patients (the split of
`medspark train`):

1. `--arch cnn` on the preprocessed planes (each plane carries its series' label); the series
   score is the largest plane score of the series: ROC AUC over the held-out patients' labelled
   series (the sample's MPR and key-image objects have no label and are left out);
2. `--arch gru` over each series' slices in slice_position order: its own held-out ROC AUC.

Prints both AUCs (targets >= 0.9) and the time of each step. The settings below were chosen
on `--seed 5` (another sample: other patients, nodules and anatomy) and are reported on the
default seed 3; nothing is tuned on the held-out patients.

    .venv/bin/python benchmarks/deep_sample.py --patients 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MEDSPARK_PSEUDONYM_KEY", "medspark-deep-sample")

SETTINGS = [
    "spark.log_level=ERROR", "imaging.segment=[]",
    "imaging.preprocess=[{step: window, preset: lung}, {step: resize, size: 64}]",
    "deep.source=preprocessed", "deep.input_size=64", "deep.batch_size=32",
    "deep.optimizer.lr=0.003", "deep.patience=5", "train.test_size=0.3", "train.n_boot=200",
]
# global max pooling: a series is positive when a small nodule is somewhere in a slice
CNN = ["deep.arch=cnn", "deep.epochs=15", "deep.cnn.widths=[16, 32, 64]", "deep.cnn.pool=max",
       "deep.augment={rotation_deg: 10, flip_horizontal: 0.5}"]
# chosen on --seed 5 (with gru.norm: layer, the default): the CNN's three-block trunk as the
# slice encoder (two blocks see ~8 px of a 64 px plane, little context to tell a 3-8 px nodule
# in dark lung from a vessel or a rib) and no augmentation (each slice of a series gets its own
# variant): validation loss falls from epoch ~7, against ~10 for [16, 32] with augmentation
GRU = ["deep.arch=gru", "deep.epochs=30", "deep.batch_size=4", "deep.patience=10",
       "deep.gru.encoder_widths=[16, 32, 64]", "deep.gru.hidden=32", "deep.gru.pool=max"]


def series_auc(spark, lake: str, model_dir: str) -> tuple[float, int]:
    """ROC AUC of the largest plane score per series over the held-out patients' series."""
    import pandas as pd
    from pyspark.sql import functions as F

    from medspark.lake import Lake
    from medspark.models.metrics import roc_auc
    from medspark.spark.deep_predict import input_frame, predict_frame

    split = pd.read_parquet(f"{model_dir}/split")
    test = set(split.loc[split["split"] == "test", "group"])
    frame = input_frame(spark, Lake(lake), model_dir)
    pred = predict_frame(spark, model_dir, frame).join(
        frame.select("image_id", "series_pseudo_uid", "label"), "image_id")
    held_out = pred.where(F.col("patient_pseudo_id").isin(list(test)) & F.col("label").isNotNull())
    per_series = held_out.groupBy(
        "series_pseudo_uid").agg(F.max("score").alias("score"),
                                 F.max("label").alias("label")).toPandas()
    truth = (per_series["label"].astype(float) == 1).astype(int).to_numpy()
    return roc_auc(truth, per_series["score"].to_numpy()), len(per_series)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3, help="the sample's seed")
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workdir", help="keep data here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-deep-sample-"))
    try:
        from medspark.config import load_settings
        from medspark.sample import generate_sample
        from medspark.session import build_session
        from medspark.spark.deep_train import run_deep_train
        from medspark.spark.imaging import run_preprocess
        from medspark.spark.ingest import IngestRequest, run_ingest

        base = [*SETTINGS, f"deep.num_processes={args.processes}"]
        settings = load_settings(None, base)
        lake = str(work / "lake")
        t = time.perf_counter()
        generate_sample(work / "sample", patients=args.patients, seed=args.seed,
                        slices_per_series=args.slices, size=128)
        spark = build_session(settings.spark, conf={"spark.ui.showConsoleProgress": "false"})
        request = IngestRequest(inputs=[str(work / "sample" / "images")], lake=lake,
                                labels=str(work / "sample" / "labels.csv"))
        run_ingest(spark, settings, request, request.validate(settings))
        run_preprocess(spark, settings, lake)
        print(f"sample ({args.patients} patients, seed {args.seed}) ingested and preprocessed in "
              f"{time.perf_counter() - t:.0f}s")
        t = time.perf_counter()
        cnn = run_deep_train(spark, load_settings(None, base + CNN), lake)
        auc, n = series_auc(spark, lake, cnn["outputs"]["model"])
        print(f"cnn: plane-level held-out ROC AUC {cnn['test_metrics'].get('roc_auc'):.3f}; "
              f"series-level (max over planes) ROC AUC {auc:.3f} over {n} held-out series "
              f"({time.perf_counter() - t:.0f}s)")
        t = time.perf_counter()
        gru = run_deep_train(spark, load_settings(None, base + GRU), lake)
        print(f"gru: series-level held-out ROC AUC {gru['test_metrics'].get('roc_auc'):.3f} "
              f"over {gru['counts']['test_rows_scored']} series "
              f"({time.perf_counter() - t:.0f}s)")
        spark.stop()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
