"""The morning report's input: one night of the nightly batch, as typed, validated data.

`NightSummary` is the contract between the nightly orchestration (which fills it from its
manifest and from small aggregates that Spark computed) and the renderer (which only draws it).
The report never sees rows: distributions come as precomputed quantiles and histogram bins, lists
(examples, highest-risk series) come already cut to a few entries. Every section is optional, so
a night without a model or without discovery still renders and says why.

No PHI belongs here: ids are pseudonymous, attributes de-identified, example paths relative to the
input root. The renderer escapes every string, so hostile names cannot inject markup.
See docs/report.md for the field-by-field description.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, model_validator

SCHEMA_VERSION = 1

StageState = Literal["ok", "failed", "skipped"]
NightStatus = Literal["ok", "needs_attention", "incomplete"]


class _Model(BaseModel):
    """Unknown keys are errors: a misspelt field would otherwise vanish from the report."""

    model_config = ConfigDict(extra="forbid")


class Histogram(_Model):
    """Counts over bins: `edges` has one more entry than `counts` and increases strictly."""

    edges: list[float] = Field(description="bin edges, len(counts) + 1, strictly increasing")
    counts: list[NonNegativeFloat] = Field(description="rows per bin (or weights)")

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError(f"histogram needs len(edges) == len(counts) + 1, got "
                             f"{len(self.edges)} edges and {len(self.counts)} counts")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("histogram edges must increase strictly")
        return self

    @property
    def total(self) -> float:
        return float(sum(self.counts))


class Stage(_Model):
    """One stage of the night (ingest, masks, preprocess, features, predict, discover, report)."""

    name: str
    status: StageState
    reason: str | None = Field(None, description="why it failed or was skipped")
    duration_s: NonNegativeFloat | None = None
    counts: dict[str, int] = Field(default_factory=dict, description="e.g. images_in, images_out")
    throughput: NonNegativeFloat | None = Field(None, description="items per second")
    throughput_unit: str = "images/s"
    outputs: list[str] = Field(default_factory=list, description="tables@versions it published")


class QuarantineReason(_Model):
    reason: str
    count: NonNegativeInt
    examples: list[str] = Field(default_factory=list,
                                description="a few paths relative to the input root")


class FilesSection(_Model):
    """What the listing found and what became of each file."""

    listed: NonNegativeInt
    new: NonNegativeInt
    skipped_already_ingested: NonNegativeInt = 0
    quarantined: list[QuarantineReason] = Field(default_factory=list)
    unaccounted: NonNegativeInt = Field(0, description="listed files neither ingested nor "
                                                       "quarantined (needs a person)")

    @property
    def quarantined_total(self) -> int:
        return sum(q.count for q in self.quarantined)


class ImagesSection(_Model):
    """The night's new images by de-identified attributes."""

    total: NonNegativeInt
    per_modality: dict[str, NonNegativeInt] = Field(default_factory=dict)
    per_body_part: dict[str, NonNegativeInt] = Field(default_factory=dict)
    planes_per_series: Histogram | None = Field(None, description="distribution of planes per "
                                                                  "series (e.g. unit-wide bins)")


class TrendPoint(_Model):
    """One earlier (or this) night's quality counts, for the 30-night trend plot."""

    date: dt.date
    quarantined: NonNegativeInt = 0
    step_errors: NonNegativeInt = 0
    images: NonNegativeInt | None = None


class QualitySection(_Model):
    trend: list[TrendPoint] = Field(default_factory=list, description="last 30 nights, any order")
    step_errors: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="tonight's images that failed a step, per step")


class Distribution(_Model):
    """A feature's distribution summarised by Spark (approxQuantile and binned counts)."""

    n: NonNegativeInt
    median: float | None = None
    q1: float | None = Field(None, description="25th percentile")
    q3: float | None = Field(None, description="75th percentile")
    histogram: Histogram | None = None

    @property
    def iqr(self) -> float | None:
        return None if self.q1 is None or self.q3 is None else self.q3 - self.q1


class FeatureDrift(_Model):
    """Tonight's distribution of one feature against the reference (previous nights)."""

    feature: str
    tonight: Distribution
    previous: Distribution | None = None
    ks_statistic: float | None = Field(None, ge=0, le=1)
    p_value: float | None = Field(None, ge=0, le=1)
    q_value: float | None = Field(None, ge=0, le=1, description="Benjamini-Hochberg over features")
    flagged: bool = False


class DataSection(_Model):
    reference: str = Field("previous nights", description="what 'previous' means, in words")
    method: str | None = Field(None, description="how drift was tested and flagged, in words")
    features: list[FeatureDrift] = Field(default_factory=list)

    @property
    def flagged(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.flagged]


class Metric(_Model):
    """A validation metric as medspark.models.metrics reports it (value with bootstrap CI)."""

    value: Any = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_boot_used: int | None = None
    labels: list[Any] | None = Field(None, description="class labels of a matrix value")


class RiskRow(_Model):
    series_id: str = Field(description="pseudonymous series id")
    score: float
    predicted: str | None = None
    modality: str | None = None
    body_part: str | None = None


class ModelSection(_Model):
    model_id: str
    task: str | None = Field(None, description="classification / regression / ...")
    trained_at: str | None = None
    validation_metrics: dict[str, Metric] = Field(default_factory=dict)
    predictions: NonNegativeInt = 0
    class_counts: dict[str, NonNegativeInt] = Field(default_factory=dict)
    score_name: str = Field("score", description="what the score is, e.g. P(label = 1)")
    score_histogram: Histogram | None = None
    highest_risk: list[RiskRow] = Field(default_factory=list)


class DiscoverySection(_Model):
    """`discoveries/run_date=<d>/summary.json` as written by `medspark discover`, verbatim.

    Rendered generically (text as text, lists of records as tables, image paths as embedded
    plots); `base_dir` is the folder the summary came from, which plot paths are relative to
    and which embedded files must lie in."""

    run_date: dt.date | None = None
    base_dir: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)


class HistoryEntry(_Model):
    date: dt.date
    status: NightStatus | Literal["unreadable"]
    files_new: int | None = None
    images: int | None = None
    quarantined: int | None = None
    step_errors: int | None = None
    predictions: int | None = None
    drift_flags: int | None = None


class NightSummary(_Model):
    """One night of the nightly batch: everything the morning report shows."""

    schema_version: Literal[1] = SCHEMA_VERSION
    date: dt.date
    lake: str
    status: NightStatus | None = Field(None, description="derived from the stages when None")
    attention: list[str] = Field(default_factory=list,
                                 description="what needs a person, one line each")
    run_id: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    config_hash: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    stages: list[Stage] = Field(default_factory=list)
    files: FilesSection | None = None
    images: ImagesSection | None = None
    quality: QualitySection | None = None
    data: DataSection | None = None
    model: ModelSection | None = None
    discovery: DiscoverySection | None = None
    history: list[HistoryEntry] = Field(default_factory=list,
                                        description="earlier nights, for the history table")

    @property
    def overall_status(self) -> NightStatus:
        """The given status, else: a failed stage or anything needing a person -> attention."""
        if self.status is not None:
            return self.status
        if any(s.status == "failed" for s in self.stages) or self.attention:
            return "needs_attention"
        if self.files is not None and self.files.unaccounted:
            return "needs_attention"
        return "ok"

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def history_entry(self) -> HistoryEntry:
        """This night as one row of the history list."""
        q = self.quality
        return HistoryEntry(
            date=self.date, status=self.overall_status,
            files_new=self.files.new if self.files else None,
            images=self.images.total if self.images else None,
            quarantined=self.files.quarantined_total if self.files else None,
            step_errors=sum(q.step_errors.values()) if q else None,
            predictions=self.model.predictions if self.model else None,
            drift_flags=len(self.data.flagged) if self.data else None,
        )
