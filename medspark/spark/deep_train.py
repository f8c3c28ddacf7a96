"""The deep train job: lake planes -> patient-grouped split -> TorchDistributor (DDP) ->
held-out evaluation -> `models/<model_id>/`.

1. Rows: `preprocessed/` or `pixels/` + catalog (`deep_source`); only metadata columns reach
   the driver's plans, never pixels. Rows without a label are left out and counted; a row
   whose group (`train.group_col`) is null is its own group (the manifest counts them).
   The GRU works on series (`train.series_col`; a plane without one is its own series).
2. Split: `medspark train`'s own assignment (`medspark.spark.models.folds.assign_folds`,
   with the `train:` settings `test_size`, `seed`, `group_col`), so both hold out the same
   patients: computed in Spark from the group ids and labels, only counts reach the driver.
   Validation = CV fold 0 of `deep.validation_folds` folds of the training groups.
3. Training: Spark writes the index (image_id, target, split) next to the model; every
   TorchDistributor process streams its own row groups of the source table's Parquet files and
   keeps the rows of its split (`medspark.deep.data`). The GRU's series are assembled by a
   Spark shuffle into a series table under the model folder first (a series' slices live in
   different files).
4. Evaluation: the held-out rows are scored in Spark with `predict_batch_udf`; metrics,
   bootstrap CIs and plots come from `medspark train`'s own functions.

    models/<model_id>/ model.pt model_config.json metadata.json metrics.json history.json
                       split/ (Parquet: group -> train / validation / test)
                       training_curves.png roc.png pr.png calibration.png confusion.png

`model_id` = `torch-<arch>-<sha256 of the settings that change results, the split, the
source and a fingerprint of the index rows>[:16]`: the same data and settings give the same
folder, which is how a killed run finds its checkpoints and resumes (`deep.resume`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings
from medspark.deep.config import DeepSettings
from medspark.jsonable import dumps, num
from medspark.jsonable import short_hash as sha
from medspark.lake import Lake, is_local, local_path
from medspark.models.config import TrainSettings
from medspark.spark.deep_source import Source, load_source, series_rows
from medspark.spark.models.base import FOLD, GROUP, LABEL
from medspark.spark.runs import JobRun, job_run

log = logging.getLogger(__name__)
SPLIT = "_split"
TRAIN, VALIDATION, TEST = 0, 1, 2
RUN_ONLY = {"num_processes", "local_mode", "device", "threads", "predict_batch_size",
            "keep_checkpoints", "resume", "loader_workers"}  # no effect on the model id


@dataclass
class Units:
    """The training units (plane or series rows: key, group, target) and what was counted."""

    frame: DataFrame
    key: str
    labels: list[Any] | None
    counts: dict[str, int] = field(default_factory=dict)
    cached: DataFrame | None = None  # the metadata rows, unpersisted when the job ends


def deep_settings(settings: Settings, **overrides: Any) -> DeepSettings:
    """`settings.deep` with the command-line overrides that are not None, validated."""
    base = getattr(settings, "deep", None) or DeepSettings()
    upd = {k: v for k, v in overrides.items() if v is not None}
    if not upd:
        return base
    try:
        return DeepSettings.model_validate({**base.model_dump(exclude_unset=True), **upd})
    except ValueError as e:
        raise ConfigError(f"deep settings with {upd}: {e}") from None


# --------------------------------------------------------------------------------- rows
def training_units(spark: SparkSession, src: Source, cfg: DeepSettings, train: TrainSettings,
                   label: str | None, group: str) -> Units:
    """Plane (or series, for the GRU) rows with `_ms_label` (see module doc).
    Only metadata columns (id, label, group, series) are selected, and cached: they are small
    and the split, the fingerprint and the index all read them."""
    from medspark.spark.train import encode_label

    if label and label not in src.planes.columns:
        raise ConfigError(f"label column {label!r} is not in the {src.description['table']}"
                          f" rows; columns: {sorted(src.metadata)}")
    series = train.series_col
    cols = ["image_id", *([label] if label else []),
            *([group] if group in src.planes.columns else []),
            *([series] if cfg.arch == "gru" and series in src.planes.columns else [])]
    usable = F.lit(True) if src.usable is None else src.usable
    rows = src.all_planes.select(*dict.fromkeys(cols), usable.alias("_usable"))
    if group not in rows.columns:
        rows = rows.withColumn(group, F.lit(None).cast("string"))
    if cfg.arch == "gru" and series not in rows.columns:
        rows = rows.withColumn(series, F.lit(None).cast("string"))
    cached = rows = rows.cache()
    ok = F.col("_usable")
    nulls = [F.count(F.when(ok, 1)).alias("planes"),
             F.count(F.when(~ok, 1)).alias("planes_unusable"),
             F.count(F.when(ok & F.col(group).isNull(), 1)).alias("planes_without_group")]
    if label:
        nulls.append(F.count(F.when(ok & F.col(label).isNull(), 1))
                     .alias("planes_without_label"))
    if cfg.arch == "gru":
        nulls.append(F.count(F.when(ok & F.col(series).isNull(), 1))
                     .alias("planes_without_series"))
    counts = {k: int(v) for k, v in rows.agg(*nulls).first().asDict().items()}
    rows = rows.where(ok).drop("_usable")
    labels = None
    if label:
        rows, labels = encode_label(spark, rows.where(F.col(label).isNotNull()), label,
                                    train.model_copy(update={"task": cfg.task}))
    else:
        rows = rows.withColumn(LABEL, F.lit(0.0))
    key = "image_id"
    if cfg.arch == "gru":  # one row per series; a plane without one is its own series
        key = series
        rows = rows.withColumn(key, F.coalesce(F.col(series), F.col("image_id"))).groupBy(
            key).agg(F.max(group).alias(group), F.max(LABEL).alias(LABEL),
                     F.count(F.lit(1)).alias("n_slices"))
    return Units(rows, key, labels, counts, cached)


def assign_splits(units: Units, group: str, stratify: bool, train: TrainSettings,
                  folds: int) -> tuple[DataFrame, dict[str, Any], DataFrame]:
    """Add `_split` (0 train, 1 validation, 2 test) with `medspark train`'s own assignment
    (`assign_folds`: in Spark, by a seeded hash rank of the group id within its class; only
    counts reach the driver): its held-out groups are the test split, its CV fold 0 of
    `folds` the validation split. Also returns the group table (group, split name)."""
    from medspark.spark.models.folds import assign_folds

    framed, table, info = assign_folds(units.frame, group=group, key=units.key,
                                       stratify=stratify, test_size=train.test_size, k=folds,
                                       seed=train.seed, labels=units.labels,
                                       folds_setting="deep.validation_folds")
    split = F.when(F.col(FOLD) == -1, TEST).when(F.col(FOLD) == 0, VALIDATION) \
        .otherwise(TRAIN)
    framed = framed.withColumn(SPLIT, split.cast("int"))
    name = F.when(F.col(FOLD) == -1, "test").when(F.col(FOLD) == 0, "validation") \
        .otherwise("train")
    groups = table.select(F.col(GROUP).alias("group"), name.alias("split"))
    rows, n_groups = info["rows_by_fold"], info["groups_by_fold"]
    units.counts["units_without_group"] = int(info["groups_without_id"])
    out = {"groups": {"train": sum(n_groups[str(f)] for f in range(1, folds)),
                      "validation": n_groups["0"], "test": n_groups["-1"]},
           "rows": {"train": sum(rows[str(f)] for f in range(1, folds)),
                    "validation": rows["0"], "test": rows["-1"]},
           "test_size": train.test_size, "seed": train.seed, "validation_folds": folds,
           "stratified": stratify, "method": info.get("method"),
           "null_groups": "rows whose group is null are their own group (own:<key>)"}
    return framed, out, groups


# ---------------------------------------------------------------------------- model folder
def model_id_of(cfg: DeepSettings, label: str | None, group: str, train: TrainSettings,
                src: Source, fingerprint: dict[str, Any]) -> str:
    doc = {"deep": cfg.model_dump(mode="json", exclude=RUN_ONLY), "label": label,
           "group": group, "split": {"test_size": train.test_size, "seed": train.seed},
           "source": {k: v for k, v in src.description.items() if k != "version"},
           "data": fingerprint}
    return f"torch-{cfg.arch}-{sha(doc)}"


def prepare_folder(out: str, resume: bool) -> int | None:
    """Keep an unfinished run's folder to resume it (returns its last epoch), else start empty;
    a finished model of the same id is replaced, as `medspark train` does."""
    from medspark.deep.loop import last_checkpoint

    finished = os.path.isfile(os.path.join(out, "metadata.json"))
    last = None if finished or not resume else last_checkpoint(out)
    if last is None:
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        return None
    return int(os.path.basename(last)[len("epoch-"):-len(".pt")])


def write_training_data(src: Source, framed: DataFrame, units: Units, cfg: DeepSettings,
                        work: str, n_units: int) -> dict[str, Any]:
    """What the processes stream: planes -> the index file next to the source's own files;
    GRU -> a series table (a Spark shuffle). Returns DataSpec fields."""
    from medspark.deep.data import list_units

    if cfg.arch != "gru":
        index = f"{work}/index"
        (framed.select("image_id", F.col(LABEL).alias("_y"), SPLIT).coalesce(1)
         .write.mode("overwrite").parquet(index))
        return {"kind": "planes", "units": list_units(src.files), "index_path": index}
    series = units.key
    sid = F.col(series) if series in src.planes.columns else F.lit(None).cast("string")
    planes = src.planes.withColumn("_sk", F.coalesce(sid, F.col("image_id")))
    keyed = planes.join(F.broadcast(framed.select(F.col(series).alias("_sk"),
                                                  F.col(LABEL).alias("_y"), SPLIT)), "_sk")
    table = series_rows(keyed, "_sk", ["_y", SPLIT]).withColumnRenamed("_sk", "key")
    n_files = max(2 * cfg.num_processes, math.ceil(n_units / 128))  # shards of ~128 series
    path = f"{work}/series"
    table.repartition(n_files, "key").write.mode("overwrite").parquet(path)
    files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".parquet"))
    return {"kind": "series", "units": list_units(files), "index_path": None}


# ---------------------------------------------------------------------------- distribution
def default_threads(cfg: DeepSettings) -> int | None:
    """torch threads per process: the setting, else the driver's cores / processes (local)."""
    if cfg.threads:
        return cfg.threads
    if not cfg.local_mode:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
    return max(1, cores // cfg.num_processes)


def use_gpu(spark: SparkSession, cfg: DeepSettings) -> bool:
    """TorchDistributor's use_gpu: only when Spark itself schedules GPUs (driver resources in
    local mode, `spark.task.resource.gpu.amount` otherwise). Without that, a process still
    takes `cuda:<local rank>` when it sees one (device auto / cuda)."""
    if cfg.device == "cpu":
        return False
    if cfg.local_mode:
        return "gpu" in spark.sparkContext.resources
    return float(spark.conf.get("spark.task.resource.gpu.amount", "0") or 0) >= 1


def distribute(spark: SparkSession, job: Any, cfg: DeepSettings) -> dict[str, Any]:
    """Run `run_training(job)` in `num_processes` TorchDistributor processes."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from medspark.deep.loop import run_training

    runner = TorchDistributor(num_processes=cfg.num_processes, local_mode=cfg.local_mode,
                              use_gpu=use_gpu(spark, cfg))
    return runner.run(run_training, job)


# ------------------------------------------------------------------------------ evaluation
def test_frame(src: Source, framed: DataFrame, units: Units, cfg: DeepSettings,
               work: str) -> DataFrame:
    """The held-out rows with their pixels (planes) or slices (GRU series table)."""
    spark = framed.sparkSession
    if cfg.arch == "gru":
        table = spark.read.parquet(f"{work}/series").where(F.col(SPLIT) == TEST)
        groups = framed.select(F.col(units.key).alias("key"), GROUP)
        return table.join(groups, "key").withColumn(LABEL, F.col("_y"))
    ids = framed.where(F.col(SPLIT) == TEST).select("image_id", GROUP, LABEL)
    return src.planes.join(ids, "image_id")


def evaluate(frame: DataFrame, out: str, doc: dict[str, Any], cfg: DeepSettings,
             train: TrainSettings, labels: list[Any] | None) -> tuple[dict, pd.DataFrame, list]:
    """Test metrics (bootstrap CIs by group) and plots, by medspark train's functions."""
    from medspark.models.metrics import bootstrap
    from medspark.spark.deep_predict import score
    from medspark.spark.models.evaluation import test_metrics, write_plots

    key = "key" if cfg.arch == "gru" else "image_id"
    pdf = score(frame, out, doc).select(key, GROUP, LABEL, "score", "prediction").toPandas()
    pdf = pdf.sort_values(key, kind="stable").reset_index(drop=True)
    if cfg.objective == "reconstruction":
        err = pdf["score"].to_numpy(dtype=float)
        metrics = bootstrap(lambda i: {"recon_mse": float(np.mean(err[i]))}, len(err),
                            groups=pdf[GROUP].to_numpy(), n_boot=train.n_boot, seed=train.seed)
        return metrics, pdf, []
    metrics = test_metrics(pdf, cfg.objective, labels, GROUP, train, None)
    plots = write_plots(out, pdf, cfg.objective, labels, None, [])
    return metrics, pdf, plots


# -------------------------------------------------------------------------------------- job
def run_deep_train(spark: SparkSession, settings: Settings, lake_root: str, *,
                   arch: str | None = None, label: str | None = None, task: str | None = None,
                   source: str | None = None, group_col: str | None = None) -> dict:
    """Train, evaluate and save a deep model into `models/<model_id>/`; returns the manifest.
    Arguments left None come from the `deep:` (arch, label, task, source) and `train:`
    (label, group_col, test split) settings."""
    cfg = deep_settings(settings, arch=arch, task=task, source=source, label=label)
    lake = Lake(lake_root)
    if not is_local(lake.root):
        raise ConfigError("deep train writes models/ with local file I/O: use a local lake")
    with job_run(lake, "deep-train") as run:
        return _deep_train(spark, settings, lake, run, cfg, group_col)


def _deep_train(spark: SparkSession, settings: Settings, lake: Lake, run: JobRun,
                cfg: DeepSettings, group_col: str | None) -> dict:
    from medspark.deep.data import DataSpec
    from medspark.deep.history import plot_history
    from medspark.deep.infer import write_model_config
    from medspark.deep.loop import TrainJob
    from medspark.spark.train import data_fingerprint

    run_id = run.run_id
    train = settings.train
    supervised = cfg.objective != "reconstruction"
    label_col = (cfg.label or train.label) if supervised else None
    group = group_col or train.group_col
    clock = Stopwatch()
    src = load_source(spark, lake, settings, cfg.source, cfg.modalities)
    units = training_units(spark, src, cfg, train, label_col, group)
    clock.lap("rows")
    framed = None
    try:
        framed, split_info, groups = assign_splits(
            units, group, supervised and cfg.task == "classification", train,
            cfg.validation_folds)
        framed = framed.cache()
        clock.lap("split")
        fingerprint = data_fingerprint(framed.select(units.key, GROUP, LABEL, SPLIT))
        model_id = model_id_of(cfg, label_col, group, train, src, fingerprint)
        out = local_path(f"{lake.path('models')}/{model_id}")
        resumed_from = prepare_folder(out, cfg.resume)
        work = f"{out}/_work"
        n_out = len(units.labels) if supervised and cfg.task == "classification" else 1
        doc = {"model_id": model_id, "architecture": cfg.architecture(n_out),
               "transform": cfg.transform(), "objective": cfg.objective,
               "labels": units.labels, "key_col": units.key, "group_col": group,
               "series_col": train.series_col, "predict_batch_size": cfg.predict_batch_size,
               "source": {**src.description, "modalities": cfg.modalities}}
        write_model_config(out, doc)
        groups.coalesce(1).write.mode("overwrite").parquet(f"{out}/split")
        data = write_training_data(src, framed, units, cfg, work,
                                   sum(split_info["rows"].values()))
        clock.lap("training_data")
        spec = DataSpec(**data, transform=cfg.transform(),
                        augment=cfg.augment.variation() if cfg.augment else None, seed=cfg.seed,
                        shuffle_buffer=cfg.shuffle_buffer, max_slices=cfg.gru.max_slices,
                        loader_workers=cfg.loader_workers,
                        target_dtype="float32" if cfg.objective == "regression" else "int64")
        job = TrainJob(doc["architecture"], cfg.objective, spec, out, cfg.epochs,
                       cfg.batch_size, cfg.optimizer.model_dump(), cfg.schedule.model_dump(),
                       cfg.seed, cfg.patience, cfg.min_delta, cfg.device, default_threads(cfg),
                       cfg.resume, cfg.keep_checkpoints)
        log.info("deep train %s: %s, %d unit(s), %d process(es)", run_id, model_id,
                 sum(split_info["rows"].values()), cfg.num_processes)
        summary = distribute(spark, job, cfg)
        train_s = clock.lap("torch_distributor")
        test = test_frame(src, framed, units, cfg, work)
        metrics, test_pdf, plots = evaluate(test, out, doc, cfg, train, units.labels)
        clock.lap("evaluation")
    finally:
        for frame in (framed, units.cached):
            if frame is not None:
                frame.unpersist()
    history = summary["history"]
    plots.append(os.path.basename(str(plot_history(history, f"{out}/training_curves.png",
                                                   summary["best_epoch"]))))
    counts = {**units.counts, "units": sum(split_info["rows"].values()),
              "train_rows": summary["rows"]["train"],
              "validation_rows": summary["rows"]["validation"],
              "test_rows_scored": int(len(test_pdf))}
    config_doc = cfg.model_dump(mode="json")
    training = {k: summary[k] for k in ("best_epoch", "best_val_loss", "epochs_run",
                                        "stopped_early", "resumed_from", "world_size",
                                        "device", "backend", "threads", "parameters",
                                        "images_per_s_median")}
    training.update(seconds=clock.laps, train_s=round(train_s, 3),
                    folder_resumed=resumed_from is not None,
                    distributor={"num_processes": cfg.num_processes,
                                 "local_mode": cfg.local_mode, "use_gpu": use_gpu(spark, cfg)})
    metrics_doc = {
        "model_id": model_id, "task": cfg.objective, "algorithm": cfg.arch, "kind": "torch",
        "params": doc["architecture"],
        "selection": {"metric": "val_loss", "folds": cfg.validation_folds,
                      "cv_mean": num(summary["best_val_loss"]), "cv_sd": None},
        "test": metrics, "counts": counts, "history": history, "training": training}
    _write_json(f"{out}/metrics.json", metrics_doc)
    preprocessing = {**doc["source"], "transform": cfg.transform()}
    if cfg.source == "preprocessed":
        preprocessing["imaging"] = settings.imaging.model_dump(mode="json")
    meta = {
        "model_id": model_id, "task": cfg.objective, "algorithm": cfg.arch, "kind": "torch",
        "model_file": "model.pt", "model_config": "model_config.json",
        "params": doc["architecture"], "architecture": doc["architecture"],
        "label_col": label_col, "labels": units.labels, "group_col": group,
        "key_col": units.key, "id_col": "image_id", "series_col": train.series_col,
        "aggregate": "series" if cfg.arch == "gru" else "none",
        "input_columns": ["image_id", "height", "width", "channels", "dtype", "data"],
        "preprocessing": preprocessing, "seed": cfg.seed, "config": config_doc,
        "config_hash": sha(config_doc), "data_fingerprint": fingerprint,
        "source": doc["source"], "split": split_info, "train_run_id": run_id,
        "snapshot": {"counts": counts}, "training": training, "plots": plots,
        "versions": versions(), "created_at": dt.datetime.now(dt.UTC).isoformat()}
    _write_json(f"{out}/metadata.json", meta)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(f"{out}/checkpoints", ignore_errors=True)
    return run.manifest(spark, settings, counts, {"model": out}, model_id=model_id,
                        task=cfg.objective, arch=cfg.arch, split=split_info, history=history,
                        training=training,
                        test_metrics={k: v.get("value") for k, v in metrics.items()})


class Stopwatch:
    """Seconds per stage of the job (in the manifest: where the time went)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.time()

    def lap(self, name: str) -> float:
        now = time.time()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
        return self.laps[name]


def versions() -> dict[str, Any]:
    import torch

    from medspark.spark.train import versions as train_versions

    return {**train_versions(), "torch": torch.__version__}



def _write_json(path: str, doc: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        fh.write(dumps(doc))

