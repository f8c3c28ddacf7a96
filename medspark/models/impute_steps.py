"""Fitted missing-value steps: column patterns, fill statistics, interpolation, model imputation.

Each `_fit_*` function learns one rule of a `MissingValuePlan` on the training frame and returns a
step holding only JSON-able state (plus sklearn estimators for `model`), which `apply` reuses
as it is on any later frame. `medspark.models.missing` strings them together.
"""

from __future__ import annotations

import abc
import fnmatch
import re
import warnings
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.interpolate import make_interp_spline

from medspark.jsonable import py
from medspark.models import impute_rules as rules
from medspark.models.impute_rules import Scalar


class MissingColumnError(ValueError):
    """A column the fitted imputer needs is absent from the frame."""


# ------------------------------------------------------------------------------------- columns
def is_pattern(name: str) -> bool:
    """A glob (`*?[`) or a regex (`re:` prefix), as opposed to a plain column name."""
    return name.startswith("re:") or any(ch in name for ch in "*?[")


def _matches(pattern: str, column: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], column) is not None
    return fnmatch.fnmatchcase(column, pattern)


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def resolve_columns(
    patterns: Sequence[str],
    df: pd.DataFrame,
    *,
    exclude: Sequence[str] = (),
    numeric_only: bool = False,
    where: str = "rule",
) -> list[str]:
    """Columns of `df` named or matched by `patterns`, in frame order.

    Plain names must exist (and be numeric when `numeric_only`); patterns skip excluded and,
    when `numeric_only`, non-numeric columns, and may match nothing.
    """
    chosen: set[str] = set()
    for p in patterns:
        if not is_pattern(p):
            if p not in df.columns:
                raise MissingColumnError(f"{where}: column {p!r} is not in the frame")
            if numeric_only and not _is_numeric(df[p]):
                raise ValueError(f"{where}: column {p!r} is not numeric ({df[p].dtype})")
            chosen.add(p)
            continue
        for c in df.columns:
            if (
                _matches(p, c)
                and not any(c == e or (is_pattern(e) and _matches(e, c)) for e in exclude)
                and (not numeric_only or _is_numeric(df[c]))
            ):
                chosen.add(c)
    return [c for c in df.columns if c in chosen]


def _statistic(s: pd.Series, spec: rules.FillSpec, where: str) -> Scalar:
    if spec.method == "constant":
        return spec.value  # type: ignore[return-value]
    if spec.method in ("mean", "median") and not _is_numeric(s):
        raise ValueError(f"{where}: {spec.method} of non-numeric column {s.name!r}")
    observed = s.dropna()
    if observed.empty:
        raise ValueError(
            f"{where}: column {s.name!r} has no observed value to take the {spec.method} of "
            "(drop it first with drop_columns)"
        )
    if spec.method == "mode":
        return py(observed.mode().iloc[0])
    return float(observed.mean() if spec.method == "mean" else observed.median())


def medians_leaving_out(folds: np.ndarray, values: np.ndarray,
                        leave_out: Sequence[int | None]) -> np.ndarray:
    """Column medians of `values` (rows x columns, NaN where missing) over the rows whose fold
    is not f, for each f of `leave_out` (None: every row): a (len(leave_out), columns) array,
    NaN where a column has no observed value in those rows."""
    out = np.full((len(leave_out), values.shape[1]), np.nan)
    for i, f in enumerate(leave_out):
        part = values if f is None else values[folds != f]
        if len(part):
            with warnings.catch_warnings():  # a column with nothing observed: NaN, said later
                warnings.simplefilter("ignore", RuntimeWarning)
                out[i] = np.nanmedian(part, axis=0)
    return out


def _fill(df: pd.DataFrame, values: Mapping[str, Scalar]) -> None:
    for col, value in values.items():
        mask = df[col].isna()
        if mask.any():
            if _is_numeric(df[col]) and isinstance(value, int | float):
                df[col] = df[col].astype(float)
            df.loc[mask, col] = value


# --------------------------------------------------------------------------------------- steps
class Step(abc.ABC):
    """A fitted rule: `apply` fills in place and returns the rows it could not handle."""

    strategy: ClassVar[str]

    @abc.abstractmethod
    def required(self) -> list[str]:
        """The columns this rule reads."""

    @abc.abstractmethod
    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        """Fill `df` in place; return it and the ids of rows it could not fill."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-able fitted state (estimators excluded: see `artifacts`)."""

    def artifacts(self) -> Any:
        return None

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.strategy, **self.state()}


def _no_rejects() -> pd.Series:
    return pd.Series([], dtype=object)


@dataclass
class FittedDropRows(Step):
    columns: list[str]
    strategy: ClassVar[str] = "drop_rows"

    def required(self) -> list[str]:
        return list(self.columns)

    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        missing = df[self.columns].isna()
        bad = missing.any(axis=1)
        if not bad.any():
            return df, _no_rejects()
        names = np.array(self.columns, dtype=object)
        reasons = pd.Series(
            ["missing " + ", ".join(names[row]) for row in missing[bad].to_numpy()],
            index=df.index[bad.to_numpy()],
            dtype=object,
        )
        return df.loc[~bad], reasons

    def state(self) -> dict[str, Any]:
        return {"columns": self.columns}


@dataclass
class FittedDropColumns(Step):
    dropped: list[str]
    rates: dict[str, float]
    strategy: ClassVar[str] = "drop_columns"

    def required(self) -> list[str]:
        return []

    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        return df.drop(columns=[c for c in self.dropped if c in df.columns]), _no_rejects()

    def state(self) -> dict[str, Any]:
        return {"dropped": self.dropped, "rates": self.rates}


@dataclass
class FittedFill(Step):
    values: dict[str, Scalar]
    strategy: ClassVar[str] = "fill"

    def required(self) -> list[str]:
        return list(self.values)

    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        _fill(df, self.values)
        return df, _no_rejects()

    def state(self) -> dict[str, Any]:
        return {"values": self.values}


def interpolate_1d(
    x: np.ndarray, y: np.ndarray, method: str = "linear", order: int = 1, edges: str = "nearest"
) -> np.ndarray:
    """Fill NaNs of `y` by interpolating on `x` (any order, unequal spacing; NaN x stays NaN).

    Repeated x values are averaged. `polynomial` uses an interpolating spline of degree
    `order` (exact for polynomials of that degree), lowered when too few points are valid.
    """
    y = np.asarray(y, dtype=float).copy()
    x = np.asarray(x, dtype=float)
    valid = ~np.isnan(y) & ~np.isnan(x)
    need = np.isnan(y) & ~np.isnan(x)
    if not valid.any() or not need.any():
        return y
    ux, inv = np.unique(x[valid], return_inverse=True)
    uy = np.bincount(inv, weights=y[valid]) / np.bincount(inv)
    xt = x[need]
    out = np.full(xt.shape, np.nan)
    inside = (xt >= ux[0]) & (xt <= ux[-1])
    degree = 1 if method == "linear" else min(order, len(ux) - 1)
    if len(ux) == 1:
        out[inside] = uy[0]
    elif degree == 1:
        out[inside] = np.interp(xt[inside], ux, uy)
    elif inside.any():
        out[inside] = make_interp_spline(ux, uy, k=degree)(xt[inside])
    if edges == "nearest":
        out[xt < ux[0]] = uy[0]
        out[xt > ux[-1]] = uy[-1]
    y[need] = out
    return y


def _order_values(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s):
        return np.where(s.isna(), np.nan, s.astype("int64").to_numpy(dtype=float))
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


@dataclass
class FittedInterpolate(Step):
    columns: list[str]
    method: str
    order: int
    order_by: str
    group_by: list[str]
    edges: str
    fallback: dict[str, Scalar] | None
    strategy: ClassVar[str] = "interpolate"

    def required(self) -> list[str]:
        return [*self.columns, self.order_by, *self.group_by]

    def _groups(self, df: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
        """Group number of each row (-1: a group key is missing) and each group's positions."""
        if not self.group_by:
            return np.zeros(len(df), dtype=int), [np.arange(len(df))]
        groups = df.groupby(self.group_by, sort=False, dropna=True)
        codes = groups.ngroup().fillna(-1).to_numpy(dtype=int)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        members = [m for m in np.split(order, bounds) if len(m) and codes[m[0]] >= 0]
        return codes, members

    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        x = _order_values(df[self.order_by])
        codes, members = self._groups(df)
        reasons: dict[int, list[str]] = {}
        for col in self.columns:
            y = df[col].astype(float).to_numpy()
            gaps = np.isnan(y)
            if not gaps.any():
                continue
            filled = y.copy()
            empty = np.zeros(len(df), dtype=bool)
            for g in np.unique(codes[gaps & (codes >= 0)]):  # only groups with a gap
                pos = members[g]
                filled[pos] = interpolate_1d(x[pos], y[pos], self.method, self.order, self.edges)
                empty[pos] = gaps[pos].all()
            still = np.isnan(filled)
            if self.fallback is not None:
                filled[still] = self.fallback[col]
            else:
                for p in np.flatnonzero(still):
                    why = self._why(col, bool(np.isnan(x[p])), codes[p] >= 0, bool(empty[p]))
                    reasons.setdefault(int(p), []).append(why)
            df[col] = filled
        if not reasons:
            return df, _no_rejects()
        pos = np.array(sorted(reasons))
        why = ["; ".join(reasons[p]) for p in pos]
        rejected = pd.Series(why, index=df.index[pos], dtype=object)
        keep = np.ones(len(df), dtype=bool)
        keep[pos] = False
        return df.iloc[keep], rejected

    def _why(self, col: str, no_x: bool, grouped: bool, empty_group: bool) -> str:
        if not grouped:
            return f"{col}: group key {self.group_by} missing, no fallback"
        if no_x:
            return f"{col}: order key {self.order_by!r} missing, no fallback"
        if empty_group:
            return f"{col}: no valid value in its group, no fallback"
        return f"{col}: beyond the group's valid values (edges=nan), no fallback"

    def state(self) -> dict[str, Any]:
        return {
            "columns": self.columns, "method": self.method, "order": self.order,
            "order_by": self.order_by, "group_by": self.group_by, "edges": self.edges,
            "fallback": self.fallback,
        }


MIN_TRAIN_ROWS = 10


def _threads(n: int | None) -> AbstractContextManager[Any]:
    """Cap BLAS/OpenMP threads: many tiny regressions run far faster single-threaded."""
    from threadpoolctl import threadpool_limits

    return nullcontext() if n is None else threadpool_limits(limits=n)


def _regressor(rule: rules.ModelImpute) -> Any:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import BayesianRidge

    if rule.estimator == "bayesian_ridge":
        return BayesianRidge()
    return RandomForestRegressor(n_estimators=rule.n_estimators, random_state=rule.seed, n_jobs=1)


@dataclass
class FittedModel(Step):
    targets: list[str]
    inputs: list[str]
    estimator: str
    medians: dict[str, float]
    n_threads: int | None = 1
    n_iter: int | None = None
    models: Any = field(default=None, repr=False)
    strategy: ClassVar[str] = "model"

    def required(self) -> list[str]:
        return list(dict.fromkeys([*self.targets, *self.inputs]))

    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        if not len(df):
            return df, _no_rejects()
        with _threads(self.n_threads):
            return self._predict(df)

    def _predict(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        cols = self.required()
        if self.estimator == "iterative":
            data = df[cols].astype(float).to_numpy()
            out = self.models.transform(data)
            for j, col in enumerate(cols[: len(self.targets)]):
                df[col] = np.where(np.isnan(data[:, j]), out[:, j], data[:, j])
            return df, _no_rejects()
        for col in self.targets:
            miss = df[col].isna().to_numpy()
            if miss.any():
                others = [c for c in cols if c != col]
                X = df.loc[miss, others].astype(float).fillna(self.medians).to_numpy()
                values = df[col].to_numpy(dtype=float)
                values[miss] = self.models[col].predict(X)
                df[col] = values
        return df, _no_rejects()

    def state(self) -> dict[str, Any]:
        return {
            "targets": self.targets, "inputs": self.inputs, "estimator": self.estimator,
            "medians": self.medians, "n_threads": self.n_threads, "n_iter": self.n_iter,
        }

    def artifacts(self) -> Any:
        return self.models


def _fit_drop_rows(rule: rules.DropRows, df: pd.DataFrame, exclude: list[str]) -> Step:
    return FittedDropRows(resolve_columns(rule.columns, df, exclude=exclude, where="drop_rows"))


def _fit_drop_columns(rule: rules.DropColumns, df: pd.DataFrame, exclude: list[str]) -> Step:
    cols = resolve_columns(rule.columns, df, exclude=exclude, where="drop_columns")
    n = max(len(df), 1)
    rates = {c: float(df[c].isna().sum() / n) for c in cols}
    dropped = [c for c in cols if rates[c] > rule.max_missing_rate]
    return FittedDropColumns(dropped, {c: rates[c] for c in dropped})


def _fit_fill(rule: rules.Fill, df: pd.DataFrame, exclude: list[str]) -> Step:
    numeric = rule.method in ("mean", "median")
    cols = resolve_columns(rule.columns, df, exclude=exclude, numeric_only=numeric, where="fill")
    return FittedFill({c: _statistic(df[c], rule, "fill") for c in cols})


def _fit_interpolate(rule: rules.Interpolate, df: pd.DataFrame, exclude: list[str]) -> Step:
    keys = [rule.order_by, *rule.group_by]
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise MissingColumnError(f"interpolate: key column(s) {missing} not in the frame")
    cols = resolve_columns(
        rule.columns, df, exclude=[*exclude, *keys], numeric_only=True, where="interpolate"
    )
    fallback = None
    if rule.fallback is not None:
        fallback = {c: _statistic(df[c], rule.fallback, "interpolate fallback") for c in cols}
    return FittedInterpolate(
        cols, rule.method, rule.order or 1, rule.order_by, list(rule.group_by), rule.edges,
        fallback,
    )


def _fit_model(rule: rules.ModelImpute, df: pd.DataFrame, exclude: list[str]) -> Step:
    targets = resolve_columns(rule.columns, df, exclude=exclude, numeric_only=True, where="model")
    feats = resolve_columns(
        rule.features or ["*"], df, exclude=exclude, numeric_only=True, where="model features"
    )
    inputs = [c for c in feats if c not in targets]
    cols = [*targets, *inputs]
    if not targets:
        return FittedModel([], [], rule.estimator, {}, rule.n_threads, None, {})
    if len(cols) < 2:
        raise ValueError("model: needs at least two numeric columns (target and input)")
    data = df[cols].astype(float)
    empty = [c for c in cols if data[c].isna().all()]
    if empty:
        raise ValueError(f"model: column(s) {empty} have no observed value (drop them first)")
    medians = {c: float(data[c].median()) for c in cols}
    with _threads(rule.n_threads):
        models, n_iter = _fit_estimators(rule, data, targets, medians)
    return FittedModel(targets, inputs, rule.estimator, medians, rule.n_threads, n_iter, models)


def _fit_estimators(
    rule: rules.ModelImpute, data: pd.DataFrame, targets: list[str], medians: dict[str, float]
) -> tuple[Any, int | None]:
    if rule.estimator == "iterative":
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        imputer = IterativeImputer(
            max_iter=rule.max_iter, random_state=rule.seed, keep_empty_features=True
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\[IterativeImputer\] Early stopping")
            imputer.fit(data.to_numpy())
        return imputer, int(imputer.n_iter_)
    models = {}
    for col in targets:
        others = [c for c in data.columns if c != col]
        rows = data[col].notna()
        if rule.train_rows == "complete":
            rows &= data[others].notna().all(axis=1)
        if rows.sum() < MIN_TRAIN_ROWS:
            raise ValueError(
                f"model: only {int(rows.sum())} {rule.train_rows} training row(s) for {col!r} "
                f"(need {MIN_TRAIN_ROWS}); use train_rows=observed_target or estimator=iterative"
            )
        X = data.loc[rows, others].fillna(medians).to_numpy()
        models[col] = _regressor(rule).fit(X, data.loc[rows, col].to_numpy())
    return models, None


FIT_RULE = {
    "drop_rows": _fit_drop_rows,
    "drop_columns": _fit_drop_columns,
    "fill": _fit_fill,
    "interpolate": _fit_interpolate,
    "model": _fit_model,
}
STEP_TYPES: dict[str, type[Step]] = {
    "drop_rows": FittedDropRows,
    "drop_columns": FittedDropColumns,
    "fill": FittedFill,
    "interpolate": FittedInterpolate,
    "model": FittedModel,
}


