"""The `nightly:` settings section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt


class NightlySettings(BaseModel):
    """How `medspark nightly` runs and what its morning report shows."""

    model_config = ConfigDict(extra="forbid")

    lock_timeout_hours: PositiveFloat = Field(
        12.0, description="a lock whose holder has not renewed it for this long (a run on "
        "another host that died) is taken over; on this host a dead holder's lock is taken "
        "over at once")
    discover: bool = Field(True, description="run `medspark discover` for the night")
    reference_nights: PositiveInt = Field(
        30, description="drift: tonight's features against those of this many previous nights")
    drift_features: PositiveInt = Field(
        12, description="features shown as small multiples (flagged first, then by KS)")
    drift_bins: PositiveInt = Field(20, description="histogram bins per feature (drift)")
    drift_fdr: float = Field(0.05, gt=0, lt=1, description="BH false discovery rate of drift")
    drift_min_ks: float = Field(0.1, ge=0, le=1,
                                description="smallest KS statistic flagged as drift")
    top_risk: PositiveInt = Field(10, description="highest-risk series listed in the report")
    examples_per_reason: PositiveInt = Field(
        3, description="example paths (relative to the input root) per quarantine reason")
