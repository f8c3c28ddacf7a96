"""The lake as Delta tables: one commit per run, schema enforcement, dead runs' files cleaned,
concurrent writers, crash safety with real processes killed, time travel for training."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from deltalake import DeltaTable
from pydicom.data import get_testdata_file

from medspark import delta
from medspark.config import Settings, load_settings
from medspark.lake import Lake, table_of
from medspark.models.config import TrainSettings
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.spark.train import run_train

DAY = dt.date(2026, 5, 1)
SCHEMA = pa.schema([("image_id", pa.string()), ("v", pa.int64()),
                    ("ingest_date", pa.date32())])


def stage(table: str, run_id: str, rows: dict) -> list[delta.StagedFile]:
    """Write one Parquet file of `rows` into a run's stage folder, as a worker does."""
    folder = Path(table) / delta.stage_dir(run_id) / f"ingest_date={DAY.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), folder / "part-0.parquet")
    return delta.scan_staged(table, run_id, ["ingest_date"])


def commit_run(table: str, run_id: str, rows: dict) -> int | None:
    files = delta.publish(table, stage(table, run_id, rows), run_id)
    version = delta.commit(table, files, schema=SCHEMA, partition_by=["ingest_date"],
                           run_id=run_id, job="test")
    delta.finish_stage(table, run_id)
    return version


def test_one_commit_per_run_with_history_and_time_travel(tmp_path):
    table = str(tmp_path / "t")
    assert commit_run(table, "r1", {"image_id": ["a", "b"], "v": [1, 2]}) == 0
    assert commit_run(table, "r2", {"image_id": ["c"], "v": [3]}) == 1
    runs = [(h["version"], h["run_id"]) for h in delta.history(table)]
    assert runs == [(1, "r2"), (0, "r1")]
    assert delta.snapshot(table).rows == 3
    assert sorted(DeltaTable(table, version=0).to_pandas().image_id) == ["a", "b"]
    assert delta.committed_version(table, "r2") == 1
    names = [Path(f).name for f in delta.snapshot(table).files]
    assert all(n.startswith(("part-r1-", "part-r2-")) for n in names)
    assert not (Path(table) / "_stage" / "r1").exists()


def test_a_run_whose_schema_differs_fails_naming_the_column(tmp_path):
    table = str(tmp_path / "t")
    commit_run(table, "r1", {"image_id": ["a"], "v": [1]})
    files = delta.publish(table, stage(table, "r2", {"image_id": ["b"], "v": ["x"]}), "r2")
    wrong = pa.schema([("image_id", pa.string()), ("v", pa.string()),
                       ("ingest_date", pa.date32())])
    with pytest.raises(delta.SchemaMismatchError, match="'v' is string in this run but int64"):
        delta.commit(table, files, schema=wrong, partition_by=["ingest_date"], run_id="r2",
                     job="test")
    assert delta.snapshot(table).rows == 1


def test_dead_runs_files_are_removed_and_live_ones_kept(tmp_path):
    """A run killed after publishing (before its commit) leaves files no commit references;
    the next run removes them, but never a live run's staged files or committed files."""
    lake = Lake(str(tmp_path / "lake"))
    table = lake.path("catalog")
    commit_run(table, "done-20260501T000000Z-aaaaaa", {"image_id": ["a"], "v": [1]})
    dead = "ingest-20260501T000001Z-dead00"
    published = delta.publish(table, stage(table, dead, {"image_id": ["x"], "v": [9]}), dead)
    stage(table, dead + "b", {"image_id": ["y"], "v": [9]})  # staged, never published
    live = "ingest-20260501T000002Z-live00"
    stage(table, live, {"image_id": ["z"], "v": [7]})
    leases = Path(lake.root) / "_runs" / "_active"
    leases.mkdir(parents=True)
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()  # a pid that no longer runs
    for run_id, pid in ((dead, dead_proc.pid), (dead + "b", dead_proc.pid),
                        (live, os.getpid())):
        (leases / f"{run_id}.json").write_text(json.dumps(
            {"run_id": run_id, "pid": pid, "host": os.uname().nodename,
             "started": time.time()}))
    removed = lake.remove_orphans()
    assert str(Path(table) / published[0].path) in removed
    assert not (Path(table) / "_stage" / dead).exists()
    assert not (Path(table) / "_stage" / (dead + "b")).exists()
    assert (Path(table) / "_stage" / live).is_dir()
    assert sorted(DeltaTable(table).to_pandas().image_id) == ["a"]
    assert all(os.path.exists(f) for f in delta.snapshot(table).files)


def _append_many(table: str, tag: str, n: int) -> None:
    for i in range(n):
        commit_run(table, f"{tag}{i}", {"image_id": [f"{tag}{i}"], "v": [i]})


def test_concurrent_writers_lose_no_commit(tmp_path):
    table = str(tmp_path / "t")
    commit_run(table, "init", {"image_id": ["init"], "v": [0]})
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(table, tag, 8)) for tag in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = sorted(DeltaTable(table).to_pandas().image_id)
    assert ids == sorted(["init"] + [f"{t}{i}" for t in ("p", "q") for i in range(8)])
    assert len(delta.history(table)) == 17


# ------------------------------------------------------------------------ with Spark/jobs
def ct_folder(root: Path, tag: str, n: int) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ds.SOPInstanceUID = f"1.2.3.{abs(hash(tag)) % 10**6}.{i}"
        ds.save_as(root / f"{tag}{i}.dcm")
    (root / f"{tag}-broken.dcm").write_bytes(b"not dicom")
    return root


def cli_ingest(src: Path, lake: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "MEDSPARK_PSEUDONYM_KEY": "medspark-test-key"}
    env.pop("MEDSPARK_CRASH_AT", None)
    if crash_at:
        env["MEDSPARK_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "medspark.cli", "ingest", "--input", str(src), "--lake",
         str(lake), "--set", f"ingest.ingest_date={DAY.isoformat()}", "--master", "local[1]",
         "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lake_state(lake: Path) -> dict:
    """What a Delta reader sees: rows per table and whether every cataloged plane has its
    pixels (a run's tables are committed pixels first)."""
    out = {}
    for name in ("catalog", "pixels", "quarantine"):
        path = lake / name
        out[name] = DeltaTable(str(path)).to_pandas() if (path / "_delta_log").is_dir() \
            else pd.DataFrame(columns=["image_id", "source_path"])
    planes = out["catalog"]
    if len(planes):
        planes = planes[planes.plane_index.notna()]
    assert set(planes.image_id) <= set(out["pixels"].image_id)
    return out


# (a kill at published:catalog, during ingest, is tests/test_nightly.py's)
@pytest.mark.parametrize("point", ["committed:pixels"])
def test_kill_9_during_ingest_then_rerun_commits_exactly_once(spark, tmp_path, point):
    src = ct_folder(tmp_path / "in", "k", 3)
    reference = tmp_path / "reference"
    settings = load_settings(None, [f"ingest.ingest_date={DAY.isoformat()}"])
    request = IngestRequest(inputs=[str(src)], lake=str(reference))
    run_ingest(spark, settings, request, request.validate(settings))
    lake = tmp_path / "lake"
    killed = cli_ingest(src, lake, crash_at=point)
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    lake_state(lake)  # readers see whole tables only (checked inside)
    leftovers = list(lake.glob("*/_stage/*")) + list(lake.glob("*/ingest_date=*/*.parquet"))
    assert leftovers  # the killed run left files behind...
    again = cli_ingest(src, lake)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    state, want = lake_state(lake), lake_state(reference)
    for name in ("catalog", "pixels", "quarantine"):
        key = "image_id" if name != "quarantine" else "source_path"
        assert sorted(state[name][key]) == sorted(want[name][key]), name
        assert len(DeltaTable(str(lake / name)).history()) <= 2
    # ...and the re-run removed every file no commit references
    referenced = {os.path.abspath(f) for t in ("catalog", "pixels", "quarantine")
                  for f in DeltaTable(str(lake / t)).file_uris()}
    on_disk = {os.path.abspath(p) for p in lake.glob("*/**/*.parquet")}
    assert on_disk == referenced
    assert json.loads(out)["counts"]["all_files_accounted"] is True


def test_two_concurrent_ingests_into_one_lake(tmp_path):
    a, b = ct_folder(tmp_path / "a", "a", 3), ct_folder(tmp_path / "b", "b", 3)
    lake = tmp_path / "lake"
    procs = [cli_ingest(a, lake), cli_ingest(b, lake), cli_ingest(a, lake)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
    state = lake_state(lake)
    names = sorted(Path(p).name for p in state["catalog"].source_path)
    assert names == sorted([f"a{i}.dcm" for i in range(3)] + [f"b{i}.dcm" for i in range(3)])
    assert state["pixels"].image_id.is_unique and len(state["pixels"]) == 6
    assert sorted(Path(p).name for p in state["quarantine"].source_path) == [
        "a-broken.dcm", "b-broken.dcm"]


def test_train_as_of_an_old_version_reproduces_the_model(spark, tmp_path):
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    rng = np.random.default_rng(3)
    n = 120
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)],
                          "patient_pseudo_id": [f"p{i // 2}" for i in range(n)],
                          "f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2],
                          "label": np.where(x[:, 0] + 0.3 * rng.normal(size=n) > 0, "a", "b")})
    lake = Lake(str(tmp_path / "lake"))
    table = table_of("features", "fs")

    def add(rows: pd.DataFrame, run_id: str) -> None:
        df = spark.createDataFrame(rows).withColumn("ingest_date", F.lit(DAY)).withColumn(
            "roi_name", F.lit(None).cast("string"))
        df = VectorAssembler(inputCols=["f0", "f1", "f2"], outputCol="features").transform(df)
        lake.write_table(spark, df, table, run_id, "features")

    cfg = TrainSettings.model_validate({
        "aggregate": "none", "id_col": "image_id", "n_boot": 20, "features": ["f*"],
        "selection": {"folds": 2, "candidates": [
            {"algorithm": "LogisticRegression", "params": {"maxIter": 20}}]}})
    add(frame.iloc[:80], "features-20260501T000000Z-000001")
    first = run_train(spark, Settings(), lake.root, label="label", train=cfg)
    add(frame.iloc[80:], "features-20260502T000000Z-000002")
    latest = run_train(spark, Settings(), lake.root, label="label", train=cfg)
    again = run_train(spark, Settings(), lake.root, label="label", train=cfg, as_of=0)
    assert latest["model_id"] != first["model_id"]
    assert again["model_id"] == first["model_id"]
    assert again["test_metrics"] == first["test_metrics"]
    meta = json.loads((Path(again["outputs"]["model"]) / "metadata.json").read_text())
    assert meta["source"]["features_version"] == 0
    assert again["tables_read"] == {table: 0}
