"""Reading lake tables in tests the way any pandas user would: through the Delta log
(`deltalake`), never by listing folders."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable


def read_table(lake, name: str, version: int | None = None, **partition) -> pd.DataFrame:
    """A lake table's current (or `version`) snapshot as pandas, optionally one partition
    (`ingest_date=date`, `feature_set="..."`, ...)."""
    table = DeltaTable(str(Path(lake) / name), version=version)
    frame = table.to_pandas()
    for k, v in partition.items():
        want = v if isinstance(v, dt.date) else str(v)
        frame = frame[frame[k] == want]
    return frame.reset_index(drop=True)


def history(lake, name: str) -> list[dict]:
    return DeltaTable(str(Path(lake) / name)).history()


def read(what) -> pd.DataFrame:
    """A manifest's output (`{"table": path, "partition": {...}}`; a list value means any of
    them), a Delta table folder, or a plain Parquet path, as pandas."""
    if isinstance(what, dict):
        frame = DeltaTable(str(what["table"])).to_pandas()
        for k, v in (what.get("partition") or {}).items():
            values = v if isinstance(v, list) else [v]
            frame = frame[frame[k].astype(str).isin([str(x) for x in values])]
        return frame.reset_index(drop=True)
    path = Path(what)
    if (path / "_delta_log").is_dir():
        return DeltaTable(str(path)).to_pandas()
    return pd.read_parquet(path)
