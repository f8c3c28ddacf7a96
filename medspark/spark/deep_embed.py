"""The deep embed job: a trained deep model's embedding of every image, as a feature set.

    features/feature_set=deep-<model_id>/ (its own Delta table)   one row per image: image_id, the
        catalog's ids and labels, deep_0 .. deep_<D-1> (doubles), deep_recon_error
        (autoencoders), and a `features` vector of those columns (with ML attribute names)

The rows are the model's own source (the preprocessed/ partition of the pipeline it was trained
on, or pixels/ with the catalog), all of them, scored with `predict_batch_udf`: the CNN and
ResNet give their pooled features, the autoencoder its bottleneck (and reconstruction error,
an anomaly score), the GRU its per-slice encoder. Images already in the set are not embedded
again: a nightly run adds the new images only. `medspark train` and `medspark discover`
read the set like any other (`train.feature_set: deep-<model_id>`, `train.features:
["deep_*"]`). Rows without pixels (a preprocess error) are counted, not written.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings
from medspark.lake import Lake, local_path, table_of
from medspark.spark.deep_predict import embed, input_frame, model_config
from medspark.spark.deep_source import NOT_METADATA, write_features
from medspark.spark.runs import JobRun, job_run

PREFIX = "deep_"


def resolve_model(lake: Lake, model: str) -> str:
    """A deep model folder: a path, `models/<id>`, or `latest` (the newest finished deep
    model of the lake)."""
    root = Path(local_path(lake.path("models")))
    if model == "latest":
        done = [p for p in root.iterdir() if (p / "model_config.json").is_file()
                and (p / "metadata.json").is_file()] if root.is_dir() else []
        if not done:
            raise ConfigError(f"--model latest: no deep model under {root}; run "
                              "`medspark deep train` first")
        return str(max(done, key=lambda p: (p / "metadata.json").stat().st_mtime))
    for candidate in (Path(local_path(model)), root / model):
        if (candidate / "model_config.json").is_file() and (candidate / "model.pt").is_file():
            return str(candidate.resolve())
    raise ConfigError(f"model {model!r}: neither a deep model folder nor {root}/{model} "
                      "(model_config.json and model.pt)")


def feature_columns(dim: int, reconstruction: bool) -> list[str]:
    """deep_0 .. deep_<dim-1> (+ deep_recon_error)."""
    return [f"{PREFIX}{i}" for i in range(dim)] + (
        [f"{PREFIX}recon_error"] if reconstruction else [])


def run_deep_embed(spark: SparkSession, settings: Settings, lake_root: str, model: str) -> dict:
    """Embed every image of the model's source into features/ (feature_set=deep-<model_id>)."""
    lake = Lake(lake_root)
    model_dir = resolve_model(lake, model)
    with job_run(lake, "deep-embed") as run:
        return _embed(spark, settings, lake, run, model_dir)


def _embed(spark: SparkSession, settings: Settings, lake: Lake, run: JobRun,
           model_dir: str) -> dict:
    from medspark.deep.nets import embedding_dim

    doc = model_config(model_dir)
    frame = input_frame(spark, lake, model_dir)
    usable = F.col("data").isNotNull()
    if "preprocess_error" in frame.columns:
        usable &= F.col("preprocess_error").isNull()
    unusable = frame.where(~usable).count()
    keep = [c for c in frame.columns if c not in NOT_METADATA]
    feature_set = f"deep-{doc['model_id']}"
    table = table_of("features", feature_set)
    rows = frame.where(usable)
    if lake.exists(table):  # images embedded by an earlier run are not embedded again
        rows = rows.join(lake.read(spark, table).select("image_id").distinct(), "image_id",
                         "left_anti")
    rows = rows.select(*keep, "height", "width", "channels", "dtype", "data")
    dim = embedding_dim(doc["architecture"])
    recon = doc["objective"] == "reconstruction"
    names = feature_columns(dim, recon)
    out = embed(rows, model_dir, doc)
    cols = [F.col("embedding")[i].alias(f"{PREFIX}{i}") for i in range(dim)]
    if recon:
        cols.append(F.col("recon_error").alias(f"{PREFIX}recon_error"))
    out = out.select(*keep, *cols)
    out = VectorAssembler(inputCols=names, outputCol="features",
                          handleInvalid="keep").transform(out)
    _, commit = write_features(spark, out, lake, feature_set, run.run_id, "deep-embed")
    return run.manifest(spark, settings,
                        {"rows_added": commit.get("rows"), "unusable_rows": unusable},
                        {"features": {"table": lake.path(table), **commit}},
                        model_id=doc["model_id"], feature_set=feature_set,
                        n_features=len(names))
