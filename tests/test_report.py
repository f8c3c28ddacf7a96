"""The morning report's renderer: sections present and absent, escaping, history, drift maths.

Pure tests (no Spark, no browser); tests/test_report_browser.py opens the pages in Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from medspark.report import (
    DiscoverySection,
    Distribution,
    FeatureDrift,
    Histogram,
    NightSummary,
    QuarantineReason,
    Stage,
    binned_ks,
    flag_drift,
    history_from_reports,
    load_summary,
    render_history,
    render_night,
    trend_points,
)
from medspark.report.example import example_night

DATE = dt.date(2025, 3, 14)
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)></style>$\\frac{'


class _Tags(HTMLParser):
    """Every start tag with its attributes, to check what markup a page really contains."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def _assert_safe(html: str) -> None:
    """No script, no event handler, images only from data: URIs, links only relative."""
    tags = _tags(html)
    names = {t for t, _ in tags}
    assert "script" not in names and "iframe" not in names and "object" not in names
    for tag, attrs in tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/"), attrs.get("src", "")[:60]
        if tag == "a":
            href = attrs.get("href") or ""
            assert ":" not in href and not href.startswith("//"), href
        if tag == "link":
            raise AssertionError(f"external resource link: {attrs}")
    assert "http://" not in html and "https://" not in html


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    """The example night with discovery, rendered once."""
    root = tmp_path_factory.mktemp("rich")
    summary = example_night(DATE, discovery_dir=root / "discoveries")
    page = render_night(summary, root / "reports" / DATE.isoformat())
    return summary, page


def test_full_night_renders_every_section(rich):
    summary, page = rich
    html = page.read_text()
    _assert_safe(html)
    for section in ("numbers", "quality", "data", "model", "discovery", "history"):
        assert f'<section id="{section}">' in html
    assert "No model" not in html and "No discovery" not in html
    assert "Content-Security-Policy" in html
    imgs = [a for t, a in _tags(html) if t == "img"]
    # durations, trend, planes, small multiples, scores, discovery plot
    assert len(imgs) >= 6
    for text in ("not a readable image", "site-b/s07/img0001.dcm", "rf-2025-03-01-7c2e",
                 "0.82 – 0.91", "Cluster 2 (18% of rows)", "firstorder_Entropy",
                 summary.model.highest_risk[0].series_id, "2 of 8 features flagged"):
        assert text in html, text


def test_summary_json_round_trips(rich):
    summary, page = rich
    again = load_summary(page.parent / "summary.json")
    assert again.status == "ok"
    assert again.model_copy(update={"status": None}) == summary
    assert not list(page.parent.glob(".*tmp"))  # atomic writes leave no temporary file


@pytest.mark.parametrize("section,absent_text", [
    ("files", "No file listing tonight"), ("images", "No image counts tonight"),
    ("quality", "No quality figures tonight"), ("data", "No feature distributions tonight"),
    ("model", "No model predictions tonight"), ("discovery", "No discovery tonight"),
])
def test_each_section_optional(rich, tmp_path, section, absent_text):
    summary, _ = rich
    html = render_night(summary.model_copy(update={section: None}), tmp_path).read_text()
    _assert_safe(html)
    assert absent_text in html
    others = {"files": "site-b/s07", "model": "rf-2025-03-01-7c2e", "data": "glcm_Contrast",
              "discovery": "Cluster 2 (18%", "images": "ABDOMEN", "quality": "Images failing"}
    for other, text in others.items():
        if other != section:
            assert text in html, (section, other)


def test_bare_night_says_why(tmp_path):
    summary = NightSummary(date=DATE, lake="/lake", stages=[
        Stage(name="ingest", status="ok", duration_s=3.0),
        Stage(name="features", status="failed", reason="worker lost"),
        Stage(name="predict", status="skipped", reason="no model trained yet"),
    ])
    page = render_night(summary, tmp_path)
    html = page.read_text()
    _assert_safe(html)
    assert "No model predictions tonight (predict skipped: no model trained yet)" in html
    assert "No feature distributions tonight (features failed: worker lost)" in html
    assert "No discovery tonight." in html
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "needs_attention"


def test_hostile_strings_are_escaped(rich, tmp_path):
    summary, _ = rich
    s = summary.model_copy(deep=True)
    s.lake = HOSTILE
    s.attention = [HOSTILE]
    s.versions = {HOSTILE: HOSTILE}
    s.stages.append(Stage(name=HOSTILE, status="failed", reason=HOSTILE, duration_s=1.0,
                          counts={HOSTILE: 1}, throughput_unit=HOSTILE, throughput=1.0))
    s.files.quarantined.append(QuarantineReason(reason=HOSTILE, count=1, examples=[HOSTILE]))
    s.images.per_modality[HOSTILE] = 1
    s.quality.step_errors[HOSTILE] = 1
    f = s.data.features[0]
    s.data.features.append(f.model_copy(update={"feature": HOSTILE, "flagged": True}))
    s.data.reference = s.data.method = HOSTILE
    s.model.model_id = s.model.score_name = s.model.task = HOSTILE
    s.model.class_counts[HOSTILE] = 1
    s.model.validation_metrics[HOSTILE] = s.model.validation_metrics["roc_auc"]
    s.model.highest_risk[0].series_id = HOSTILE
    s.discovery = DiscoverySection(base_dir=str(tmp_path), summary={
        "headlines": [HOSTILE, {"text": HOSTILE, HOSTILE: HOSTILE}], HOSTILE: HOSTILE,
        "table": [{HOSTILE: HOSTILE}], "nested": {HOSTILE: [HOSTILE, 1]},
        "plot": f"{HOSTILE}.png", "grid": {"columns": [HOSTILE], "rows": [[HOSTILE]]}})
    html = render_night(s, tmp_path / "night").read_text()
    _assert_safe(html)
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 15
    assert "</style>" in html and html.count("</style>") == 1  # only the page's own


def test_discovery_renders_by_shape_and_only_embeds_its_own_files(tmp_path):
    folder = tmp_path / "discoveries" / "run_date=2025-03-14"
    folder.mkdir(parents=True)
    own = folder / "trend.svg"
    own.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    (tmp_path / "secret.png").write_bytes(b"\x89PNG not for the report")
    summary = {"findings": [{"text": "label enriches in cluster 1", "q_value": 0.01}],
               "feature_tests": {"columns": ["feature", "auc"], "rows": [["a", 0.9], ["b", 0.6]]},
               "rules": [{"lift": 3.2, "antecedent": ["x=Q4"]}] * 60,
               "plots": ["trend.svg", "../../secret.png", "missing.png"]}
    (folder / "summary.json").write_text(json.dumps(summary))
    from medspark.report import load_discovery

    section = load_discovery(folder)
    assert section.run_date == DATE
    s = NightSummary(date=DATE, lake="/lake", discovery=section)
    html = render_night(s, tmp_path / "out").read_text()
    _assert_safe(html)
    assert "<li>label enriches in cluster 1" in html
    assert "<th>feature</th><th>auc</th>" in html and "<td>0.9</td>" in html
    assert "10 more rows not shown" in html
    assert html.count("data:image/svg+xml;base64,") == 1
    assert "plot not available: ../../secret.png" in html
    assert "plot not available: missing.png" in html
    assert load_discovery(tmp_path) is None


def test_model_rejects_bad_input():
    with pytest.raises(ValidationError, match="len\\(edges\\) == len\\(counts\\) \\+ 1"):
        Histogram(edges=[0, 1, 2], counts=[1, 2, 3])
    with pytest.raises(ValidationError, match="increase strictly"):
        Histogram(edges=[0, 2, 1], counts=[1, 2])
    with pytest.raises(ValidationError, match="quarantine"):
        NightSummary(date=DATE, lake="/l", quarantine=[])  # misspelt section: not dropped
    with pytest.raises(ValidationError):
        Stage(name="x", status="done")


def test_render_accepts_a_mapping(tmp_path):
    page = render_night({"date": "2025-03-14", "lake": "/lake", "attention": ["3 files lost"]},
                        tmp_path)
    html = page.read_text()
    assert "Needs a person" in html and "3 files lost" in html


def test_history_lists_every_night(tmp_path):
    reports = tmp_path / "reports"
    for i, day in enumerate([12, 13, 14]):
        night = example_night(dt.date(2025, 3, day), seed=i).model_copy(
            update={"data": None, "stages": []})  # fewer plots: faster
        if day == 13:
            night = night.model_copy(update={"attention": ["2 files unaccounted"]})
        render_night(night, reports / f"2025-03-{day}")
    (reports / "2025-03-11").mkdir()
    (reports / "2025-03-11" / "summary.json").write_text("{not json")
    (reports / "notes").mkdir()
    entries = history_from_reports(reports)
    assert [e.date.day for e in entries] == [11, 12, 13, 14]
    assert [e.status for e in entries] == ["unreadable", "ok", "needs_attention", "ok"]
    assert [e.date.day for e in history_from_reports(reports, before=dt.date(2025, 3, 14))] \
        == [11, 12, 13]
    assert [p.date.day for p in trend_points(entries, last=2)] == [13, 14]
    html = render_history(reports).read_text()
    _assert_safe(html)
    for day in (11, 12, 13, 14):
        assert f'<a href="2025-03-{day}/index.html">2025-03-{day}</a>' in html
    assert html.index("2025-03-14") < html.index("2025-03-11")  # newest first
    assert "needs attention" in html and "unreadable" in html


def test_binned_ks_is_close_to_scipy_and_never_above_it():
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.3, 1.0):
        a, b = rng.normal(shift, 1, 3000), rng.normal(0, 1, 5000)
        edges = np.quantile(np.r_[a, b], np.linspace(0, 1, 101))
        edges[0] -= 1e-9
        ha = Histogram(edges=edges.tolist(), counts=np.histogram(a, edges)[0].tolist())
        hb = Histogram(edges=edges.tolist(), counts=np.histogram(b, edges)[0].tolist())
        d, p = binned_ks(ha, hb)
        exact = stats.ks_2samp(a, b, method="asymp")
        assert d <= exact.statistic + 1e-12
        assert exact.statistic - d < 0.02
        if shift == 0.0:
            assert p > 0.01
        else:
            assert p < 1e-6
    with pytest.raises(ValueError, match="same edges"):
        binned_ks(ha, Histogram(edges=[0, 1], counts=[1]))


def test_flag_drift_flags_the_shifted_feature_only():
    rng = np.random.default_rng(5)
    features = []
    for i in range(30):
        prev = rng.normal(0, 1, 5000)
        tonight = rng.normal(1.0 if i == 0 else 0.0, 1, 400)
        edges = np.quantile(prev, np.linspace(0, 1, 21))
        edges[0], edges[-1] = min(edges[0], tonight.min()), max(edges[-1], tonight.max())

        def dist(x, edges=edges):
            return Distribution(n=len(x), median=float(np.median(x)), histogram=Histogram(
                edges=edges.tolist(), counts=np.histogram(x, edges)[0].tolist()))

        features.append(FeatureDrift(feature=f"f{i}", tonight=dist(tonight),
                                     previous=dist(prev)))
    features.append(FeatureDrift(feature="no_reference", tonight=Distribution(n=3)))
    out = flag_drift(features)
    assert out[0].flagged and out[0].ks_statistic > 0.3
    assert sum(f.flagged for f in out[1:]) <= 1
    assert all(f.q_value >= f.p_value for f in out if f.p_value is not None)
    assert out[-1].q_value is None and not out[-1].flagged
    assert features[0].ks_statistic is None  # inputs untouched
