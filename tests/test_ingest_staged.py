"""Worker-written tables and the driver's local listing, without a JVM."""

from __future__ import annotations

import gc
import os
import re

import pandas as pd
import pyarrow.parquet as pq
import pydicom
from pydicom.data import get_testdata_file

from medspark.ingest.records import IngestContext, process_batches
from medspark.ingest.staged import LabelLookup, Staging, staged_name
from medspark.io.types import Limits
from medspark.spark.listing import _hidden, local_files


def _staging(root, labels: LabelLookup) -> Staging:
    return Staging(pixels=str(root / "pixels"), catalog=str(root / "catalog"),
                   quarantine=str(root / "quarantine"), labels=labels)


def _listing(paths, sizes=None) -> pd.DataFrame:
    return pd.DataFrame({"path": ["file:" + str(p) for p in paths],
                         "relpath": [p.name for p in paths],
                         "size": sizes or [float("nan")] * len(paths),
                         "mtime": [None] * len(paths)})


def test_workers_write_catalog_pixels_quarantine_and_return_counts(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = src / "ct.dcm"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.save_as(good)
    bad = src / "notes.dcm"
    bad.write_bytes(b"not a dicom file at all")
    labels = LabelLookup.from_table(pd.DataFrame({"source_relpath": ["ct.dcm"],
                                                  "label": [1], "grade": ["high"]}),
                                    "source_relpath")
    staging = _staging(tmp_path / "stage", labels)
    ctx = IngestContext(limits=Limits(), key=b"k" * 32, max_shift_days=30, run_id="r",
                        staging=staging, labels=labels)
    out = pd.concat(list(process_batches([_listing([good, bad])], ctx)))

    counts = {(k, e): (r, f, lab) for k, e, r, f, lab in out.itertuples(index=False)}
    assert counts == {("plane", None): (1, 1, 1), ("error", "not_dicom"): (1, 1, 0)}
    catalog = pq.read_table(staging.catalog).to_pandas()
    assert list(catalog.columns) == staging.catalog_arrow.names
    assert (catalog.label.tolist(), catalog.grade.tolist()) == ([1], ["high"])
    assert catalog.source_size.tolist() == [good.stat().st_size]  # NaN size filled in
    pixels = pq.read_table(staging.pixels).to_pandas()
    assert pixels.image_id.tolist() == catalog.image_id.tolist()
    assert len(pixels.data[0]) == 128 * 128 * 2
    quarantine = pq.read_table(staging.quarantine).to_pandas()
    assert quarantine.source_path.tolist() == ["file:" + str(bad)]
    # every staged file is named by its rows' keys: a retried task rewrites the same names
    assert os.listdir(staging.catalog) == [staged_name(catalog.image_id)]
    again = pd.concat(list(process_batches([_listing([good, bad])], ctx)))
    assert again.equals(out)
    assert len(os.listdir(staging.catalog)) == len(os.listdir(staging.pixels)) == 1


def test_a_task_freezes_what_lived_before_it_out_of_its_collections(tmp_path):
    """pyspark runs a full collection after every task; objects alive before the task (here a
    stand-in for modules and caches) are frozen, objects the task makes stay collectable."""
    good = tmp_path / "ct.dcm"
    pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False)).save_as(good)
    ctx = IngestContext(limits=Limits(), key=b"k" * 32, max_shift_days=30, run_id="r",
                        staging=_staging(tmp_path / "stage", LabelLookup.empty()))
    gc.unfreeze()
    try:
        long_lived = [[i] for i in range(1000)]
        assert any(o is long_lived for o in gc.get_objects())
        out = next(process_batches([_listing([good])], ctx))
        assert gc.get_freeze_count() > len(long_lived)
        assert not any(o is long_lived for o in gc.get_objects())
        assert any(o is out for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_label_regex_is_searched_in_the_path():
    lookup = LabelLookup.from_regex(r"/(benign|malignant)/")
    rows = [{"source_path": "file:/d/malignant/a.png"}, {"source_path": "file:/d/x/b.png"}]
    for r in rows:
        lookup.apply(r)
    assert [r["label"] for r in rows] == ["malignant", None]


def test_label_table_types_are_kept_and_timestamps_in_microseconds():
    table = pd.DataFrame({"k": ["a", "b"], "label": [0, 1], "score": [0.5, None],
                          "seen": pd.to_datetime(["2020-01-01", "2021-02-03"])})
    lookup = LabelLookup.from_table(table, "k")
    assert [str(f.type) for f in lookup.fields] == ["int64", "double", "timestamp[us]"]
    row = {"k": "b"}
    lookup.apply(row)
    assert (row["label"], row["score"]) == (1, None)
    missing = {"k": "zzz"}
    lookup.apply(missing)
    assert missing == {"k": "zzz", "label": None, "score": None, "seen": None}


def test_hidden_names_follow_spark():
    assert _hidden(".DS_Store") and _hidden("_SUCCESS") and _hidden("a.dcm._COPYING_")
    assert not _hidden("_date=2020-01-01") and not _hidden("scan_1.dcm")


def test_local_listing_walks_globs_skips_hidden_and_survives_link_loops(tmp_path):
    root = tmp_path / "export"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    files = [root / "a" / "x.dcm", root / "a" / "b" / "y.dcm", root / "empty.dcm"]
    for i, f in enumerate(files):
        f.write_bytes(b"x" * (i * 10 + 1) if f.name != "empty.dcm" else b"")
    (root / ".hidden" / "z.dcm").write_bytes(b"z")
    (root / "a" / "_SUCCESS").write_bytes(b"")
    os.symlink(root, root / "a" / "loop")  # a link back up must not walk forever
    listed = {p: (size, mtime) for p, size, mtime in local_files(str(root))}
    real = {os.path.realpath(p) for p in listed}
    assert real == {str(f) for f in files}
    assert listed[str(root / "empty.dcm")][0] == 0
    assert all(mtime == os.stat(p).st_mtime_ns // 1_000_000
               for p, (_, mtime) in listed.items())
    globbed = [p for p, _, _ in local_files(str(root / "a" / "*.dcm"))]
    assert globbed == [str(root / "a" / "x.dcm")]
    assert all(re.match(r"^/", p) for p in listed)
