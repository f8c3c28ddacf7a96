"""`discover:` settings: which analyses `medspark discover` runs and how (validated by pydantic).

```yaml
discover:
  label: label                 # "" or null: no label (tests, enrichment, label rules off)
  fdr: 0.05                    # Benjamini-Hochberg level of every `significant`/`drifted`/...
  clusters: {algorithm: kmeans, k_min: 2, k_max: 6, scaling: robust}
  rules: {min_support: 0.05, min_confidence: 0.6}
  tests: {method: mann_whitney, effect_size: cohen_d}
  trends: {period: month, split_by: [modality, manufacturer]}
  drift: {psi_threshold: 0.1}
  outliers: {method: mahalanobis, top_n: 50}
```

Every analysis has `enabled`; the defaults suit radiomics tables (tens to hundreds of strongly
correlated features, thousands to millions of images, a binary label).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClusterSettings(_Strict):
    """Clusters of images in standardised feature space, k chosen by silhouette."""

    enabled: bool = True
    algorithm: Literal["kmeans", "bisecting_kmeans", "gaussian_mixture"] = "kmeans"
    scaling: Literal["standard", "robust"] = Field(
        "robust", description="standard: mean/SD; robust: median/IQR (radiomics features are "
        "skewed and heavy-tailed)")
    clip: float | None = Field(
        10.0, gt=0, description="scaled values beyond +-clip are set to +-clip (winsorised), so "
        "a few extreme values (e.g. pyradiomics' 1e6 sentinel for an empty neighbourhood, "
        "over a near-zero IQR) cannot become a cluster of their own; null: no clipping")
    pca_components: int = Field(0, ge=0, description="0: no PCA; else cluster on this many "
                                "principal components of the scaled features")
    k_min: int = Field(2, ge=2)
    k_max: int = Field(6, ge=2)
    seeds: int = Field(3, ge=1, description="fits per k with different seeds; their mean "
                       "silhouette chooses k, their agreement (adjusted Rand) is its stability")
    min_stability: float = Field(0.0, ge=0, le=1, description="k whose seeds agree less "
                                 "(adjusted Rand) are not chosen unless none passes")
    max_iter: int = Field(20, ge=1)
    selection_rows: int = Field(
        20_000, ge=100, le=1_000_000, description="k is chosen on a stratified sample of at "
        "most this many rows, brought to the driver (scikit-learn's counterparts of the MLlib "
        "estimators, silhouettes from cluster aggregates); the MLlib model with the chosen k "
        "is then fitted on up to fit_rows rows and assigns every row")
    fit_rows: int = Field(
        200_000, ge=1_000, description="the MLlib model is fitted on every row up to this "
        "many, else on a seeded random sample of this many (said in the output): its "
        "iterations hold the rows' vectors in the executors' memory, which must not grow with "
        "the table (1M rows x 100 features ran a 2 GiB local driver out of heap); every row "
        "is then assigned to its nearest cluster")
    top_features: int = Field(5, ge=1, description="features listed per cluster")
    metadata_values: int = Field(3, ge=1, description="top values per metadata column per "
                                 "cluster")


class RuleSettings(_Strict):
    """Association rules (MLlib FPGrowth) over discretised features, metadata and labels."""

    enabled: bool = True
    bins: int = Field(4, ge=2, le=10, description="quantile bins per feature (items Q1..Qn)")
    middle_bins: bool = Field(False, description="items also for the middle bins (Q2..Qn-1); "
                              "off: only a feature's lowest and highest bin are items")
    max_features: int = Field(
        12, ge=1, description="features turned into items: one per redundancy group, the "
        "most label-related first (FPGrowth's itemsets grow combinatorially with items)")
    min_support: float = Field(0.05, gt=0, le=1)
    min_confidence: float = Field(0.6, gt=0, le=1)
    max_antecedent: int = Field(3, ge=1, description="longest antecedent kept")
    max_rules: int = Field(200, ge=1, description="rules kept per group (label / other) "
                           "after pruning, by lift")


class TestSettings(_Strict):
    """Each feature against the label; `q_value` by Benjamini-Hochberg."""

    __test__ = False  # not a pytest class

    enabled: bool = True
    method: Literal["mann_whitney", "t_test"] = Field(
        "mann_whitney", description="classification p-value: Mann-Whitney U (Kruskal-Wallis "
        "for more than two classes) or Welch's t-test (ANOVA)")
    effect_size: Literal["cohen_d", "cliffs_delta"] = "cohen_d"
    patient_level: bool = Field(True, description="one value per patient (and label value): "
                                "repeated images do not inflate significance")
    bins: int = Field(200, ge=20, le=2000, description="quantile bins of the rank statistics "
                      "(exact when a feature has fewer distinct values; otherwise values in one "
                      "bin count as ties, moving the AUC by about 1/bins at most)")


class CorrelationSettings(_Strict):
    """Feature-feature correlations and groups of redundant features."""

    enabled: bool = True
    method: Literal["pearson", "spearman"] = "pearson"
    threshold: float = Field(0.9, gt=0, le=1, description="|r| at or above which a pair is "
                             "listed and joins a redundancy group")


class TrendSettings(_Strict):
    """Per-period counts and feature medians; Theil-Sen slope, Mann-Kendall test."""

    enabled: bool = True
    period: Literal["day", "week", "month", "quarter", "year"] = "month"
    min_periods: int = Field(6, ge=3, description="periods a series needs to be tested")
    min_rows_per_period: int = Field(5, ge=1, description="periods with fewer rows are left "
                                     "out of a series")
    split_by: list[str] = Field(default_factory=lambda: ["modality", "manufacturer"],
                                description="metadata columns whose values get their own "
                                "series (scanner effects), where there are enough rows")
    min_rows_per_stratum: int = Field(200, ge=1)
    max_strata: int = Field(10, ge=1, description="most frequent values per split column")


class DriftSettings(_Strict):
    """The newest batch against the earlier ones: PSI, KS, metadata mix, model scores."""

    enabled: bool = True
    bins: int = Field(10, ge=2, description="reference-quantile bins of the PSI")
    ks_bins: int = Field(200, ge=10, le=2000, description="pooled-quantile grid of the KS "
                         "statistic")
    psi_threshold: float = Field(0.1, gt=0, description="a feature drifts when q <= fdr and "
                                 "PSI >= this (0.1 moderate, 0.25 major)")
    min_rows: int = Field(20, ge=2, description="batch and reference need this many rows")
    model: str | None = Field(None, description="model id: also the drift of its scores, "
                              "read from predictions/model=<id>/")


class OutlierSettings(_Strict):
    """A robust per-image score, fitted on a bounded sample and applied to every row."""

    enabled: bool = True
    method: Literal["mahalanobis", "isolation_forest"] = Field(
        "mahalanobis", description="mahalanobis: robust (MCD) distance on the leading "
        "principal components of the robust-scaled features plus the residual; "
        "isolation_forest: scikit-learn's")
    fit_rows: int = Field(5000, ge=50, description="rows sampled to fit the model")
    components: int = Field(10, ge=1, le=50, description="mahalanobis: leading principal "
                            "components of the robust fit (the rest enters as the residual)")
    top_n: int = Field(50, ge=1, description="rows written to outliers/")
    drivers: int = Field(3, ge=1, description="features named per outlier")


class DiscoverSettings(_Strict):
    """What `medspark discover` analyses and how."""

    run_date: dt.date | None = Field(None, description="partition date; default today (UTC)")
    feature_set: str | None = Field(None, description="features/ feature_set; default: the "
                                    "only one in the lake")
    features: list[str] = Field(default_factory=list, description="feature columns or globs; "
                                "empty: the radiomics columns (lake) / numeric columns (table)")
    metadata: list[str] = Field(default_factory=list, description="metadata columns; empty: "
                                "modality, body_part, manufacturer, pixel spacing and extra "
                                "label columns (lake) / string and boolean columns (table)")
    label: str | None = "label"
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: classification for strings, booleans and numbers with at "
        "most 10 values")
    positive_label: str | int | None = Field(None, description="binary: the positive class; "
                                             "default 1/true, else the rarer class")
    id_col: str = "image_id"
    group_col: str | None = "patient_pseudo_id"
    date_col: str | None = Field("study_date", description="trends; lake study dates are "
                                 "shifted per patient (privacy.max_shift_days)")
    batch_col: str | None = Field("ingest_date", description="drift: newest value vs earlier")
    fdr: float = Field(0.05, gt=0, lt=1)
    seed: int = 0
    plots: bool = True
    clusters: ClusterSettings = Field(default_factory=ClusterSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    tests: TestSettings = Field(default_factory=TestSettings)
    correlations: CorrelationSettings = Field(default_factory=CorrelationSettings)
    trends: TrendSettings = Field(default_factory=TrendSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    outliers: OutlierSettings = Field(default_factory=OutlierSettings)

    @model_validator(mode="after")
    def _consistent(self) -> DiscoverSettings:
        if self.clusters.k_max < self.clusters.k_min:
            raise ValueError(f"clusters.k_max ({self.clusters.k_max}) < clusters.k_min "
                             f"({self.clusters.k_min})")
        if self.label == "":
            self.label = None
        return self

    def enabled(self) -> list[str]:
        """Names of the analyses switched on."""
        return [name for name in ANALYSES if getattr(self, name).enabled]


ANALYSES = ("clusters", "rules", "tests", "correlations", "trends", "drift", "outliers")
