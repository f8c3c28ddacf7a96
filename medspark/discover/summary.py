"""`summary.json`: the headline findings of a run in words and numbers (docs/discover.md).

One file per run date holds every input analysed that day under `inputs[<input name>]`; a
re-run of an input replaces its entry. The sentences are built here from the sections' numbers,
so the report and the command line print the same words.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_VERSION = 1


def _fmt(v: float | None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.2g}"


def _features(items: list[dict], key: str = "smd", n: int = 3) -> str:
    return ", ".join(f"{'high' if d[key] > 0 else 'low'} {d['name']} ({d[key]:+.1f} SD)"
                     for d in items[:n])


def cluster_lines(s: dict, entry: dict | None = None) -> list[str]:
    stab = (f", seed agreement {s['stability']:.2f}" if s.get("stability") is not None else "")
    lines = [f"{s['k']} clusters ({s['algorithm']}, silhouette {_fmt(s['silhouette'])}{stab}; "
             f"{s['sample']})."]
    rows = s.get("clusters", [])
    total = sum(c["size"] for c in rows) or 1
    rated = [c for c in rows if c.get("label_rate") is not None]
    overall = sum(c["label_rate"] * c["size"] for c in rated) / total if rated else None
    for c in sorted(rows, key=lambda c: -(c.get("label_lift") or 0))[:3]:
        text = f"Cluster {c['cluster']} ({c['share']:.0%} of rows)"
        if c.get("top_features"):
            text += f": {_features(c['top_features'])}"
        if c.get("label_rate") is not None and overall is not None:
            what = "label mean" if (entry or {}).get("task") == "regression" else "label rate"
            text += (f"; {what} {c['label_rate']:.2f} vs {overall:.2f} overall "
                     f"(q={_p(c['label_q_value'])}"
                     + (", enriched)" if c.get("label_enriched") else ")"))
        lines.append(text + ".")
    return lines


def rule_lines(s: dict, entry: dict | None = None) -> list[str]:
    lines = []
    for r in s.get("top_label_rules", [])[:3]:
        lines.append(f"Rule: {' & '.join(r['antecedent'])} -> {' & '.join(r['consequent'])} "
                     f"(confidence {r['confidence']:.2f}, lift {r['lift']:.2f}, "
                     f"{r['n_rows']} rows).")
    if not lines:
        text = f"{s['n_rules']} association rules, none with the label as consequent"
        for r in s.get("top_rules", [])[:1]:
            text += (f"; top by lift: {' & '.join(r['antecedent'])} -> "
                     f"{' & '.join(r['consequent'])} (confidence {r['confidence']:.2f}, "
                     f"lift {r['lift']:.2f})")
        lines.append(text + ".")
    return lines


def test_lines(s: dict, entry: dict | None = None) -> list[str]:
    top = s.get("top", [])[:5]
    unit = ("per-patient means" if s["unit"] == "patient" else "images")
    text = (f"{s['n_significant']} of {s['n_features']} features differ by label at FDR "
            f"{s['fdr']:.0%} ({s['n_units']} {unit})")
    entry = entry or {}
    lead = "strongest" if top and top[0].get("significant") else "strongest (not significant)"
    if top and top[0].get("auc") is not None:
        where = (f"{entry['label']}={entry['positive']}" if entry.get("positive") is not None
                 else "the positive class")
        text += f"; {lead}, AUC for {where}: " + ", ".join(
            f"{t['feature']} {_fmt(t['auc'])} ({t['direction']})" for t in top)
    elif top and top[0].get("rho") is not None:
        text += f"; {lead}: " + ", ".join(f"{t['feature']} (rho {_fmt(t['rho'])})" for t in top)
    return [text + "."]


def correlation_lines(s: dict, entry: dict | None = None) -> list[str]:
    text = (f"{s['n_features']} features form {s['n_independent']} groups at |r| >= "
            f"{s['threshold']}")
    if s.get("groups"):
        g = s["groups"][0]
        text += f"; the largest holds {len(g)} ({', '.join(g[:3])}{', ...' if len(g) > 3 else ''})"
    return [text + "."]


def trend_lines(s: dict, entry: dict | None = None) -> list[str]:
    if s.get("note"):
        return [f"Trends: {s['note']}."]
    text = f"{s['n_trending']} of {s['n_series']} {s['period']}ly series trend"
    parts = []
    for t in s.get("top", [])[:3]:
        where = "" if t["split"] == "all" else f" for {t['split']}={t['stratum']}"
        rel = abs(t["relative_slope"] or 0)
        parts.append(f"{t['feature']}{where} {t['direction']} {rel:.2g} IQR/{s['period']} "
                     f"(q={_p(t['q_value'])})")
    return [text + (": " + "; ".join(parts) if parts else "") + "."]


def drift_lines(s: dict, entry: dict | None = None) -> list[str]:
    if s.get("skipped"):
        return [f"Drift not tested: {s['skipped']}."]
    text = (f"Batch {s['batch']} ({s['n_batch']} rows) vs {s['reference']} "
            f"({s['n_reference']}): {s['n_drifted_features']} of {s['n_features']} features "
            "drifted")
    parts = [f"{d['name']} (PSI {_fmt(d['psi'])}, {_fmt(d['shift_sd'], 1)} SD)"
             for d in s.get("drifted", []) if d["kind"] != "metadata"][:3]
    lines = [text + (": " + ", ".join(parts) if parts else "") + "."]
    for d in s.get("drifted", []):
        if d["kind"] == "metadata":
            new = f"; new values {d['new_values']}" if d.get("new_values") else ""
            lines.append(f"The {d['name']} mix changed (PSI {_fmt(d['psi'])}{new}).")
    return lines


def outlier_lines(s: dict, entry: dict | None = None) -> list[str]:
    if not s.get("top"):
        return []
    t = s["top"][0]
    who = f"{t['id']}" + (f" (group {t['group_id']})" if t.get("group_id") else "")
    return [f"Most unusual row: {who}, score {t['score']:.3g}, driven by "
            f"{', '.join(t['drivers'])}."]


LINES = {"clusters": cluster_lines, "rules": rule_lines, "tests": test_lines,
         "correlations": correlation_lines, "trends": trend_lines, "drift": drift_lines,
         "outliers": outlier_lines}


def headlines(entry: dict[str, Any]) -> list[str]:
    """The sentences of one input's findings, in analysis order."""
    lines = [f"{entry['rows']} rows" + (f" from {entry['groups']} patients/groups"
                                        if entry.get("groups") else "")
             + f", {entry['n_features']} features"
             + (f", label {entry['label']!r} ({entry['task']})" if entry.get("label") else "")
             + "."]
    for name, fn in LINES.items():
        if entry.get(name):
            lines += fn(entry[name], entry)
    return lines


def merge(existing: dict[str, Any] | None, run_date: str, entry: dict[str, Any]
          ) -> dict[str, Any]:
    """The day's summary with `entry` (one input) added or replaced."""
    doc = existing if existing and existing.get("run_date") == run_date else {}
    inputs = dict(doc.get("inputs", {}))
    inputs[entry["input"]] = entry
    return {"schema_version": SCHEMA_VERSION, "run_date": run_date,
            "inputs": dict(sorted(inputs.items()))}
