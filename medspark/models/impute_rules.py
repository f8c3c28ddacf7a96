"""The rules of a missing-value plan (pydantic): what to drop, fill, interpolate or model.

Kept apart from `medspark.models.missing` (the plan and the fitted imputer) and
`medspark.models.impute_steps` (the fitted steps), which both import them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = float | int | str | bool
FillMethod = Literal["mean", "median", "mode", "constant"]


class Strict(BaseModel):
    """Unknown keys and loose types are errors; a validated rule is immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _only_with(rule: Any, field: str, needed: bool, when: str) -> Any:
    """`rule` when its `field` is set exactly when `needed`; else ValueError."""
    if needed != (getattr(rule, field) is not None):
        raise ValueError(f"`{field}` is required for {when} and only then")
    return rule


class FillSpec(Strict):
    """A fill statistic: mean/median (numeric), mode (any type) or a constant `value`."""

    method: FillMethod = "median"
    value: Scalar | None = Field(None, description="the constant, for method=constant only")

    @model_validator(mode="after")
    def _value_iff_constant(self) -> FillSpec:
        return _only_with(self, "value", self.method == "constant", "method=constant")


class _Rule(Strict):
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
        return _only_with(self, "order", self.method == "polynomial", "method=polynomial")


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


