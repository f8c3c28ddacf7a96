"""`medspark lake convert` on a lake the previous medspark (Parquet folders) wrote: every table
becomes a Delta table with the same rows, and today's jobs keep adding to it."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pydicom
import pytest
from deltalake import DeltaTable
from pydicom.data import get_testdata_file
from pyspark.ml.linalg import VectorUDT

from medspark.cli import main
from medspark.config import load_settings
from medspark.lake import CONFIG_LEVEL, Lake, table_of
from medspark.spark.imaging import feature_set_hash, run_features
from medspark.spark.ingest import IngestRequest, run_ingest

OLD = Path(__file__).parent / "data" / "lake_v0_1"
FEATURES = ["features.families=[firstorder]"]


def old_rows(folder: Path) -> int:
    return ds.dataset(folder, format="parquet", partitioning="hive").count_rows()


@pytest.fixture(scope="module")
def converted(spark, tmp_path_factory):
    lake = tmp_path_factory.mktemp("convert") / "lake"
    shutil.copytree(OLD, lake)
    # predictions as medspark 0.1 wrote them (the sample is too small to train on)
    for table, columns in (("predictions", {"image_id": ["a", "b"], "score": [0.2, 0.9],
                                            "prediction": [0.0, 1.0], "model_id": ["m1"] * 2}),
                           ("predictions_rejected", {"image_id": ["c"],
                                                     "step": ["feature_error"],
                                                     "reason": ["empty mask"]})):
        folder = lake / table / "model=m1" / "run_date=2026-01-11"
        folder.mkdir(parents=True)
        pq.write_table(pa.table(columns), folder / "part-0.parquet")
    tables = [p.relative_to(lake).as_posix() for p in sorted(lake.glob("*"))
              if p.is_dir() and p.name in ("catalog", "pixels", "quarantine")]
    tables += [p.relative_to(lake).as_posix() for family in CONFIG_LEVEL
               for p in sorted(lake.glob(f"{family}/*=*"))]
    before = {t: old_rows(lake / t) for t in tables}
    assert main(["lake", "convert", "--lake", str(lake)]) == 0
    return lake, before


def test_every_table_is_a_delta_table_with_the_same_rows(converted):
    lake, before = converted
    assert len(before) >= 9
    for table, n in before.items():
        got = DeltaTable(str(lake / table))
        assert got.to_pyarrow_table().num_rows == n, table


def test_converted_tables_read_in_spark_with_their_types(spark, converted):
    lake, _ = converted
    settings = load_settings(None, FEATURES)
    features = Lake(str(lake)).read(spark, table_of("features", feature_set_hash(settings)))
    assert isinstance(features.schema["features"].dataType, VectorUDT)
    assert features.schema["ingest_date"].dataType.typeName() == "date"
    rejected = DeltaTable(str(lake / "predictions_rejected" / "model=m1")).to_pandas()
    assert list(rejected.key) == ["c"] and list(rejected.source) == ["unknown"]


def test_todays_jobs_add_to_a_converted_lake(spark, converted, tmp_path):
    lake, before = converted
    src = tmp_path / "new"
    src.mkdir()
    ds_ = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds_.save_as(src / "new.dcm")
    day = dt.date(2026, 2, 1)
    settings = load_settings(None, [f"ingest.ingest_date={day}", *FEATURES])
    request = IngestRequest(inputs=[str(src)], lake=str(lake))
    manifest = run_ingest(spark, settings, request, request.validate(settings))
    assert manifest["counts"]["rows"]["catalog"] == 1
    catalog = DeltaTable(str(lake / "catalog")).to_pandas()
    assert len(catalog) == before["catalog"] + 1
    assert catalog.loc[catalog.ingest_date == day, "source_version"].tolist() == [1]
    assert catalog.loc[catalog.ingest_date != day, "source_version"].isna().all()
    # the same feature configuration as the old lake's: its converted table grows
    out = run_features(spark, settings, str(lake), [day])
    table = table_of("features", feature_set_hash(settings))
    assert out["outputs"]["features"]["table"].endswith(table)
    assert out["counts"]["rows"] == 1
    assert DeltaTable(str(lake / table)).to_pyarrow_table().num_rows == before[table] + 1
