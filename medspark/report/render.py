"""The morning report: a night's summary -> one self-contained HTML page plus its JSON.

`render_night(summary, out_dir)` writes `<out_dir>/index.html` and `<out_dir>/summary.json`;
`render_history(reports_root)` writes `<reports_root>/index.html`, one row per night. The pages
carry their plots as PNG data URIs and their CSS inline, contain no script, and declare a
Content-Security-Policy that forbids any fetch other than `data:` images, so opening them makes no
network request. Every string from the summary is escaped with `html.escape`. Files are written
to a temporary name and renamed, so a crash never leaves half a page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medspark.report import plots
from medspark.report.discovery import fmt, render_discovery, table
from medspark.report.model import HistoryEntry, NightSummary, TrendPoint

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1f2328;background:#fff;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
header{background:#f6f8fa;border-bottom:1px solid #d0d7de;padding:1rem 1.5rem}
header h1{margin:.2rem 0;font-size:1.6rem}
.meta{color:#57606a;font-size:.9rem}
nav a{margin-right:1rem}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2.2rem}
h5{font-size:1rem;margin:1rem 0 .3rem}h6{font-size:.95rem;margin:.8rem 0 .3rem;color:#57606a}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{color:#57606a}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;color:#fff;font-weight:600;
 font-size:.85rem;vertical-align:middle}
.ok{background:#2e7d32}.failed,.needs_attention,.unreadable{background:#c62828}
.skipped,.incomplete{background:#757575}
.attention{border:2px solid #c62828;background:#fff5f5;padding:.6rem 1rem;border-radius:.4rem}
.absent{color:#57606a;font-style:italic}
.note{color:#57606a;font-size:.85rem}
.flag{color:#c62828;font-weight:600}
.row{display:flex;flex-wrap:wrap;gap:2rem}
figure{margin:.8rem 0}
img{max-width:100%;height:auto}
code{font-size:.85rem}
"""
SECTIONS = [("numbers", "The night in numbers"), ("quality", "Quality"), ("data", "Data"),
            ("model", "Model"), ("discovery", "Discovery"), ("history", "History")]


def _e(value: Any) -> str:
    return escape(fmt(value))


def _int(n: int | float | None) -> str:
    return "–" if n is None else f"{n:,}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {sec} s"


def _badge(status: str) -> str:
    s = escape(status)
    return f'<span class="badge {s}">{escape(status.replace("_", " "))}</span>'


def _img(uri: str | None, alt: str) -> str:
    if uri is None:
        return ""
    return f'<figure><img alt="{escape(alt)}" src="{uri}"></figure>'


def _absent(summary: NightSummary, what: str, stages: Iterable[str]) -> str:
    """'No <what> tonight', with the stage's recorded reason when there is one."""
    for name in stages:
        stage = summary.stage(name)
        if stage is not None and stage.status != "ok":
            why = f"{stage.name} {stage.status}" + (f": {stage.reason}" if stage.reason else "")
            return f'<p class="absent">No {escape(what)} tonight ({escape(why)}).</p>'
    return f'<p class="absent">No {escape(what)} tonight.</p>'


def _counts_table(title: str, counts: Mapping[str, int]) -> str:
    if not counts:
        return f'<div><h4>{escape(title)}</h4><p class="absent">none</p></div>'
    rows = "".join(f'<tr><td>{escape(k)}</td><td class="num">{_int(v)}</td></tr>'
                   for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"<div><h4>{escape(title)}</h4><table><thead><tr><th></th><th class=num>images</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>")


def _numbers(s: NightSummary) -> str:
    parts = []
    if s.files is None:
        parts.append(_absent(s, "file listing", ["ingest"]))
    else:
        f = s.files
        rows = [("listed", f.listed), ("new", f.new),
                ("skipped (already ingested)", f.skipped_already_ingested),
                ("quarantined", f.quarantined_total), ("unaccounted", f.unaccounted)]
        parts.append("<h3>Files</h3><table class=kv><tbody>" + "".join(
            f'<tr><td>{escape(k)}</td><td class="num{" flag" if k == "unaccounted" and v else ""}'
            f'">{_int(v)}</td></tr>' for k, v in rows) + "</tbody></table>")
        if f.quarantined:
            body = "".join(
                f'<tr><td>{escape(q.reason)}</td><td class="num">{_int(q.count)}</td><td>'
                + "<br>".join(f"<code>{escape(p)}</code>" for p in q.examples) + "</td></tr>"
                for q in sorted(f.quarantined, key=lambda q: -q.count))
            parts.append("<h4>Quarantined, by reason</h4><table><thead><tr><th>reason</th>"
                         "<th class=num>files</th><th>examples (relative to the input root)"
                         f"</th></tr></thead><tbody>{body}</tbody></table>")
    if s.images is None:
        parts.append(_absent(s, "image counts", ["ingest"]))
    else:
        parts.append(f"<h3>Images: {_int(s.images.total)} new</h3><div class=row>"
                     + _counts_table("per modality", s.images.per_modality)
                     + _counts_table("per body part", s.images.per_body_part) + "</div>")
    parts.append("<h3>Stages</h3>")
    if not s.stages:
        parts.append('<p class="absent">No stage recorded.</p>')
    else:
        body = "".join(
            f"<tr><td>{escape(st.name)}</td><td>{_badge(st.status)}</td>"
            f'<td class="num">{_duration(st.duration_s)}</td><td class="num">'
            + (f"{st.throughput:,.1f} {escape(st.throughput_unit)}" if st.throughput is not None
               else "–")
            + f"</td><td>{escape(', '.join(f'{k} {v:,}' for k, v in st.counts.items()))}</td>"
            f"<td>{escape(st.reason or '')}</td></tr>" for st in s.stages)
        parts.append("<table><thead><tr><th>stage</th><th>status</th><th class=num>duration</th>"
                     "<th class=num>throughput</th><th>counts</th><th>why</th></tr></thead>"
                     f"<tbody>{body}</tbody></table>")
        parts.append(_img(plots.stage_durations(s.stages), "stage durations"))
    return "".join(parts)


def _quality(s: NightSummary) -> str:
    parts = []
    q = s.quality
    if q is None:
        parts.append(_absent(s, "quality figures", ["ingest", "preprocess"]))
    else:
        uri = plots.quality_trend(q.trend, s.date)
        parts.append(_img(uri, "quarantine and step-error trend") if uri else
                     '<p class="absent">No earlier nights to plot a trend.</p>')
        if q.step_errors:
            parts.append(_counts_table("Images failing a step tonight", q.step_errors)
                         .replace("<th class=num>images</th>", "<th class=num>errors</th>"))
        else:
            parts.append('<p class="note">No image failed a step tonight.</p>')
    if s.images is not None and s.images.planes_per_series is not None:
        parts.append(_img(plots.histogram(s.images.planes_per_series, title="Planes per series",
                                          xlabel="planes"), "planes per series"))
    return "".join(parts)


def _data(s: NightSummary) -> str:
    d = s.data
    if d is None or not d.features:
        return _absent(s, "feature distributions", ["features", "drift", "discover"])
    flagged = d.flagged
    head = (f'<p><span class="flag">{len(flagged)} of {len(d.features)} features flagged</span> '
            f"against {escape(d.reference)}.</p>" if flagged else
            f"<p>No drift flagged over {len(d.features)} features against "
            f"{escape(d.reference)}.</p>")
    if d.method:
        head += f'<p class="note">{escape(d.method)}</p>'
    rows = []
    for f in sorted(d.features, key=lambda f: (not f.flagged, -(f.ks_statistic or 0.0))):
        prev = f.previous
        rows.append([f.feature, "yes" if f.flagged else "", f.tonight.n, f.tonight.median,
                     f.tonight.iqr, prev.n if prev else None, prev.median if prev else None,
                     prev.iqr if prev else None, f.ks_statistic, f.p_value, f.q_value])
    cols = ["feature", "drift", "n tonight", "median tonight", "IQR tonight", "n previous",
            "median previous", "IQR previous", "KS", "p", "q"]
    return (head + _img(plots.feature_small_multiples(d.features), "feature distributions")
            + table(cols, rows))


def _metric_value(m) -> tuple[str, str]:
    if isinstance(m.value, list):
        return "see below", ""
    ci = (f"{fmt(m.ci_low)} – {fmt(m.ci_high)}" if m.ci_low is not None and m.ci_high is not None
          else "–")
    return fmt(m.value), ci


def _model(s: NightSummary) -> str:
    m = s.model
    if m is None:
        return _absent(s, "model predictions", ["predict"])
    meta = [("model", m.model_id), ("task", m.task), ("trained", m.trained_at),
            ("predictions tonight", m.predictions)]
    parts = ["<table class=kv><tbody>" + "".join(
        f"<tr><td>{escape(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta if v is not None)
        + "</tbody></table>"]
    if m.validation_metrics:
        rows, matrices = [], []
        for name, metric in m.validation_metrics.items():
            value, ci = _metric_value(metric)
            rows.append(f"<tr><td>{escape(name)}</td><td class=num>{escape(value)}</td>"
                        f"<td class=num>{escape(ci)}</td></tr>")
            if isinstance(metric.value, list):
                labels = [fmt(v) for v in (metric.labels or range(len(metric.value)))]
                matrices.append(f"<h4>{escape(name)}</h4>" + table(
                    ["true \\ predicted", *labels],
                    [[lab, *(r if isinstance(r, list) else [r])]
                     for lab, r in zip(labels, metric.value, strict=False)]))
        parts.append("<h3>Validation metrics</h3><table><thead><tr><th>metric</th>"
                     "<th class=num>value</th><th class=num>95% CI</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table>" + "".join(matrices))
    else:
        parts.append('<p class="absent">The model recorded no validation metrics.</p>')
    parts.append("<h3>Predictions tonight</h3>")
    parts.append(_counts_table("per predicted class", m.class_counts)
                 .replace("<th class=num>images</th>", "<th class=num>predictions</th>"))
    if m.score_histogram is not None:
        parts.append(_img(plots.histogram(m.score_histogram, title="Scores tonight",
                                          xlabel=m.score_name), "score histogram"))
    if m.highest_risk:
        parts.append("<h4>Highest-risk series (pseudonymous ids)</h4>" + table(
            ["series", m.score_name, "predicted", "modality", "body part"],
            [[r.series_id, r.score, r.predicted, r.modality, r.body_part]
             for r in m.highest_risk]))
    return "".join(parts)


def _discovery(s: NightSummary) -> str:
    if s.discovery is None:
        return _absent(s, "discovery", ["discover"])
    when = (f'<p class="note">discover run of {escape(s.discovery.run_date.isoformat())}</p>'
            if s.discovery.run_date else "")
    return when + render_discovery(s.discovery)


def _history_table(entries: list[HistoryEntry], prefix: str, current: dt.date | None) -> str:
    body = []
    for h in sorted(entries, key=lambda h: h.date, reverse=True):
        d = h.date.isoformat()
        link = (f"<b>{d}</b> (this night)" if h.date == current
                else f'<a href="{prefix}{d}/index.html">{d}</a>')
        cells = [h.files_new, h.images, h.quarantined, h.step_errors, h.predictions,
                 h.drift_flags]
        body.append(f"<tr><td>{link}</td><td>{_badge(h.status)}</td>"
                    + "".join(f'<td class="num">{_int(c)}</td>' for c in cells) + "</tr>")
    return ("<table><thead><tr><th>night</th><th>status</th><th class=num>new files</th>"
            "<th class=num>images</th><th class=num>quarantined</th><th class=num>step errors"
            "</th><th class=num>predictions</th><th class=num>drift flags</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _page(title: str, header: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><header>{header}</header><main>{body}</main>"
        "</body></html>\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def night_html(summary: NightSummary) -> str:
    """The night's page as a string."""
    s = summary
    status = s.overall_status
    meta = [f"lake <code>{escape(s.lake)}</code>"]
    if s.run_id:
        meta.append(f"run <code>{escape(s.run_id)}</code>")
    if s.started_at and s.finished_at:
        meta.append(f"{escape(s.started_at.isoformat(timespec='seconds'))} → "
                    f"{escape(s.finished_at.isoformat(timespec='seconds'))} "
                    f"({_duration((s.finished_at - s.started_at).total_seconds())})")
    if s.config_hash:
        meta.append(f"config <code>{escape(s.config_hash[:12])}</code>")
    header = (f"<h1>medspark night of {s.date.isoformat()} {_badge(status)}</h1>"
              f'<div class="meta">{" · ".join(meta)}</div><nav>'
              + "".join(f'<a href="#{k}">{escape(v)}</a>' for k, v in SECTIONS) + "</nav>")
    body = []
    if s.attention:
        body.append('<div class="attention"><b>Needs a person:</b><ul>'
                    + "".join(f"<li>{escape(a)}</li>" for a in s.attention) + "</ul></div>")
    history = [h for h in s.history if h.date != s.date] + [s.history_entry()]
    renderers = {"numbers": _numbers, "quality": _quality, "data": _data, "model": _model,
                 "discovery": _discovery,
                 "history": lambda s: ('<p><a href="../index.html">All nights</a></p>'
                                       + _history_table(history, "../", s.date))}
    for key, title in SECTIONS:
        body.append(f'<section id="{key}"><h2>{escape(title)}</h2>{renderers[key](s)}</section>')
    foot = ", ".join(f"{k} {v}" for k, v in sorted(s.versions.items()))
    body.append('<footer class="note"><p>Pseudonymous ids and de-identified attributes only. '
                f"Generated by medspark{(' · ' + escape(foot)) if foot else ''}.</p></footer>")
    return _page(f"medspark night {s.date.isoformat()}: {status}", header, "".join(body))


def _as_summary(summary: NightSummary | Mapping[str, Any]) -> NightSummary:
    return summary if isinstance(summary, NightSummary) else NightSummary.model_validate(summary)


def render_night(summary: NightSummary | Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write `<out_dir>/index.html` and `<out_dir>/summary.json`; return the HTML's path.

    A mapping is validated as a NightSummary first (pydantic's error names the bad field)."""
    s = _as_summary(summary)
    out = Path(out_dir)
    data = s.model_dump(mode="json")
    data["status"] = s.overall_status
    _write_atomic(out / "summary.json", json.dumps(data, indent=2, sort_keys=False) + "\n")
    page = out / "index.html"
    _write_atomic(page, night_html(s))
    return page


def load_summary(path: str | Path) -> NightSummary:
    """A night's summary.json, validated."""
    return NightSummary.model_validate_json(Path(path).read_text(encoding="utf-8"))


def history_from_reports(reports_root: str | Path,
                         before: dt.date | None = None) -> list[HistoryEntry]:
    """One entry per `<reports_root>/<YYYY-MM-DD>/summary.json`, oldest first.

    `before` keeps only earlier nights (what a night's own page lists). A summary that does not
    validate is listed as 'unreadable' rather than hidden."""
    entries = []
    root = Path(reports_root)
    for night in sorted(root.glob("*/summary.json")):
        try:
            date = dt.date.fromisoformat(night.parent.name)
        except ValueError:
            continue
        if before is not None and date >= before:
            continue
        try:
            entries.append(load_summary(night).history_entry())
        except (ValidationError, ValueError, OSError):
            entries.append(HistoryEntry(date=date, status="unreadable"))
    return entries


def trend_points(entries: Iterable[HistoryEntry], last: int = 30) -> list[TrendPoint]:
    """The quality trend (newest `last` nights) from history entries."""
    pts = [TrendPoint(date=h.date, quarantined=h.quarantined or 0,
                      step_errors=h.step_errors or 0, images=h.images)
           for h in entries if h.status != "unreadable"]
    return sorted(pts, key=lambda p: p.date)[-last:]


def render_history(reports_root: str | Path) -> Path:
    """Write `<reports_root>/index.html`: every night with its status, counts and a link."""
    root = Path(reports_root)
    entries = history_from_reports(root)
    needing = sum(h.status != "ok" for h in entries)
    header = ("<h1>medspark nightly reports</h1>"
              f'<div class="meta">{len(entries)} night(s); {needing} not ok</div>')
    if entries:
        uri = plots.quality_trend(trend_points(entries))
        body = (_img(uri, "quarantine and step-error trend") + _history_table(entries, "", None))
    else:
        body = '<p class="absent">No night has been reported yet.</p>'
    page = root / "index.html"
    _write_atomic(page, _page("medspark nightly reports", header, body))
    return page
