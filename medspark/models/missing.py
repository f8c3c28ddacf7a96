"""Missing values: a validated plan of rules, fitted once on training rows, applied unchanged later.

A `MissingValuePlan` (pydantic, from YAML/dict) lists rules applied in order; each rule names
columns or patterns (`glcm_*` glob, `re:^glcm_.*` regex). `plan.fit(train)` resolves the patterns
and learns every statistic and model on the training rows, giving a `FittedImputer` whose
`transform(df)` reuses exactly those (nothing is refitted at prediction time), so a test row is
filled the way a training row was. Rows a rule cannot fill are never lost silently: they leave the
output frame and come back in `ImputeResult.rejected` with the step and the reason.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medspark.models.impute_steps import (
    FIT_RULE,
    STEP_TYPES,
    MissingColumnError,
    Scalar,
    Step,
    interpolate_1d,
    resolve_columns,
)

__all__ = [
    "ColumnMissing", "DropColumns", "DropRows", "Fill", "FillSpec", "FittedImputer",
    "ImputeReport", "ImputeResult", "Interpolate", "MissingColumnError", "MissingValuePlan",
    "ModelImpute", "interpolate_1d", "resolve_columns",
]

FORMAT_VERSION = 1
STATE_FILE = "imputer.json"
FillMethod = Literal["mean", "median", "mode", "constant"]


# --------------------------------------------------------------------------------------- config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FillSpec(_Strict):
    """A fill statistic: mean/median (numeric), mode (any type) or a constant `value`."""

    method: FillMethod = "median"
    value: Scalar | None = Field(None, description="the constant, for method=constant only")

    @model_validator(mode="after")
    def _value_iff_constant(self) -> FillSpec:
        if (self.method == "constant") != (self.value is not None):
            raise ValueError("`value` is required for method=constant and only then")
        return self


class _Rule(_Strict):
    columns: list[str] = Field(min_length=1, description="names, globs, or 're:' regexes")


class DropRows(_Rule):
    """Rows missing any of these columns cannot be used: they are rejected (and reported)."""

    strategy: Literal["drop_rows"]


class DropColumns(_Rule):
    """Columns whose training missing rate is above `max_missing_rate` are dropped for good."""

    strategy: Literal["drop_columns"]
    columns: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    max_missing_rate: float = Field(0.5, ge=0.0, le=1.0)


class Fill(_Rule, FillSpec):
    """Fill with a statistic learnt on the training rows (or a constant)."""

    strategy: Literal["fill"]


class Interpolate(_Rule):
    """Interpolate along `order_by` within each `group_by` group (e.g. slices of one series).

    Interior gaps are interpolated on the order-key values (unequal spacing respected); with
    fewer valid points than `order + 1`, the polynomial degree drops to what the points allow.
    Gaps beyond the group's first/last valid value take the nearest valid value
    (`edges=nearest`) or stay NaN (`edges=nan`); whatever is still NaN (edges, all-NaN groups,
    missing order or group key) gets `fallback` if set, otherwise the row is rejected.
    """

    strategy: Literal["interpolate"]
    method: Literal["linear", "polynomial"] = "linear"
    order: int | None = Field(None, ge=1, description="polynomial (spline) degree")
    order_by: str
    group_by: list[str] = Field(default_factory=list)
    edges: Literal["nearest", "nan"] = "nearest"
    fallback: FillSpec | None = None

    @model_validator(mode="after")
    def _order_for_polynomial(self) -> Interpolate:
        if (self.method == "polynomial") != (self.order is not None):
            raise ValueError("`order` is required for method=polynomial and only then")
        return self


class ModelImpute(_Rule):
    """Predict each missing column from the others with a model fitted on the training rows.

    `iterative`: sklearn IterativeImputer (BayesianRidge) over targets + features.
    `bayesian_ridge` / `random_forest`: one regressor per target, trained on the complete rows
    (target and every input observed) or, with `train_rows=observed_target`, on every row with
    the target, missing inputs filled with their training medians. At prediction time missing
    inputs are filled with those medians too.
    """

    strategy: Literal["model"]
    estimator: Literal["iterative", "bayesian_ridge", "random_forest"] = "iterative"
    features: list[str] | None = Field(
        None, description="input columns/patterns; default every numeric non-excluded column"
    )
    max_iter: int = Field(10, ge=1, description="IterativeImputer rounds")
    n_estimators: int = Field(100, ge=1, description="random forest trees")
    train_rows: Literal["complete", "observed_target"] = "complete"
    seed: int = 0
    n_threads: int | None = Field(
        1, ge=1, description="BLAS/OpenMP threads while fitting/predicting; None: library default"
    )


Rule = Annotated[
    DropRows | DropColumns | Fill | Interpolate | ModelImpute, Field(discriminator="strategy")
]


class MissingValuePlan(_Strict):
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

    def save(self, directory: str | Path) -> Path:
        """Write `imputer.json` plus one pickle per step with estimators (`step_<i>.pkl`)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = self.to_dict()
        for i, (step, desc) in enumerate(zip(self.steps, state["steps"], strict=True)):
            if step.artifacts() is not None:
                name = f"step_{i}.pkl"
                with open(out / name, "wb") as fh:
                    pickle.dump(step.artifacts(), fh, protocol=pickle.HIGHEST_PROTOCOL)
                desc["artifacts"] = name
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, allow_nan=False))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> FittedImputer:
        """Read what `save` wrote (pickles are trusted: load only directories you wrote)."""
        import sklearn

        src = Path(directory)
        state = json.loads((src / STATE_FILE).read_text())
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
                with open(src / artifacts, "rb") as fh:
                    step.models = pickle.load(fh)  # type: ignore[attr-defined]
            steps.append(step)
        report = state.get("train_report")
        return cls(
            MissingValuePlan.model_validate(state["plan"]),
            steps,
            ImputeReport.model_validate(report) if report else None,
        )
