"""End-to-end ingest on real bytes: invariants, privacy, labels, limits, re-runs, read modes."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from lake_io import history, read_table

from medspark.config import ConfigError, load_settings
from medspark.lake import Lake
from medspark.privacy.pseudonym import resolve_key
from medspark.spark.ingest import IngestRequest, run_ingest

DAY = dt.date(2026, 1, 15)


def ingest(spark, inputs, lake, *, overrides=(), input_lists=(), labels=None, regex=None,
           day=DAY):
    settings = load_settings(None, [f"ingest.ingest_date={day.isoformat()}", *overrides])
    request = IngestRequest(inputs=[str(p) for p in inputs], lake=str(lake),
                            input_lists=[str(p) for p in input_lists],
                            labels=str(labels) if labels else None, label_from_path=regex)
    key = request.validate(settings)
    return run_ingest(spark, settings, request, key)


def table(lake, name, day=DAY):
    return read_table(lake, name, ingest_date=day)


def all_files(root: Path) -> set[str]:
    return {"file:" + str(p.resolve()) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def sample_lake(spark, sample_dir, tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    manifest = ingest(spark, [sample_dir / "images"], lake, labels=sample_dir / "labels.csv")
    return lake, manifest


def test_every_file_in_catalog_or_quarantine_exactly_once(sample_lake, sample_dir):
    lake, manifest = sample_lake
    catalog, quarantine = table(lake, "catalog"), table(lake, "quarantine")
    files = all_files(sample_dir / "images")
    cataloged, quarantined = set(catalog.source_path), set(quarantine.source_path)
    assert cataloged | quarantined == files
    assert not cataloged & quarantined
    assert len(quarantine) == len(quarantined)
    counts = manifest["counts"]
    assert counts["files_listed"] == len(files)
    assert counts["files_cataloged"] == len(cataloged)
    assert counts["files_quarantined"] == len(quarantined)
    assert counts["all_files_accounted"] is True
    assert counts["rows"]["catalog"] == len(catalog)
    assert counts["rows"]["pixels"] == len(table(lake, "pixels"))
    assert Path(manifest["manifest_path"]).is_file()


def test_broken_files_quarantined_with_reasons(sample_lake):
    lake, manifest = sample_lake
    quarantine = table(lake, "quarantine")
    by_name = {Path(p).name: c for p, c in zip(quarantine.source_path, quarantine.error_class,
                                               strict=True)}
    assert "empty_file" in by_name.values()
    assert any(c in ("truncated", "decode_error") for c in by_name.values())
    assert "not_an_image" in by_name.values()
    assert set(manifest["counts"]["quarantined_by_class"]) == set(quarantine.error_class)
    assert quarantine.error_message.str.len().gt(0).all()


def test_planes_rows_and_pixels_match_sources(sample_lake, sample_dir):
    lake, _ = sample_lake
    catalog, pixels = table(lake, "catalog"), table(lake, "pixels")
    images = catalog[catalog.n_planes > 0]
    per_file = images.groupby("source_path").agg(n=("image_id", "size"), planes=("n_planes",
                                                                                "first"))
    assert (per_file.n == per_file.planes).all()
    assert images.image_id.is_unique and pixels.image_id.is_unique
    assert set(pixels.image_id) == set(images.image_id)
    assert (images.groupby("source_path").plane_index.apply(sorted)
            == images.groupby("source_path").n_planes.first().apply(lambda n: list(range(n)))
            ).all()
    # a multi-frame DICOM gives one row per frame
    assert (images[images.format == "dicom"].n_planes > 1).any()
    assert {"dicom", "nifti", "png", "jpeg"} <= set(catalog.format)
    # pixel bytes of a CT slice equal pydicom's own rescaled values (HU)
    ct = images[(images.modality == "CT") & (images.n_planes == 1)].iloc[0]
    ds = pydicom.dcmread(ct.source_path.removeprefix("file:"))
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept)
    row = pixels.set_index("image_id").loc[ct.image_id]
    got = np.frombuffer(row["data"], dtype=row["dtype"]).reshape(row.height, row.width,
                                                                  row.channels)
    assert row["dtype"] in ("int16", "int8", "uint8", "uint16")
    np.testing.assert_array_equal(got[..., 0], expected)
    assert ct.pixel_spacing_mm is not None and len(ct.pixel_spacing_mm) == 2
    assert ct.patient_pseudo_id and ct.series_pseudo_uid and ct.study_date is not None


def test_non_image_dicom_gets_one_row(sample_lake):
    lake, manifest = sample_lake
    catalog = table(lake, "catalog")
    objects = catalog[catalog.n_planes == 0]
    assert len(objects) >= 1 and objects.sop_class_uid.notna().all()
    assert manifest["counts"]["non_image_objects"] == len(objects)


def test_labels_join_by_relative_path(sample_lake, sample_dir):
    import pandas as pd

    lake, _ = sample_lake
    catalog = table(lake, "catalog")
    labels = pd.read_csv(sample_dir / "labels.csv")
    got = catalog.dropna(subset=["label"]).set_index("source_relpath").label.astype(int)
    want = labels.set_index("source_path").label.astype(int)
    assert len(got) == len(want)
    assert got.sort_index().equals(want.sort_index())
    assert "series_instance_uid" not in catalog.columns  # key columns are not copied


def test_no_phi_in_any_output(sample_lake, sample_dir):
    lake, manifest = sample_lake
    phi = [s for s in json.loads((sample_dir / "phi.json").read_text()) if len(s) >= 4]
    assert len(phi) > 20
    texts = []
    for name in ("catalog", "quarantine"):
        df = table(lake, name)
        texts.extend(df.astype(str).to_numpy().ravel().tolist())
        texts.extend(df.columns)
    catalog = table(lake, "catalog")
    texts.extend(f"{k}={v}" for attrs in catalog.attributes.dropna() for k, v in attrs)
    texts.append(json.dumps(manifest, default=str))
    texts.extend(p.read_text() for p in (Path(lake) / "_runs").glob("*.json"))
    blob = "\n".join(texts).upper()
    leaked = [s for s in phi if s.upper() in blob]
    assert not leaked, f"PHI found in outputs: {leaked[:5]}"
    raw = b"".join(p.read_bytes() for p in Path(lake).rglob("*.parquet"))
    leaked_raw = [s for s in phi if s.encode() in raw]
    assert not leaked_raw, f"PHI bytes in Parquet files: {leaked_raw[:5]}"


def test_rerun_same_day_commits_nothing_new(spark, sample_lake, sample_dir):
    lake, first = sample_lake
    before, q_before = table(lake, "catalog"), table(lake, "quarantine")
    versions = {t: len(history(lake, t)) for t in ("catalog", "pixels", "quarantine")}
    second = ingest(spark, [sample_dir / "images"], lake, labels=sample_dir / "labels.csv")
    # forced re-ingest: decoded again, and every row found already committed
    forced = ingest(spark, [sample_dir / "images"], lake, labels=sample_dir / "labels.csv",
                    overrides=["ingest.incremental=false"])
    after, q_after = table(lake, "catalog"), table(lake, "quarantine")
    assert sorted(before.image_id) == sorted(after.image_id)
    assert after.image_id.is_unique and table(lake, "pixels").image_id.is_unique
    assert sorted(q_before.source_path) == sorted(q_after.source_path)
    assert second["counts"]["files_skipped_already_ingested"] == second["counts"][
        "files_listed"]
    assert second["counts"]["rows"] == {"catalog": 0, "pixels": 0, "quarantine": 0}
    assert forced["counts"]["rows"] == {"catalog": 0, "pixels": 0, "quarantine": 0}
    assert forced["counts"]["rows_already_present"] == first["counts"]["rows"]
    assert forced["counts"]["all_files_accounted"] is True
    assert {t: len(history(lake, t)) for t in versions} == versions  # no new commit
    assert len({second["run_id"], forced["run_id"], first["run_id"]}) == 3


def test_next_day_run_skips_already_ingested(spark, sample_lake, sample_dir):
    lake, first = sample_lake
    nxt = DAY + dt.timedelta(days=1)
    manifest = ingest(spark, [sample_dir / "images"], lake, day=nxt)
    counts = manifest["counts"]
    assert counts["files_skipped_already_ingested"] == counts["files_listed"]
    assert counts["rows"]["catalog"] == 0 and counts["all_files_accounted"] is True
    whole = read_table(lake, "catalog")
    assert whole.image_id.is_unique


def test_limits_send_files_to_quarantine(spark, sample_dir, tmp_path):
    manifest = ingest(spark, [sample_dir / "images" / "ct"], tmp_path / "lake",
                      overrides=["ingest.limits.max_pixels_per_plane=1000"])
    quarantine = table(tmp_path / "lake", "quarantine")
    assert manifest["counts"]["rows"]["catalog"] == 0 or (
        table(tmp_path / "lake", "catalog").n_planes.eq(0).all())
    assert (quarantine.error_class == "over_limit_pixels_per_plane").sum() > 0
    assert set(quarantine.stage) <= {"limits", "decode", "read"}
    manifest = ingest(spark, [sample_dir / "images" / "ct"], tmp_path / "lake2",
                      overrides=["ingest.limits.max_file_bytes=100"])
    assert manifest["counts"]["rows"]["pixels"] == 0
    assert "over_limit_file_bytes" in manifest["counts"]["quarantined_by_class"]


def test_input_list_glob_and_regex_labels(spark, sample_dir, tmp_path):
    images = sample_dir / "images"
    some = sorted(p for p in (images / "png").rglob("*") if p.is_file())
    listing = tmp_path / "files.txt"
    listing.write_text("# exported list\n" + "\n".join(str(p) for p in some)
                       + "\n\nmissing/ghost.dcm\n")
    manifest = ingest(spark, [str(images / "ct" / "*" / "*.dcm")], tmp_path / "lake",
                      input_lists=[listing], regex=r"/ct/(series_\d+)/")
    catalog, quarantine = table(tmp_path / "lake", "catalog"), table(tmp_path / "lake",
                                                                      "quarantine")
    assert (quarantine.error_class == "file_not_found").sum() == 1
    assert manifest["counts"]["files_listed"] == len(some) + 1 + len(
        list((images / "ct").glob("*/*.dcm")))
    ct = catalog[catalog.source_path.str.contains("/ct/")]
    assert ct.label.str.startswith("series_").all()
    assert catalog[~catalog.source_path.str.contains("/ct/")].label.isna().all()


def test_jvm_read_mode_matches_python_mode(spark, sample_dir, tmp_path):
    """Worker-written tables (driver listing, Python reads) equal Spark-written ones (JVM
    listing and reads): rows, labels, quarantine and the schema Spark reads back."""
    labels = sample_dir / "labels.csv"
    a = ingest(spark, [sample_dir / "images"], tmp_path / "a", labels=labels,
               overrides=["ingest.read_mode=python"])
    b = ingest(spark, [sample_dir / "images"], tmp_path / "b", labels=labels,
               overrides=["ingest.read_mode=jvm", "ingest.pixel_writer=spark"])
    assert (a["pixel_writer"], b["pixel_writer"]) == ("worker", "spark")
    assert a["counts"] == b["counts"]
    for name, key in (("catalog", "image_id"), ("quarantine", "source_path"),
                      ("pixels", "image_id")):
        ta, tb = (table(tmp_path / d, name).drop(columns="run_id", errors="ignore")
                  .sort_values(key).reset_index(drop=True) for d in ("a", "b"))
        if name == "catalog":  # maps come back as lists of pairs: compare them as dicts
            for t in (ta, tb):
                t["attributes"] = t["attributes"].map(dict)
                t["pixel_spacing_mm"] = t["pixel_spacing_mm"].map(
                    lambda v: None if v is None else list(v))
        assert list(ta.columns) == list(tb.columns), name
        assert ta.astype(object).where(ta.notna(), None).equals(
            tb.astype(object).where(tb.notna(), None)), name
        fields_a, fields_b = ([(f.name, f.dataType) for f in
                               Lake(str(tmp_path / d)).read(spark, name).schema]
                              for d in ("a", "b"))
        assert fields_a == fields_b, name
    assert table(tmp_path / "a", "catalog").label.notna().sum() == a["counts"][
        "labelled_catalog_rows"] > 0
    assert not (tmp_path / "a" / "_staging").exists()
    assert not list((tmp_path / "a").glob("*/_stage/*"))


def test_pydicom_bundled_files_all_ingest(spark, tmp_path):
    """pydicom's own test files cover every transfer syntax the plugins decode."""
    from pydicom.data import get_testdata_file

    names = ["CT_small.dcm", "MR_small_RLE.dcm", "JPGExtended.dcm", "JPEG2000.dcm",
             "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm",
             "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "image_dfl.dcm",
             "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_2frame.dcm",
             "rtdose_rle.dcm", "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm",
             "MR_small_jp2klossless.dcm", "examples_ybr_color.dcm"]
    # bundled broken files: a JPEG with an invalid scan header and a file cut inside pixel data
    broken = {"JPEG-lossy.dcm": "decode_error", "MR_truncated.dcm": "truncated"}
    src = tmp_path / "in"
    src.mkdir()
    for name in [*names, *broken]:
        shutil.copy(get_testdata_file(name, download=False), src / name)
    manifest = ingest(spark, [src], tmp_path / "lake")
    catalog = table(tmp_path / "lake", "catalog")
    quarantine = table(tmp_path / "lake", "quarantine")
    assert manifest["counts"]["all_files_accounted"]
    assert manifest["counts"]["files_cataloged"] == len(names), manifest["counts"]
    assert {os.path.basename(p): c for p, c in zip(quarantine.source_path,
                                                   quarantine.error_class, strict=True)} == broken
    # explicit/implicit/big endian, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS
    # lossless/near-lossless, JPEG 2000 lossless/lossy
    assert len(catalog.transfer_syntax_uid.dropna().unique()) >= 12
    assert catalog.groupby("source_path").size().max() == 30  # every frame of the YBR file


def test_missing_key_is_a_config_error(monkeypatch, sample_dir, tmp_path):
    from medspark.cli import main

    monkeypatch.delenv("MEDSPARK_PSEUDONYM_KEY", raising=False)
    assert main(["ingest", "--input", str(sample_dir / "images"), "--lake",
                 str(tmp_path)]) == 2
    assert resolve_key(allow_demo_key=True)


def test_cli_config_errors_name_the_key(capsys, tmp_path):
    from medspark.cli import main

    assert main(["ingest", "--input", str(tmp_path), "--lake", str(tmp_path / "l"),
                 "--set", "ingest.limits.max_file_bytez=3"]) == 2
    assert "ingest.limits.max_file_bytez" in capsys.readouterr().err
    assert main(["ingest", "--input", str(tmp_path / "nope"), "--lake", str(tmp_path)]) == 2
    assert "input not found" in capsys.readouterr().err


def test_cli_ingest_runs_its_own_jvm_with_the_python_job_options(sample_dir, tmp_path):
    """`medspark ingest` launches the driver JVM itself, with the C1-only JIT of jobs whose
    work runs in Python workers, and its manifest records the flags the JVM really got."""
    import subprocess
    import sys

    src = tmp_path / "in"
    shutil.copytree(sample_dir / "images" / "png", src)
    env = {**os.environ, "MEDSPARK_PSEUDONYM_KEY": "medspark-test-key"}
    out = subprocess.run(
        [sys.executable, "-m", "medspark.cli", "ingest", "--input", str(src), "--lake",
         str(tmp_path / "lake"), "--json", "--set", "spark.log_level=ERROR"],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    manifest = json.loads(out.stdout[out.stdout.index("{"):])
    flags = manifest["spark"]["driver_jvm_flags"]
    assert "-XX:TieredStopAtLevel=1" in flags and "-XX:+UseSerialGC" in flags
    assert manifest["counts"]["all_files_accounted"]
    assert manifest["counts"]["files_cataloged"] == len(list(src.iterdir()))


@pytest.mark.parametrize("writer", ["worker", "spark"])
def test_a_label_column_named_like_an_ingest_column_is_refused_by_either_writer(
        spark, sample_dir, tmp_path, writer):
    labels = tmp_path / "labels.csv"
    labels.write_text("source_path,label,height\nct/series_000/slice_0000.dcm,1,170\n")
    with pytest.raises(ConfigError, match=r"clash with ingest columns: \['height'\]"):
        ingest(spark, [sample_dir / "images"], tmp_path / "lake", labels=labels,
               overrides=[f"ingest.pixel_writer={writer}"])
