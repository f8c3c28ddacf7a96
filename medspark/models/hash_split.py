"""The train job's split by group hash, on an Arrow table: what Spark computes, in one process.

`medspark.spark.models.folds.assign_folds` splits a run's rows in Spark SQL: each group (a
patient; a row without one is its own group `own:<key>`) gets a stratum (its most frequent
class, ties to the smallest), is ranked inside its stratum by `xxhash64(seed, group id)` (ties
by id), and by that rank goes to the held-out split (the first `n_test` of the stratum) or to CV
fold `(rank - n_test) mod k`. For a table small enough for one task, the train job instead reads
it with pyarrow in one Spark task and calls `split_table` here, which does the same reading
steps (drop rows with a feature error, count, encode the label, drop unlabelled rows), the same
assignment and the same data fingerprint with Spark's own hash (`spark_hash`), so both paths
give the same folds, counts and model id (tests compare them row for row). `split_counts`
turns the per-stratum, per-fold counts of either path into the split summary and its errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medspark.models.spark_hash import xxhash64, xxhash64_int_then

LABEL = "_ms_label"          # the encoded label (class index or value)
FOLD = "_ms_fold"            # -1: held-out test split; 0..k-1: CV fold
GROUP = "_ms_group"          # the group id as a string; a row without one is its own group
OWN_GROUP = "own:"           # prefix of the group given to a row whose group is null
MAX_CLASSES = 1000


class SplitError(ValueError):
    """The rows cannot be split as configured (the message names the setting to change)."""


@dataclass(frozen=True)
class SplitSpec:
    """What `split_table` reads and how it splits (the train job's resolved settings)."""

    key: str
    group: str
    label: str | None
    task: str                      # classification | regression | clustering
    features: list[str]
    extra: list[str]
    test_size: float
    folds: int
    seed: int
    positive_label: Any = None
    error_col: str | None = None   # rows where it is not null are dropped (and counted)

    @property
    def id_columns(self) -> list[str]:
        """The identifying columns kept as read, in the order the fingerprint hashes them."""
        return list(dict.fromkeys([self.key, self.group, *([self.label] if self.label else []),
                                   *self.extra]))


@dataclass
class TableSplit:
    """`split_table`'s result: the rows to stage and the small summaries the driver needs."""

    rows: pa.Table                 # kept rows: ids as read, features as double, label, group, fold
    groups: pa.Table               # group id -> fold
    counts: dict[str, int]
    labels: list[Any] | None
    cells: list[dict[str, Any]]    # per stratum and fold: groups g, rows n, own-id groups own
    fingerprint: dict[str, int]
    balance: dict[str, dict[str, int]] | None = None  # classification: `label_balance`


def class_order(values: Sequence[Any], label: str, task: str, positive_label: Any) -> list[Any]:
    """The classes by index: sorted, `positive_label` (compared as text) last."""
    values = sorted(values)
    if positive_label is not None:
        pos = [v for v in values if str(v) == str(positive_label)]
        if not pos:
            raise SplitError(f"positive_label {positive_label!r} not among {values}")
        values = [v for v in values if v != pos[0]] + pos
    if len(values) < 2 and task == "classification":
        raise SplitError(f"label {label!r} has {len(values)} class(es): {values}")
    return values


def too_many_classes(label: str) -> SplitError:
    return SplitError(f"label {label!r} has more than {MAX_CLASSES} values: set "
                      "train.task=regression, or the right train.label")


def n_test(size: int, test_size: float) -> int:
    """Held-out groups of a stratum of `size`: Spark's greatest(1, least(size - 1,
    round(size * test_size))), HALF_UP on the double's shortest decimal form as Spark does."""
    rounded = int(Decimal(repr(size * test_size)).quantize(Decimal(1), ROUND_HALF_UP))
    return max(1, min(size - 1, rounded))


def split_counts(cells: Sequence[dict[str, Any]], k: int, group: str, stratify: bool,
                 labels: list[Any] | None, folds_setting: str = "train.selection.folds"
                 ) -> dict[str, Any]:
    """The split summary from per-(stratum, fold) counts; a SplitError when a class has fewer
    than 2 groups or a fold is empty."""
    strata: dict[Any, int] = {}
    counts: dict[int, tuple[int, int]] = {}
    for r in cells:
        strata[r["stratum"]] = strata.get(r["stratum"], 0) + int(r["g"])
        g, n = counts.get(int(r["fold"]), (0, 0))
        counts[int(r["fold"])] = (g + int(r["g"]), n + int(r["n"]))
    small = sorted(s for s, n in strata.items() if n < 2)
    if small:
        small = [labels[int(s)] for s in small] if labels else small
        raise SplitError(f"cannot split by {group!r}: class(es) {small} have fewer than 2 "
                         "groups; more patients are needed, or set train.task / "
                         "train.group_col")
    train_groups = sum(g for f, (g, _) in counts.items() if f >= 0)
    if train_groups < k or any(f not in counts for f in range(k)):
        raise SplitError(f"cannot split by {group!r}: {train_groups} training group(s) for "
                         f"{k} folds (in every class); lower {folds_setting} or "
                         "train.test_size, or add patients")
    return {"test_groups": counts.get(-1, (0, 0))[0], "train_groups": train_groups,
            "folds": k, "rows_by_fold": {str(f): counts.get(f, (0, 0))[1] for f in range(-1, k)},
            "groups_by_fold": {str(f): counts.get(f, (0, 0))[0] for f in range(-1, k)},
            "stratified": stratify, "groups_without_id": sum(int(r["own"]) for r in cells),
            "null_groups": "a row whose group is null is its own group (own:<key>)",
            "method": "seeded xxhash64 rank of the group id within its class"}


def split_table(table: pa.Table, spec: SplitSpec) -> TableSplit:
    """Read, count, encode, split and fingerprint `table` as the train job does in Spark."""
    errors = (np.asarray(table[spec.error_col].is_valid().to_numpy(zero_copy_only=False))
              if spec.error_col else np.zeros(table.num_rows, bool))
    counts = {"feature_error_rows": int(errors.sum())}
    ok = table.filter(pa.array(~errors)) if errors.any() else table
    counts["rows_read"] = ok.num_rows
    label, labels = spec.label, None
    if label:
        missing = np.asarray(ok[label].is_null().to_numpy(zero_copy_only=False))
        counts["rows_without_label"] = int(missing.sum())
        ok = ok.filter(pa.array(~missing)) if missing.any() else ok
    else:
        counts["rows_without_label"] = 0
    if label and spec.task == "classification":
        distinct = pc.unique(ok[label])
        # Spark counts the (label, error) pairs: null and the error rows' labels too
        pairs = len(distinct) + (1 if counts["rows_without_label"] else 0) + (
            len(pc.unique(table.filter(pa.array(errors))[label])) if errors.any() else 0)
        if pairs > MAX_CLASSES:
            raise too_many_classes(label)
        labels = class_order(distinct.to_pylist(), label, spec.task, spec.positive_label)
        index = pc.index_in(ok[label], value_set=pa.array(labels, ok.schema.field(label).type))
        encoded = pc.cast(index, pa.float64())
    elif label:
        encoded = pc.cast(ok[label], pa.float64())
    rows = ok.select(spec.id_columns)
    for name in spec.features:
        rows = rows.append_column(name, pc.cast(ok[name], pa.float64()))
    n = rows.num_rows
    fingerprint = {"rows": n, "hash": int(np.bitwise_xor.reduce(
        xxhash64([rows[c] for c in rows.column_names], n))) if n else 0}
    if label:
        rows = rows.append_column(LABEL, encoded)
    group_ids = _group_ids(rows[spec.group], rows[spec.key])
    rows = rows.append_column(GROUP, group_ids)
    stratify = spec.task == "classification"
    groups, folds_of_rows, cells = _assign(group_ids, rows[LABEL] if label else None, stratify,
                                           spec.test_size, spec.folds, spec.seed)
    rows = rows.append_column(FOLD, pa.array(folds_of_rows, pa.int32()))
    balance = label_balance(folds_of_rows, encoded.to_numpy(), labels) if labels else None
    return TableSplit(rows, groups, counts, labels, cells, fingerprint, balance)


def label_balance(folds: np.ndarray, classes: np.ndarray, labels: list[Any]
                  ) -> dict[str, dict[str, int]]:
    """Rows per class (by its value as text) on each side of the held-out split."""
    out: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for side, rows in (("train", folds >= 0), ("test", folds < 0)):
        index, n = np.unique(classes[rows], return_counts=True)
        out[side] = dict(sorted((str(labels[int(i)]), int(c)) for i, c in zip(index, n,
                                                                               strict=True)))
    return out


def _group_ids(group: pa.ChunkedArray, key: pa.ChunkedArray) -> pa.Array:
    """Spark's coalesce(cast(group as string), concat('own:', cast(key as string)))."""
    own = pc.binary_join_element_wise(OWN_GROUP, pc.cast(key, pa.string()), "")
    return pc.coalesce(pc.cast(group, pa.string()), own).combine_chunks()


def _assign(group_ids: pa.Array, label: pa.ChunkedArray | None, stratify: bool,
            test_size: float, k: int, seed: int
            ) -> tuple[pa.Table, np.ndarray, list[dict[str, Any]]]:
    """(group -> fold table, each row's fold, the per-stratum and fold counts)."""
    ids, row_group = np.unique(np.asarray(group_ids.to_numpy(zero_copy_only=False), dtype=object),
                               return_inverse=True)
    sizes = np.bincount(row_group, minlength=len(ids))
    if stratify and label is not None:
        strata = _modes(row_group, label.to_numpy(), len(ids))
    else:
        strata = np.zeros(len(ids))
    id_array = pa.array(ids, pa.string())
    hashes = xxhash64_int_then(seed, id_array)
    # inside each stratum: by hash, then id (np.unique sorted the ids: position = id order)
    order = np.lexsort((np.arange(len(ids)), hashes, strata))
    fold = np.empty(len(ids), np.int32)
    own = np.asarray(pc.starts_with(id_array, OWN_GROUP).to_numpy(zero_copy_only=False))
    cells: list[dict[str, Any]] = []
    for stratum in np.unique(strata):
        members = order[strata[order] == stratum]
        held = n_test(len(members), test_size)
        rank = np.arange(len(members))
        fold[members] = np.where(rank < held, -1, (rank - held) % k)
        for f in np.unique(fold[members]):
            at = members[fold[members] == f]
            cells.append({"stratum": float(stratum), "fold": int(f), "g": len(at),
                          "n": int(sizes[at].sum()), "own": int(own[at].sum())})
    groups = pa.table({GROUP: id_array, FOLD: pa.array(fold, pa.int32())})
    return groups, fold[row_group], cells


def _modes(row_group: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's most frequent label, ties to the smallest (Spark's deterministic mode)."""
    classes, code = np.unique(labels, return_inverse=True)
    cells, tally = np.unique(row_group.astype(np.int64) * len(classes) + code,
                             return_counts=True)
    group, cls = np.divmod(cells, len(classes))
    best = np.lexsort((cls, -tally, group))  # per group: most rows first, then smallest class
    first = best[np.r_[True, group[best][1:] != group[best][:-1]]]
    modes = np.empty(n_groups)
    modes[group[first]] = classes[cls[first]]
    return modes
