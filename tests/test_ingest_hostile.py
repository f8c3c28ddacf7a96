"""Inputs a hostile (or merely unlucky) user gives ingest: other runs' data on the same day,
FIFOs, symlink loops, slow reads, file names with any byte, regexes only Python reads, URIs no
filesystem handles. Every file ends in catalog or quarantine with a reason; no run removes
another's rows; no job hangs."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from lake_io import read_table
from pydicom.data import get_testdata_file

from medspark.cli import main
from medspark.config import load_settings
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.spark.runs import count_by, reason_of

DAY = dt.date(2026, 4, 1)


def ingest(spark, inputs, lake, *overrides, regex=None):
    settings = load_settings(None, [f"ingest.ingest_date={DAY.isoformat()}", *overrides])
    request = IngestRequest(inputs=[str(p) for p in inputs], lake=str(lake),
                            label_from_path=regex)
    return run_ingest(spark, settings, request, request.validate(settings))


def ct_file(path: Path, instance: int = 1) -> Path:
    """A real CT slice (pydicom's CT_small) with its own SOP instance (distinct content)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{instance}"
    ds.InstanceNumber = instance
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def test_two_folders_on_the_same_day_keep_both(spark, sample_dir, tmp_path):
    """Defect 0: the second ingest of the day replaced the first one's partitions."""
    a, b, lake = tmp_path / "a", tmp_path / "b", tmp_path / "lake"
    for i in range(3):
        ct_file(a / f"a{i}.dcm", i)
        ct_file(b / f"b{i}.dcm", 10 + i)
    (b / "broken.dcm").write_bytes(b"DICM" + b"\0" * 10)
    first = ingest(spark, [a], lake)
    second = ingest(spark, [b], lake)
    catalog, pixels = read_table(lake, "catalog"), read_table(lake, "pixels")
    quarantine = read_table(lake, "quarantine")
    paths = {Path(p).name for p in catalog.source_path}
    assert paths == {f"a{i}.dcm" for i in range(3)} | {f"b{i}.dcm" for i in range(3)}
    assert len(pixels) == 6 and pixels.image_id.is_unique
    assert set(quarantine.source_path.map(lambda p: Path(p).name)) == {"broken.dcm"}
    assert first["counts"]["all_files_accounted"] and second["counts"]["all_files_accounted"]
    # each run made exactly one commit per table it added rows to
    assert first["outputs"]["catalog"]["version"] == 0
    assert second["outputs"]["catalog"]["version"] == 1


def test_fifo_is_quarantined_unopened_and_symlink_loops_are_harmless(spark, tmp_path):
    """Defect 1: a named pipe among the inputs blocked a worker in open() forever."""
    src = tmp_path / "in"
    ct_file(src / "ok.dcm")
    os.mkfifo(src / "a.dcm")
    (src / "loop").mkdir()
    os.symlink(src / "loop", src / "loop" / "again")  # a directory cycle
    manifest = ingest(spark, [src], tmp_path / "lake")
    quarantine = read_table(tmp_path / "lake", "quarantine").set_index("source_path")
    fifo = quarantine.loc[f"file:{src / 'a.dcm'}"]
    assert (fifo.stage, fifo.error_class) == ("read", "not_a_regular_file")
    assert "FIFO" in fifo.error_message
    assert manifest["counts"]["files_cataloged"] == 1
    assert manifest["counts"]["all_files_accounted"] is True


def test_a_read_over_the_time_limit_is_quarantined(spark, tmp_path):
    """Every read of a source is bounded (ingest.limits.read_timeout_s)."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "big.bin").write_bytes(np.random.default_rng(0).bytes(64 * 1024 * 1024))
    manifest = ingest(spark, [src], tmp_path / "lake", "ingest.limits.read_timeout_s=1e-6")
    quarantine = read_table(tmp_path / "lake", "quarantine")
    assert list(quarantine.error_class) == ["read_timeout"]
    assert manifest["counts"]["all_files_accounted"] is True
    # a transient reason: the next run tries the file again instead of skipping it
    again = ingest(spark, [src], tmp_path / "lake")
    assert again["counts"]["files_skipped_already_ingested"] == 0
    assert again["counts"]["quarantined_by_class"] == {"not_an_image": 1}


NAMES = ["new\nline.dcm", "tab\there.dcm", "back\\slash.dcm", "quo'te\"s.dcm",
         "spa ce %20 #hash?.dcm"]


def test_any_file_name_is_carried_intact(spark, tmp_path):
    """Defect 2: a valid file whose name held a newline was quarantined as file_not_found."""
    src = tmp_path / "in"
    for i, name in enumerate(NAMES):
        ct_file(src / name, i)
    bad = os.fsencode(str(src)) + b"/latin1-\xe9t\xe9.dcm"  # not UTF-8
    shutil.copy(src / NAMES[0], bad)
    manifest = ingest(spark, [src], tmp_path / "lake")
    catalog = read_table(tmp_path / "lake", "catalog")
    assert sorted(catalog.source_relpath) == sorted(NAMES)
    assert sorted(catalog.source_path) == sorted(f"file:{src / n}" for n in NAMES)
    quarantine = read_table(tmp_path / "lake", "quarantine")
    assert list(quarantine.error_class) == ["unrepresentable_file_name"]
    assert quarantine.source_path[0].endswith("latin1-\\xe9t\\xe9.dcm")
    assert "file_not_found" not in manifest["counts"]["quarantined_by_class"]
    assert manifest["counts"]["all_files_accounted"] is True


@pytest.mark.parametrize("writer", ["worker", "spark"])
def test_label_regex_is_python_for_both_writers(spark, tmp_path, writer):
    """Defect 4: the Spark writer applied --label-from-path with Java's regex dialect, where
    Python's named group `(?P<x>...)` does not even compile."""
    src = tmp_path / "in"
    ct_file(src / "benign" / "x.dcm", 1)
    ct_file(src / "malignant" / "y.dcm", 2)
    overrides = [f"ingest.pixel_writer={writer}"] + (
        ["ingest.read_mode=jvm"] if writer == "spark" else [])
    manifest = ingest(spark, [src], tmp_path / "lake", *overrides,
                      regex=r"/(?P<cls>benign|malignant)/")
    catalog = read_table(tmp_path / "lake", "catalog")
    assert dict(zip(catalog.source_relpath, catalog.label, strict=True)) == {
        "benign/x.dcm": "benign", "malignant/y.dcm": "malignant"}
    assert manifest["counts"]["labelled_catalog_rows"] == 2


def test_an_unknown_uri_scheme_is_one_line_and_exit_2(capsys, tmp_path):
    """Defect 7: `--input foo://x/y` printed a Java stack trace and exited 1."""
    rc = main(["ingest", "--input", "foo://x/y", "--lake", str(tmp_path / "lake"),
               "--set", "privacy.allow_demo_key=true"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "'foo'" in err and "hdfs" in err and "Traceback" not in err
    assert not (tmp_path / "lake").exists()  # refused before Spark started


def test_error_counts_group_by_reason_not_by_message(spark):
    """Defect 3: counts keyed on the text before ':' overwrote each other when several
    messages shared a reason (and a limit cut the groups first)."""
    rows = [(f"decode_error: plane {i} unreadable",) for i in range(30)] + [
        ("over_matrix_budget: glcm needs 9 GiB",), ("ValueError",), (None,)]
    df = spark.createDataFrame(rows, "error string")
    assert count_by(df.select(reason_of("error").alias("reason")), "reason") == {
        "decode_error": 30, "over_matrix_budget": 1, "ValueError": 1}
