"""The morning report's drift section on a features table whose values include nulls and NaN
(a feature that failed on some images): such values are left out of the histograms, and a
shifted feature is still flagged (the demo's second night once failed here on a null bin)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from medspark.lake import Lake
from medspark.nightly.config import NightlySettings

NIGHT1, NIGHT2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


def test_drift_ignores_null_and_nan_and_flags_the_shift(spark, tmp_path):
    from pyspark.sql import functions as F

    from medspark.spark.night_report import _drift

    rng = np.random.default_rng(0)
    n = 300
    frames = []
    for day, shift in ((NIGHT1, 0.0), (NIGHT2, 1.5)):
        stable = rng.normal(0, 1, n)
        moved = rng.normal(shift, 1, n)
        stable[:10] = np.nan          # NaN in the column: binned to "keep"'s extra bucket
        frames.append(pd.DataFrame({"image_id": [f"{day}-{i}" for i in range(n)],
                                    "stable": stable, "moved": moved,
                                    "gappy": [None if i % 3 else float(i) for i in range(n)],
                                    "ingest_date": day}))
    pdf = pd.concat(frames, ignore_index=True)
    df = spark.createDataFrame(pdf).withColumn("gappy", F.col("gappy").cast("double"))
    lake = Lake(str(tmp_path / "lake"))
    lake.write_table(spark, df, "features", "test-setup", "test",
                     partition_by=["ingest_date"], keys=["image_id"])

    section = _drift(spark, lake, "features", NIGHT2, NightlySettings())
    by_name = {f.feature: f for f in section.features}
    assert by_name["moved"].flagged
    assert not by_name["stable"].flagged
    for f in section.features:
        assert sum(f.tonight.histogram.counts) <= n
    assert sum(by_name["stable"].tonight.histogram.counts) == n - 10
    assert sum(by_name["gappy"].tonight.histogram.counts) == n // 3
