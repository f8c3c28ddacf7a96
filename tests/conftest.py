"""Shared fixtures: one SparkSession for the whole suite, a pseudonym key, sample data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MEDSPARK_PSEUDONYM_KEY", "medspark-test-key")


@pytest.fixture(scope="session")
def spark():
    """One local[2] session (UI off, 2 shuffle partitions) shared by every Spark test."""
    from medspark.config import SparkSettings
    from medspark.session import build_session

    settings = SparkSettings(
        master="local[2]",
        app_name="medspark-tests",
        conf={"spark.sql.shuffle.partitions": 2, "spark.ui.enabled": False,
              "spark.sql.session.timeZone": "UTC", "spark.driver.memory": "2g"},
    )
    session = build_session(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """The default synthetic sample, generated once per test session."""
    from medspark.sample import generate_sample

    out = tmp_path_factory.mktemp("sample")
    generate_sample(out, patients=4, seed=7)
    return out


@pytest.fixture(scope="session")
def wdbc_frame():
    """sklearn's breast cancer table (569 × 30, spaces in names -> `_`), one tumour per
    patient: the features, `row_id`, `patient_id` and the 0/1 `target`."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    x = data.data.copy()
    x.columns = [c.replace(" ", "_") for c in x.columns]
    return x.assign(row_id=np.arange(len(x)), patient_id=[f"p{i:04d}" for i in range(len(x))],
                    target=data.target.to_numpy())
