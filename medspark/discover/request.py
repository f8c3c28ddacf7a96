"""What a `medspark discover` run analyses, checked before Spark starts.

Lake mode reads `features/` (one feature set) joined with the catalog's attributes; table mode
reads any Parquet table. The feature set is resolved and the columns the settings name are
checked against the input's schema here (the Delta log's schema, or pyarrow reading one footer of
a local table), so a typo stops the run with exit code 2 before Spark starts.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
from dataclasses import dataclass, field

from medspark.config import ConfigError
from medspark.discover.config import DiscoverSettings
from medspark.lake import Lake, is_local, local_path, table_of

FEATURES_TABLE = "features"


@dataclass
class DiscoverRequest:
    """The input of one run: the lake (outputs go there) and either its features or a table."""

    lake: str
    table: str | None = None
    dates: list[dt.date] = field(default_factory=list)
    feature_set: str | None = None  # resolved by `validate` in lake mode

    def input_name(self) -> str:
        """Short name of what is analysed: `features-<feature_set>` or `table-<hash>`."""
        if self.table:
            path = self.table.rstrip("/")
            path = os.path.abspath(local_path(path)) if is_local(path) else path
            return f"table-{hashlib.sha256(path.encode()).hexdigest()[:12]}"
        return f"features-{self.feature_set}"

    def validate(self, cfg: DiscoverSettings) -> None:
        """Raise ConfigError for anything wrong that can be seen without Spark."""
        if self.table:
            if self.dates:
                raise ConfigError("--date selects lake ingest dates; with --table the newest "
                                  "value of --batch-col is the batch")
            if is_local(self.table) and not os.path.exists(local_path(self.table)):
                raise ConfigError(f"table {self.table} not found")
            self._check_columns(cfg, self._local_schema(local_path(self.table)))
            return
        lake = Lake(self.lake)
        try:
            sets = lake.configurations(FEATURES_TABLE)
        except Exception as e:  # noqa: BLE001 - an unreadable store
            raise ConfigError(f"{lake.path(FEATURES_TABLE)} cannot be read: {e}") from None
        if not sets:
            raise ConfigError(f"{lake.path(FEATURES_TABLE)} holds no feature set: run "
                              "`medspark features` first (or pass --table)")
        if cfg.feature_set:
            if cfg.feature_set not in sets:
                raise ConfigError(f"discover.feature_set {cfg.feature_set!r} not in "
                                  f"{lake.path(FEATURES_TABLE)}; it holds {sets}")
            self.feature_set = cfg.feature_set
        elif len(sets) > 1:
            raise ConfigError(f"{lake.path(FEATURES_TABLE)} holds feature sets {sets}: choose "
                              "one with --set discover.feature_set=<hash>")
        else:
            self.feature_set = sets[0]
        columns: list[str] = []
        for table in (self.features_table(), "catalog"):  # catalog: attributes joined from it
            snap = lake.snapshot(table)
            if snap.arrow_schema is not None:
                columns += snap.arrow_schema.names
        self._check_columns(cfg, columns)

    def features_table(self) -> str:
        """The lake table of the chosen feature set."""
        return table_of(FEATURES_TABLE, self.feature_set)

    @staticmethod
    def _local_schema(path: str) -> list[str] | None:
        try:
            import pyarrow.dataset as ds

            return list(ds.dataset(path, format="parquet", partitioning="hive").schema.names)
        except Exception as e:  # noqa: BLE001 - not Parquet, unreadable
            if os.path.isfile(path) or os.path.isdir(path):
                raise ConfigError(f"{path} cannot be read as Parquet: {e}") from None
            return None

    @staticmethod
    def _check_columns(cfg: DiscoverSettings, columns: list[str] | None) -> None:
        """Columns the settings name explicitly (defaults may be absent: their analyses are
        skipped) and the id column must be in the table."""
        if columns is None:
            return
        have = set(columns)
        named = {"id_col": cfg.id_col} | {
            key: getattr(cfg, key) for key in ("label", "group_col", "date_col", "batch_col")
            if key in cfg.model_fields_set}
        absent = [f"discover.{key}={value!r}" for key, value in named.items()
                  if value and value not in have]
        absent += [f"discover.metadata: {c!r}" for c in cfg.metadata if c not in have]
        absent += [f"discover.features: {p!r}" for p in cfg.features
                   if not any(fnmatch.fnmatchcase(c, p) for c in columns)]
        if absent:
            raise ConfigError("column(s) not in the input table: " + ", ".join(absent))
