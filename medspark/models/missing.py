"""Missing values: a validated plan of rules, fitted once on training rows, applied unchanged later.

A `MissingValuePlan` (pydantic, from YAML/dict) lists rules applied in order; each rule names
columns or patterns (`glcm_*` glob, `re:^glcm_.*` regex). `plan.fit(train)` resolves the patterns
and learns every statistic and model on the training rows, giving a `FittedImputer` whose
`transform(df)` reuses exactly those (nothing is refitted at prediction time), so a test row is
filled the way a training row was. Rows a rule cannot fill are never lost silently: they leave the
output frame and come back in `ImputeResult.rejected` with the step and the reason.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from medspark.models.impute_rules import (
    DropColumns,
    DropRows,
    Fill,
    FillSpec,
    Interpolate,
    ModelImpute,
    Rule,
    Strict,
)
from medspark.models.impute_steps import (
    FIT_RULE,
    STEP_TYPES,
    MissingColumnError,
    Step,
    interpolate_1d,
    resolve_columns,
)

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from medspark.models.folder import Folder

__all__ = [
    "ColumnMissing", "DropColumns", "DropRows", "Fill", "FillSpec", "FittedImputer",
    "ImputeReport", "ImputeResult", "Interpolate", "MissingColumnError", "MissingValuePlan",
    "ModelImpute", "interpolate_1d", "resolve_columns",
]

FORMAT_VERSION = 1
STATE_FILE = "imputer.json"
REJECT_STEP, REJECT_REASON = "_ms_reject_step", "_ms_reject_reason"


class MissingValuePlan(Strict):
    """The ordered rules plus the columns no pattern may touch (ids, labels)."""

    rules: list[Rule] = Field(min_length=1)
    id_columns: list[str] = Field(
        default_factory=list, description="copied into the rejected-rows frame; never imputed"
    )
    exclude: list[str] = Field(
        default_factory=list, description="names/patterns that patterns never match (labels)"
    )

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | MissingValuePlan) -> MissingValuePlan:
        """Validate a mapping (e.g. a YAML section); a plan passes through unchanged."""
        return config if isinstance(config, cls) else cls.model_validate(config)

    def fit(self, df: pd.DataFrame) -> FittedImputer:
        """Learn every rule on `df` (rules in order, each on the previous rule's output)."""
        return self.fit_transform(df)[0]

    def fit_transform(self, df: pd.DataFrame) -> tuple[FittedImputer, ImputeResult]:
        """Fit, and return the training frame transformed along the way."""
        _check_frame(df, self.id_columns)
        before = df.isna().sum()
        current = df.copy()
        steps: list[Step] = []
        rejected: list[pd.DataFrame] = []
        for i, rule in enumerate(self.rules):
            step = FIT_RULE[rule.strategy](rule, current, self._excluded())
            current, reasons = step.apply(current)
            rejected.append(_rejected_frame(df, reasons, self.id_columns, i, rule.strategy))
            steps.append(step)
        fitted = FittedImputer(self, steps)
        result = fitted._result(df, before, current, rejected)
        fitted.train_report = result.report
        return fitted, result

    def _excluded(self) -> list[str]:
        return [*self.exclude, *self.id_columns]


# -------------------------------------------------------------------------------------- result
class ColumnMissing(BaseModel):
    """Missing count and rate of one column before and after (None after: column dropped)."""

    missing_before: int
    rate_before: float
    missing_after: int | None
    rate_after: float | None


class ImputeReport(BaseModel):
    """What one transform did: rows in/out/dropped, columns dropped, missingness per column."""

    rows_in: int
    rows_out: int
    rows_dropped: int
    rows_dropped_by_step: dict[str, int]
    columns_dropped: list[str]
    columns: dict[str, ColumnMissing]

    @classmethod
    def from_counts(cls, rows_in: int, rows_out: int, by_step: Mapping[str, int],
                    before: Mapping[str, int], after: Mapping[str, int | None]
                    ) -> ImputeReport:
        """A report from counts made elsewhere (Spark aggregates): missing values per column
        before (every input column) and after (None: the column was dropped)."""
        columns = {str(c): ColumnMissing(
            missing_before=int(n), rate_before=_rate(int(n), rows_in),
            missing_after=None if after.get(c) is None else int(after[c]),
            rate_after=None if after.get(c) is None else _rate(int(after[c]), rows_out))
            for c, n in before.items()}
        return cls(rows_in=rows_in, rows_out=rows_out, rows_dropped=rows_in - rows_out,
                   rows_dropped_by_step={str(k): int(v) for k, v in by_step.items()},
                   columns_dropped=[str(c) for c in before if after.get(c) is None],
                   columns=columns)


def batch_counts(raw: pd.DataFrame, marked: pd.DataFrame, columns: Sequence[str],
                 kept: Sequence[str]) -> dict[str, Any]:
    """One batch's share of an `ImputeReport`: `raw` rows and what `mark_rejected` made of
    them (`marked`); missing values of `columns` before, of the `kept` ones after. Batches
    counted apart (Spark partitions, a task's rows) add up with `sum_counts`."""
    ok = marked[marked[REJECT_STEP].isna()]
    return {"rows_in": len(raw), "rows_out": len(ok),
            "before": raw[list(columns)].isna().sum().to_numpy(dtype="int64"),
            "after": ok[list(kept)].isna().sum().to_numpy(dtype="int64"),
            "steps": marked[REJECT_STEP].dropna().value_counts().to_dict()}


def sum_counts(batches: Sequence[Mapping[str, Any]], columns: Sequence[str],
               kept: Sequence[str]) -> ImputeReport:
    """The report of every batch's `batch_counts` together (a dropped column: None after)."""
    before, after = np.zeros(len(columns), np.int64), np.zeros(len(kept), np.int64)
    steps: dict[str, int] = {}
    for b in batches:
        before += np.asarray(b["before"], dtype=np.int64)
        after += np.asarray(b["after"], dtype=np.int64)
        for step, n in (b["steps"] or {}).items():
            steps[step] = steps.get(step, 0) + int(n)
    missing_after = dict(zip(kept, after.tolist(), strict=True))
    return ImputeReport.from_counts(
        sum(int(b["rows_in"]) for b in batches), sum(int(b["rows_out"]) for b in batches),
        steps, dict(zip(columns, before.tolist(), strict=True)),
        {c: missing_after.get(c) for c in columns})


@dataclass
class ImputeResult:
    """The filled frame, the rows set aside (index = input index; ids, step, reason), a report."""

    frame: pd.DataFrame
    rejected: pd.DataFrame
    report: ImputeReport


def _check_frame(df: pd.DataFrame, id_columns: Sequence[str]) -> None:
    if not df.index.is_unique:
        raise ValueError("the frame's index must be unique (rows are reported by index)")
    absent = [c for c in id_columns if c not in df.columns]
    if absent:
        raise MissingColumnError(f"id column(s) {absent} not in the frame")


def _rejected_frame(
    df: pd.DataFrame, reasons: pd.Series, id_columns: Sequence[str], step: int, strategy: str
) -> pd.DataFrame:
    out = df.loc[reasons.index, list(id_columns)].copy()
    out["step"] = f"{step}:{strategy}"
    out["reason"] = reasons.astype(object)
    return out


def _rate(n: int, rows: int) -> float:
    return n / rows if rows else 0.0


@dataclass
class FittedImputer:
    """A fitted plan: applies the learnt statistics/models as they are; save/load-able."""

    plan: MissingValuePlan
    steps: list[Step]
    train_report: ImputeReport | None = None

    def required_columns(self) -> list[str]:
        """Columns a frame must have at prediction time (id columns included)."""
        cols = [*self.plan.id_columns]
        for step in self.steps:
            cols.extend(step.required())
        return list(dict.fromkeys(cols))

    def transform(self, df: pd.DataFrame) -> ImputeResult:
        """Fill `df` with the fitted statistics; rows that cannot be filled go to `rejected`."""
        _check_frame(df, self.plan.id_columns)
        absent = [c for c in self.required_columns() if c not in df.columns]
        if absent:
            raise MissingColumnError(
                "column(s) required by the fitted imputer are missing: " + ", ".join(absent)
            )
        before = df.isna().sum()
        current = df.copy()
        rejected = []
        for i, step in enumerate(self.steps):
            current, reasons = step.apply(current)
            rejected.append(_rejected_frame(df, reasons, self.plan.id_columns, i, step.strategy))
        return self._result(df, before, current, rejected)

    def _result(
        self, df: pd.DataFrame, before: pd.Series, out: pd.DataFrame, rejected: list[pd.DataFrame]
    ) -> ImputeResult:
        rej = pd.concat(rejected) if rejected else pd.DataFrame(columns=["step", "reason"])
        rej = rej.astype({"step": object, "reason": object})
        after = out.isna().sum()
        n_in, n_out = len(df), len(out)
        columns = {
            str(c): ColumnMissing(
                missing_before=int(before[c]),
                rate_before=_rate(int(before[c]), n_in),
                missing_after=int(after[c]) if c in after.index else None,
                rate_after=_rate(int(after[c]), n_out) if c in after.index else None,
            )
            for c in df.columns
        }
        report = ImputeReport(
            rows_in=n_in,
            rows_out=n_out,
            rows_dropped=len(rej),
            rows_dropped_by_step={str(k): int(v) for k, v in rej["step"].value_counts().items()},
            columns_dropped=[str(c) for c in df.columns if c not in out.columns],
            columns=columns,
        )
        return ImputeResult(out, rej, report)

    def describe(self) -> list[dict[str, Any]]:
        """Each step's fitted statistics (JSON-able), for logs and reports."""
        return [step.describe() for step in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; fitted estimators of `model` steps are not included (see `save`)."""
        import sklearn

        return {
            "format_version": FORMAT_VERSION,
            "sklearn_version": sklearn.__version__,
            "plan": self.plan.model_dump(mode="json"),
            "steps": self.describe(),
            "train_report": self.train_report.model_dump() if self.train_report else None,
        }

    def save(self, directory: str | Path | Folder,
             filesystem: pafs.FileSystem | None = None) -> Folder:
        """Write `imputer.json` plus one pickle per step with estimators (`step_<i>.pkl`) into
        `directory`: a local path, a URI (`hdfs://`, `s3://`, `file://`) or a path on
        `filesystem` (any pyarrow filesystem)."""
        from medspark.models.folder import Folder

        out = Folder.at(directory, filesystem).make()
        state = self.to_dict()
        for i, (step, desc) in enumerate(zip(self.steps, state["steps"], strict=True)):
            if step.artifacts() is not None:
                desc["artifacts"] = out.write_bytes(
                    f"step_{i}.pkl", pickle.dumps(step.artifacts(),
                                                  protocol=pickle.HIGHEST_PROTOCOL))
        out.write_json(STATE_FILE, state)
        return out

    @classmethod
    def load(cls, directory: str | Path | Folder,
             filesystem: pafs.FileSystem | None = None) -> FittedImputer:
        """Read what `save` wrote (pickles are trusted: load only directories you wrote)."""
        import sklearn

        from medspark.models.folder import Folder

        src = Folder.at(directory, filesystem)
        state = src.read_json(STATE_FILE)
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{src}: unsupported imputer format {state.get('format_version')}")
        if state.get("sklearn_version") != sklearn.__version__:
            warnings.warn(
                f"imputer saved with scikit-learn {state.get('sklearn_version')}, "
                f"loading with {sklearn.__version__}",
                stacklevel=2,
            )
        steps: list[Step] = []
        for desc in state["steps"]:
            desc = dict(desc)
            kind = desc.pop("strategy")
            artifacts = desc.pop("artifacts", None)
            step = STEP_TYPES[kind](**desc)
            if artifacts is not None:
                step.models = pickle.loads(src.read_bytes(artifacts))  # type: ignore[attr-defined]
            steps.append(step)
        report = state.get("train_report")
        return cls(
            MissingValuePlan.model_validate(state["plan"]),
            steps,
            ImputeReport.model_validate(report) if report else None,
        )


def model_features(fitted: FittedImputer, features: Sequence[str]) -> list[str]:
    """The features left after the fitted plan dropped columns (the model's inputs)."""
    dropped = set(fitted.train_report.columns_dropped if fitted.train_report else [])
    for step in fitted.steps:
        dropped |= set(getattr(step, "dropped", []))
    return [c for c in features if c not in dropped]


def mark_rejected(pdf: pd.DataFrame, fitted: FittedImputer, features: Sequence[str]
                  ) -> pd.DataFrame:
    """`pdf` (unique index) with the model features imputed and two columns saying why a row
    cannot be used (null when it can): `_ms_reject_step` (the first step that rejected it, or
    `nan_after_imputation` when a model feature is still missing) and `_ms_reject_reason`.
    Rejected rows keep their input values; the rows and columns are those of `pdf`."""
    res = fitted.transform(pdf)
    keep = model_features(fitted, features)
    out = pdf.copy()
    filled = res.frame
    if keep:  # one block assignment (a loop over columns cost ~1 ms a column)
        values = filled[keep].to_numpy(dtype=float)
        if filled.index.equals(out.index):
            out[keep] = values
            out = out.copy()  # one block again (column-wise replacement fragments the frame)
        else:
            out.loc[filled.index, keep] = values
    out[REJECT_STEP], out[REJECT_REASON] = None, None
    rej = res.rejected.groupby(level=0).first()  # the first step that rejected a row
    out.loc[rej.index, REJECT_STEP] = rej["step"].astype(str)
    out.loc[rej.index, REJECT_REASON] = rej["reason"].astype(str)
    left = out.loc[out[REJECT_STEP].isna(), keep].isna()
    bad = left.any(axis=1)
    if bad.any():
        out.loc[bad[bad].index, REJECT_STEP] = "nan_after_imputation"
        out.loc[bad[bad].index, REJECT_REASON] = [
            "NaN left in " + ", ".join(left.columns[row].tolist()[:5])
            for row in left[bad].to_numpy()]
    return out
