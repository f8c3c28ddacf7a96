"""Label tables: load a CSV/Parquet keyed by path, SOP UID, series UID or accession number.

Labels are joined "before pseudonymisation" in effect, without raw identifiers ever entering
Spark: the key column is pseudonymised here with the same key as the images, then joined on the
catalog's pseudonym column.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from medspark.config import ConfigError
from medspark.privacy.pseudonym import Pseudonymizer

# label-table key column -> (catalog column it joins, pseudonym namespace or None)
KEYS: dict[str, tuple[str, str | None]] = {
    "source_path": ("source_relpath", None),
    "sop_instance_uid": ("sop_pseudo_uid", "sop"),
    "series_instance_uid": ("series_pseudo_uid", "series"),
    "accession_number": ("accession_pseudo_id", "accession"),
}
# key columns are never copied into the catalog, nor any column whose name says it identifies
# a person, a visit or a site (hospital label exports often carry the MRN beside the label)
DROP = set(KEYS) | {"path"}
IDENTIFYING = re.compile(
    r"patient|mrn|name|birth|dob|address|phone|accession|physician|doctor|ssn|email|"
    r"institution|hospital|uid$|^id$|_id$", re.IGNORECASE)


def read_label_file(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet label file (keys kept as strings)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"labels file not found: {path}")
    if p.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(p)
    return pd.read_csv(p, dtype={k: str for k in (*KEYS, "path")})


def prepare_labels(path: str, pseudo: Pseudonymizer, key: str = "auto"
                   ) -> tuple[pd.DataFrame, str]:
    """Label table ready to join: (frame with the catalog join column, join column name)."""
    table = read_label_file(path)
    if "path" in table.columns and "source_path" not in table.columns:
        table = table.rename(columns={"path": "source_path"})
    if "label" not in table.columns:
        raise ConfigError(f"{path}: a labels file needs a 'label' column")
    if key == "auto":
        key = next((k for k in KEYS if k in table.columns), "")
        if not key:
            raise ConfigError(f"{path}: no key column; expected one of {', '.join(KEYS)}")
    elif key not in table.columns:
        raise ConfigError(f"{path}: label key column {key!r} not found")
    join_col, namespace = KEYS[key]
    keys = table[key].astype(str).str.strip()
    if key == "source_path":
        keys = (keys.str.replace("\\", "/", regex=False)
                .str.replace(r"^(\./)+", "", regex=True).str.lstrip("/"))
    if keys.duplicated().any():
        dup = int(keys.duplicated().sum())
        raise ConfigError(f"{path}: {dup} duplicate values in key column {key!r}")
    out = table[[c for c in table.columns
                 if c.lower() not in DROP and (c == "label" or not IDENTIFYING.search(c))]].copy()
    out.insert(0, join_col, keys if namespace is None
               else [pseudo.pseudonym(namespace, v) for v in keys])
    return out, join_col
