"""`medspark nightly` on real bytes: two nights of the sample, late and changed files, a re-run
that commits nothing, kill -9 at several points followed by the same command, the lock, and the
morning report in a real browser."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from browser import check_page, chromium_path
from deltalake import DeltaTable
from lake_io import read

from medspark.config import Settings, load_settings
from medspark.lake import Lake, table_of
from medspark.models.config import TrainSettings
from medspark.nightly.lock import LockHeld, acquire
from medspark.nightly.progress import Progress
from medspark.sample import generate_sample, split_nights
from medspark.spark.imaging import feature_set_hash
from medspark.spark.ingest import IngestRequest
from medspark.spark.nightly import NightlyRequest, run_nightly
from medspark.spark.train import run_train

NIGHT1, NIGHT2 = dt.date(2026, 6, 1), dt.date(2026, 6, 2)
FAST = ["features.families=[firstorder]", "nightly.discover=false",
        "imaging.preprocess=[{step: window, preset: lung}, {step: resize, size: 64}]"]


def night(spark, export: Path, lake: Path, date: dt.date, model: str = "none",
          labels: Path | None = None, overrides=()):
    settings = load_settings(None, [*FAST, *overrides])
    request = NightlyRequest(
        ingest=IngestRequest(inputs=[str(export)], lake=str(lake),
                             labels=str(labels) if labels else None),
        date=date, model=model)
    key = request.ingest.validate(settings)
    return run_nightly(spark, settings, request, key, Progress(json_log=True))


def versions(lake: Path) -> dict[str, int]:
    """The current version of every Delta table in the lake."""
    out = {}
    for log in sorted(lake.glob("**/_delta_log")):
        out[str(log.parent.relative_to(lake))] = DeltaTable(str(log.parent)).version()
    return out


def stage(state: dict, name: str) -> dict:
    return next(s for s in state["stages"] if s["name"] == name)


def feature_model(spark, lake: Path, tmp: Path) -> str:
    """A small model on firstorder features of made-up rows (same columns as the lake's)."""
    rng = np.random.default_rng(0)
    n = 80
    y = rng.integers(0, 2, n)
    table = pd.DataFrame({"image_id": [f"r{i}" for i in range(n)],
                          "patient_pseudo_id": [f"p{i // 2}" for i in range(n)],
                          "firstorder_Mean": rng.normal(-600, 80, n) + 150 * y,
                          "firstorder_Median": rng.normal(-650, 80, n) + 100 * y,
                          "label": y})
    path = tmp / "train.parquet"
    table.to_parquet(path, index=False)
    cfg = TrainSettings.model_validate({
        "id_col": "image_id", "features": ["firstorder_Mean", "firstorder_Median"],
        "n_boot": 20, "selection": {"folds": 2, "candidates": [
            {"algorithm": "LogisticRegression", "params": {"maxIter": 20}}]}})
    manifest = run_train(spark, Settings(), str(lake), table=str(path), label="label",
                         train=cfg)
    return manifest["outputs"]["model"]


@pytest.fixture(scope="module")
def two_nights(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    sample = root / "sample"
    generate_sample(sample, patients=4, seed=11)
    arrivals = split_nights(sample, 2)
    export, lake = root / "export", root / "lake"
    shutil.copytree(arrivals[0], export)
    first, code1 = night(spark, export, lake, NIGHT1, labels=sample / "labels.csv")
    catalog1 = read(lake / "catalog")
    # night 2: new patients, a late file (yesterday's mtime) and a file changed in place
    shutil.copytree(arrivals[1], export, dirs_exist_ok=True)
    late = export / "ct" / "late" / "late_0.dcm"
    late.parent.mkdir(parents=True)
    ds = pydicom.dcmread(next((export / "ct" / "series_000").glob("*.dcm")))
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.save_as(late)
    yesterday = time.mktime(NIGHT1.timetuple())
    os.utime(late, (yesterday, yesterday))
    changed = sorted((export / "ct" / "series_001").glob("*.dcm"))[0]
    ds = pydicom.dcmread(changed)
    arr = ds.pixel_array.copy()
    arr[:8, :8] = arr.max()
    ds.PixelData = arr.tobytes()
    changed.unlink()  # a hard link to the sample: replace, do not write through it
    ds.save_as(changed)
    model = feature_model(spark, lake, root)
    before = versions(lake)
    second, code2 = night(spark, export, lake, NIGHT2, model=model,
                          labels=sample / "labels.csv")
    return {"root": root, "sample": sample, "export": export, "lake": lake,
            "first": first, "second": second, "codes": (code1, code2), "late": late,
            "changed": changed, "catalog1": catalog1, "model": model,
            "versions_before_night2": before}


def test_each_night_ingests_only_its_new_files(two_nights):
    first, second = two_nights["first"], two_nights["second"]
    assert two_nights["codes"] == (0, 0), (first["attention"], second["attention"])
    assert [s["status"] for s in first["stages"]] == [
        "ok", "ok", "ok", "ok", "skipped", "skipped", "ok"]
    assert stage(first, "predict")["reason"] == "--model none"
    n1 = stage(first, "ingest")["counts"]["files_listed"]
    ingest2 = stage(second, "ingest")["counts"]
    # everything listed on night 1 is skipped, except the file changed in place
    assert ingest2["files_skipped_already_ingested"] == n1 - 1
    new_files = {p for p in two_nights["export"].rglob("*") if p.is_file()}
    assert ingest2["files_listed"] == len(new_files)
    assert ingest2["all_files_accounted"] is True


def test_night_two_derived_rows_cover_exactly_the_new_images(two_nights):
    lake = two_nights["lake"]
    catalog = read(lake / "catalog")
    tonight = catalog[(catalog.ingest_date == NIGHT2) & (catalog.modality == "CT")
                      & catalog.plane_index.notna()]
    settings = load_settings(None, FAST)
    features = read(lake / table_of("features", feature_set_hash(settings)))
    assert sorted(features[features.ingest_date == NIGHT2].image_id) == sorted(
        tonight.image_id)
    assert features.image_id.is_unique
    predictions = read(Path(two_nights["model"]).parents[1] / "predictions" /
                       f"model={Path(two_nights['model']).name}")
    assert sorted(predictions.image_id) == sorted(tonight.image_id)
    assert set(predictions.run_date) == {NIGHT2}
    assert stage(two_nights["second"], "predict")["counts"]["predicted"] == len(tonight)


def test_late_and_changed_files(two_nights):
    catalog = read(two_nights["lake"] / "catalog")
    late = catalog[catalog.source_path == f"file:{two_nights['late']}"]
    assert list(late.ingest_date) == [NIGHT2]
    versions_of = catalog[catalog.source_path == f"file:{two_nights['changed']}"]
    assert sorted(versions_of.source_version) == [1, 2]
    old, new = (versions_of[versions_of.source_version == v].iloc[0] for v in (1, 2))
    assert old.image_id != new.image_id and old.source_sha256 != new.source_sha256
    assert (old.ingest_date, new.ingest_date) == (NIGHT1, NIGHT2)


def test_rerunning_a_finished_night_commits_nothing(spark, two_nights):
    lake = two_nights["lake"]
    before = versions(lake)
    tables = {name: read(lake / name).sort_values(["image_id"]).reset_index(drop=True)
              for name in ("catalog", "pixels")}
    state, code = night(spark, two_nights["export"], lake, NIGHT2,
                        model=two_nights["model"],
                        labels=two_nights["sample"] / "labels.csv")
    assert code == 0 and state["attempt"] >= 2
    assert versions(lake) == before
    for name, frame in tables.items():
        again = read(lake / name).sort_values(["image_id"]).reset_index(drop=True)
        assert again.drop(columns=[c for c in ("attributes",) if c in again]).equals(
            frame.drop(columns=[c for c in ("attributes",) if c in frame]))


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_both_reports_render_in_a_browser(two_nights, tmp_path):
    reports = two_nights["lake"] / "reports"
    for date in (NIGHT1, NIGHT2):
        page = reports / date.isoformat() / "index.html"
        summary = json.loads((page.parent / "summary.json").read_text())
        assert summary["files"]["new"] > 0
        got = check_page(page, tmp_path / f"{date}.png")
        assert got["pixel_std"] > 5 and got["text_chars"] > 500
        assert got["images"] and not got["images_failed"]
        assert not got["external_requests"] and not got["failed_requests"]
    second = json.loads((reports / NIGHT2.isoformat() / "summary.json").read_text())
    assert second["model"]["predictions"] > 0 and second["model"]["score_histogram"]
    assert second["data"]["features"] and second["history"]
    assert "2026-06-01" in (reports / "index.html").read_text()
    # nothing that identifies a patient: no name or ID from the sample's headers
    phi = json.loads((two_nights["sample"] / "phi.json").read_text())
    text = "".join(p.read_text() for p in reports.rglob("*.html")).upper() + "".join(
        p.read_text() for p in reports.rglob("*.json")).upper()
    assert not [s for s in phi if s.upper() in text]


# ---------------------------------------------------------------------------- crash safety
def cli_nightly(export: Path, lake: Path, date: dt.date, crash_at: str | None = None,
                wait: bool = True):
    """`medspark nightly` in its own process (finished, or still running with wait=False)."""
    env = {**os.environ, "MEDSPARK_PSEUDONYM_KEY": "medspark-test-key"}
    env.pop("MEDSPARK_CRASH_AT", None)
    if crash_at:
        env["MEDSPARK_CRASH_AT"] = crash_at
    sets = [a for s in FAST for a in ("--set", s)]
    cmd = [sys.executable, "-m", "medspark.cli", "nightly", "--input", str(export), "--lake",
           str(lake), "--date", date.isoformat(), "--model", "none", "--master", "local[1]",
           "--json-log", *sets]
    if not wait:  # output to files: a full pipe nobody reads would block the run
        log = open(lake.parent / f"{lake.name}-nightly.log", "w")  # noqa: SIM115
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small_night(spark, two_nights, tmp_path_factory):
    """One CT series and a broken file, and the lake an uninterrupted night makes of it."""
    root = tmp_path_factory.mktemp("small-night")
    export = root / "export"
    shutil.copytree(two_nights["sample"] / "images" / "ct" / "series_000",
                    export / "ct" / "series_000")
    shutil.copy(two_nights["sample"] / "images" / "broken" / "truncated.dcm", export)
    reference = root / "reference"
    state, code = night(spark, export, reference, NIGHT1)
    assert code == 0
    return {"export": export, "reference": reference}


def lake_ids(lake: Path) -> dict[str, list]:
    settings = load_settings(None, FAST)
    out = {}
    for name, table in (("catalog", "catalog"), ("pixels", "pixels"),
                        ("quarantine", "quarantine"),
                        ("features", table_of("features", feature_set_hash(settings)))):
        frame = read(lake / table)
        key = "source_path" if name == "quarantine" else "image_id"
        out[name] = sorted(frame[key])
    return out


# a kill inside ingest's commits and one after a later stage's commit (test_lake kills
# between the catalog and pixels commits of a plain ingest)
@pytest.mark.parametrize("point", ["published:catalog", "published:features"])
def test_kill_9_then_the_same_command_completes_the_night(spark, small_night, tmp_path,
                                                           point):
    lake = tmp_path / "lake"
    killed = cli_nightly(small_night["export"], lake, NIGHT1, crash_at=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = json.loads((lake / "_runs" / f"nightly-{NIGHT1}.json").read_text())
    assert state["status"] == "running"  # what the killed run left
    for name in ("catalog", "pixels"):  # a Delta reader sees whole commits only
        if (lake / name / "_delta_log").is_dir():
            DeltaTable(str(lake / name)).to_pyarrow_table()
    resumed, code = night(spark, small_night["export"], lake, NIGHT1)
    assert code == 0, resumed["attention"]
    assert resumed["lock_taken_over"]["reason"] == "its process is gone"
    assert resumed["attempt"] == 2
    assert lake_ids(lake) == lake_ids(small_night["reference"])


def test_two_concurrent_nights_one_runs_the_other_exits_3(small_night, tmp_path):
    """Two schedulers start the same night at once: one runs it, the other is refused at once
    (exit 3) without touching the lake."""
    lake = tmp_path / "lake"
    first = cli_nightly(small_night["export"], lake, NIGHT1, wait=False)
    lock = lake / "_locks" / "nightly.lock"
    deadline = time.time() + 120
    log = tmp_path / "lake-nightly.log"
    while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
        assert first.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    t0 = time.time()
    second = cli_nightly(small_night["export"], lake, NIGHT1)
    assert second.returncode == 3, second.stderr[-2000:]
    assert "another nightly run holds" in second.stderr
    assert time.time() - t0 < 30  # refused before any Spark work
    with pytest.raises(LockHeld):
        acquire(str(lake), NIGHT1.isoformat(), 12.0)
    assert first.wait(timeout=600) == 0, log.read_text()[-2000:]
    assert lake_ids(lake) == lake_ids(small_night["reference"])


def test_a_stale_lock_from_another_host_is_taken_over(spark, small_night, tmp_path):
    lake = tmp_path / "lake"
    (lake / "_locks").mkdir(parents=True)
    old = time.time() - 13 * 3600
    (lake / "_locks" / "nightly.lock").write_text(json.dumps(
        {"pid": 1, "host": "another-host", "date": "2026-05-31", "started": old,
         "heartbeat": old}))
    state, code = night(spark, small_night["export"], lake, NIGHT1)
    assert code == 0
    assert state["lock_taken_over"]["host"] == "another-host"
    assert "not renewed" in state["lock_taken_over"]["reason"]
    fresh = time.time()
    (lake / "_locks" / "nightly.lock").write_text(json.dumps(
        {"pid": 1, "host": "another-host", "started": fresh, "heartbeat": fresh}))
    with pytest.raises(LockHeld, match="another-host"):
        night(spark, small_night["export"], lake, NIGHT1)
    assert Lake(str(lake)).exists("catalog")
