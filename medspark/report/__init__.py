"""The morning report of the nightly batch: a typed summary of one night -> self-contained HTML.

Pure code (no pyspark): the nightly job aggregates in Spark, fills `NightSummary`, and calls
`render_night`; `render_history` lists every night. See docs/report.md.
"""

from medspark.report.discovery import load_discovery
from medspark.report.drift import binned_ks, flag_drift
from medspark.report.model import (
    DataSection,
    DiscoverySection,
    Distribution,
    FeatureDrift,
    FilesSection,
    Histogram,
    HistoryEntry,
    ImagesSection,
    Metric,
    ModelSection,
    NightSummary,
    QualitySection,
    QuarantineReason,
    RiskRow,
    Stage,
    TrendPoint,
)
from medspark.report.render import (
    history_from_reports,
    load_summary,
    render_history,
    render_night,
    trend_points,
)

__all__ = [
    "DataSection", "DiscoverySection", "Distribution", "FeatureDrift", "FilesSection",
    "HistoryEntry", "Histogram", "ImagesSection", "Metric", "ModelSection", "NightSummary",
    "QualitySection", "QuarantineReason", "RiskRow", "Stage", "TrendPoint", "binned_ks",
    "flag_drift", "history_from_reports", "load_discovery", "load_summary", "render_history",
    "render_night", "trend_points",
]
