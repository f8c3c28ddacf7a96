"""Patient-grouped splits: no patient on both sides, stratified by label, deterministic.

Rows of one patient (slices, lesions, visits) are correlated; a split that puts some of them in
training and others in test scores memorisation of the patient, not generalisation to new ones.
Every split here is made at the group level, and `check_leakage` verifies any split given to it.
Indices are positions (0..n-1) in the frame passed in; `Split` also carries the group ids so a
Spark layer can split its own table by patient.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from medspark.jsonable import py

Task = Literal["auto", "classification", "regression"]
Kind = Literal["classification", "regression"]


@dataclass(frozen=True)
class Split:
    """Positions of the training and test rows, and the groups on each side."""

    train: np.ndarray
    test: np.ndarray
    train_groups: list[Any]
    test_groups: list[Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: positions and group ids as plain lists."""
        return {
            "train": self.train.tolist(),
            "test": self.test.tolist(),
            "train_groups": [py(g) for g in self.train_groups],
            "test_groups": [py(g) for g in self.test_groups],
        }


def infer_task(y: Sequence[Any] | np.ndarray | pd.Series) -> Kind:
    """`regression` for non-integer floats (sklearn's `continuous`), else `classification`.

    Integer targets (e.g. age in years) count as classes: pass `task="regression"` for them.
    """
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(np.asarray(y))
    return "regression" if kind.startswith("continuous") else "classification"


def _columns(
    df: pd.DataFrame, group_col: str, label_col: str | None, task: Task
) -> tuple[np.ndarray, np.ndarray | None, str]:
    for col in (group_col, label_col):
        if col is not None and col not in df.columns:
            raise KeyError(f"column {col!r} is not in the frame")
    groups = df[group_col]
    if groups.isna().any():
        raise ValueError(f"{int(groups.isna().sum())} row(s) have no {group_col!r}")
    if label_col is None:
        return groups.to_numpy(), None, "regression"
    y = df[label_col]
    if y.isna().any():
        raise ValueError(f"{int(y.isna().sum())} row(s) have no label {label_col!r}")
    kind = infer_task(y) if task == "auto" else task
    return groups.to_numpy(), y.to_numpy(), kind


def _make_split(groups: np.ndarray, test_mask: np.ndarray) -> Split:
    train, test = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    return Split(train, test, list(pd.unique(groups[train])), list(pd.unique(groups[test])))


def group_labels(groups: np.ndarray, y: np.ndarray) -> pd.Series:
    """One label per group: its most frequent (ties: the smallest), for group stratification."""
    counts = pd.DataFrame({"g": groups, "y": y}).value_counts().reset_index(name="n")
    counts = counts.sort_values(["g", "n", "y"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("g").set_index("g")["y"]


def train_test_split_grouped(df: pd.DataFrame, group_col: str, label_col: str | None = None,
                             test_size: float = 0.2, seed: int = 0, task: Task = "auto") -> Split:
    """Hold out `test_size` of the GROUPS; stratified by each group's label for classification.

    Groups with mixed labels count with their majority label. Each class needs at least two
    groups to be stratified; a clear error says which class does not.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    groups, y, kind = _columns(df, group_col, label_col, task)
    unique = np.array(sorted(pd.unique(groups), key=_sort_key), dtype=object)
    if len(unique) < 2:
        raise ValueError(f"need at least 2 groups to split, got {len(unique)}")
    stratify = None
    if kind == "classification" and y is not None:
        per_group = group_labels(groups, y).reindex(unique)
        small = per_group.value_counts()
        small = small[small < 2]
        if len(small):
            raise ValueError(
                f"cannot stratify: class(es) {list(small.index)} have fewer than 2 groups"
            )
        stratify = per_group.to_numpy()
    _, test_groups = train_test_split(
        unique, test_size=test_size, random_state=seed, shuffle=True, stratify=stratify
    )
    # hashed membership: np.isin over object ids (strings) takes seconds for 100k rows
    return _make_split(groups, pd.Series(groups).isin(test_groups).to_numpy())


def _sort_key(v: Any) -> tuple[str, Any]:
    # a total order over mixed ids (int and str) so the result does not depend on row order
    return (type(v).__name__, v)


def grouped_stratified_kfold(df: pd.DataFrame, group_col: str, label_col: str | None = None,
                             k: int = 5, seed: int = 0, task: Task = "auto") -> list[Split]:
    """`k` folds with disjoint groups: StratifiedGroupKFold for classification, else GroupKFold.

    Both shuffle with `seed`, so the folds are deterministic and independent of the row order
    only through the group ids.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    _check_sklearn()
    groups, y, kind = _columns(df, group_col, label_col, task)
    n_groups = len(pd.unique(groups))
    if k < 2 or k > n_groups:
        raise ValueError(f"k must be in [2, number of groups = {n_groups}], got {k}")
    if kind == "classification" and y is not None:
        splitter: Any = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    target = y if y is not None else np.zeros(len(groups))
    folds = []
    for _, test in splitter.split(np.zeros((len(groups), 1)), target, groups):
        mask = np.zeros(len(groups), dtype=bool)
        mask[test] = True
        folds.append(_make_split(groups, mask))
    return folds


def _check_sklearn() -> None:
    """StratifiedGroupKFold(shuffle=True) did not stratify before scikit-learn 1.8 (PR 32540)."""
    import sklearn

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) < (1, 8):
        raise RuntimeError(
            f"scikit-learn {sklearn.__version__}: StratifiedGroupKFold(shuffle=True) assigns "
            "groups at random before 1.8; install scikit-learn>=1.8"
        )


@dataclass
class LeakageReport:
    """Groups (and optionally identical feature rows) found on both sides of a split."""

    ok: bool
    shared_groups: dict[int, list[Any]] = field(default_factory=dict)
    duplicate_rows: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "shared_groups": {k: [py(g) for g in v] for k, v in self.shared_groups.items()},
            "duplicate_rows": dict(self.duplicate_rows),
        }


def _row_hashes(df: pd.DataFrame, cols: Sequence[Hashable]) -> np.ndarray:
    return pd.util.hash_pandas_object(df[list(cols)], index=False).to_numpy()


def check_leakage(
    df: pd.DataFrame,
    group_col: str,
    splits: Split | Sequence[Split] | Sequence[tuple[np.ndarray, np.ndarray]],
    feature_cols: Sequence[str] | None = None,
) -> LeakageReport:
    """Check that no group (and, with `feature_cols`, no identical feature row) is on both sides.

    Accepts `Split`s or sklearn-style `(train_idx, test_idx)` position pairs; the report keys
    are the positions of the splits in `splits`.
    """
    items = [splits] if isinstance(splits, Split) else list(splits)
    groups = df[group_col].to_numpy()
    hashes = _row_hashes(df, feature_cols) if feature_cols else None
    report = LeakageReport(ok=True)
    for i, item in enumerate(items):
        train, test = (item.train, item.test) if isinstance(item, Split) else item
        train, test = np.asarray(train, dtype=int), np.asarray(test, dtype=int)
        shared = sorted(set(groups[train]) & set(groups[test]), key=_sort_key)
        if shared:
            report.shared_groups[i] = shared
        if hashes is not None:
            dup = int(np.isin(hashes[test], hashes[train]).sum())
            if dup:
                report.duplicate_rows[i] = dup
    report.ok = not (report.shared_groups or report.duplicate_rows)
    return report


def assert_no_leakage(df: pd.DataFrame, group_col: str, splits: Any, **kw: Any) -> None:
    """Raise `ValueError` describing the leak when `check_leakage` finds one."""
    report = check_leakage(df, group_col, splits, **kw)
    if not report.ok:
        raise ValueError(f"split leaks across train/test: {report.to_dict()}")
