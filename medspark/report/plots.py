"""The report's plots, as PNG data URIs that the HTML embeds (no file beside it, no network).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch).
Every text that comes from data goes through `_plain`, so a `$` in a feature name is shown as a
dollar sign instead of starting matplotlib's mathtext (which would fail on unbalanced `$`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.dates import DateFormatter, DayLocator
from matplotlib.ticker import MaxNLocator

from medspark.figures import figure, to_data_uri
from medspark.report.model import FeatureDrift, Histogram, Stage, TrendPoint

STATUS_COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}
TONIGHT, PREVIOUS, FLAG = "#1565c0", "#9e9e9e", "#c62828"


def _plain(text: object, limit: int = 48) -> str:
    """Data text for a matplotlib label: `$` literal, long names shortened."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")




def stage_durations(stages: Sequence[Stage]) -> str | None:
    """Horizontal bars of each stage's duration, coloured by its status."""
    timed = [s for s in stages if s.duration_s is not None]
    if not timed:
        return None
    fig = figure((7.0, 0.45 * len(timed) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(timed))
    ax.barh(y, [s.duration_s for s in timed],
            color=[STATUS_COLOURS[s.status] for s in timed])
    ax.set_yticks(y, [_plain(f"{s.name} ({s.status})") for s in timed])
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="Stage durations")
    ax.grid(axis="x", alpha=0.3)
    return to_data_uri(fig)


def quality_trend(points: Sequence[TrendPoint], tonight: dt.date | None = None) -> str | None:
    """Quarantined files and step errors per night (last 30 nights), tonight marked."""
    if not points:
        return None
    pts = sorted(points, key=lambda p: p.date)[-30:]
    dates = [p.date for p in pts]
    fig = figure((7.5, 3.0))
    ax = fig.add_subplot()
    ax.plot(dates, [p.quarantined for p in pts], marker="o", ms=3, label="quarantined files")
    ax.plot(dates, [p.step_errors for p in pts], marker="s", ms=3, label="images failing a step")
    if tonight is not None and tonight in dates:
        ax.axvline(tonight, color="black", lw=0.8, ls=":", label="tonight")
    ax.set(ylabel="count", title=f"Quality over the last {len(pts)} night(s)")
    top = max([1] + [p.quarantined for p in pts] + [p.step_errors for p in pts])
    ax.set_ylim(bottom=0, top=top * 1.1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    # one tick per night at most (matplotlib's auto locator would tick hours between 2 nights)
    span = (dates[-1] - dates[0]).days
    ax.xaxis.set_major_locator(DayLocator(interval=max(1, math.ceil(span / 8))))
    ax.xaxis.set_major_formatter(DateFormatter("%m-%d"))
    if len(dates) == 1:
        ax.set_xlim(dates[0] - dt.timedelta(days=1), dates[0] + dt.timedelta(days=1))
    fig.autofmt_xdate()
    return to_data_uri(fig)


def histogram(hist: Histogram, *, title: str, xlabel: str, colour: str = TONIGHT) -> str | None:
    """Bars of one precomputed histogram; bins of unequal width as labelled categories."""
    if not hist.counts:
        return None
    edges = np.asarray(hist.edges, dtype=float)
    widths = np.diff(edges)
    fig = figure((6.0, 2.8))
    ax = fig.add_subplot()
    if np.allclose(widths, widths[0]):
        ax.bar(edges[:-1], hist.counts, width=widths, align="edge", color=colour,
               edgecolor="white", linewidth=0.5)
    else:  # equal-width bars, else a wide bin looks like many rows
        x = np.arange(len(hist.counts))
        ax.bar(x, hist.counts, color=colour, edgecolor="white", linewidth=0.5)
        ax.set_xticks(x, [f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:], strict=False)],
                      fontsize=8)
    ax.set(title=_plain(title, 80), xlabel=_plain(xlabel, 80), ylabel="count")
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def _density(hist: Histogram) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(hist.edges, dtype=float)
    counts = np.asarray(hist.counts, dtype=float)
    total = counts.sum()
    dens = counts / (total * np.diff(edges)) if total > 0 else counts
    return edges, dens


def _panel(ax, f: FeatureDrift) -> None:
    if f.tonight.histogram is not None:
        if f.previous is not None and f.previous.histogram is not None:
            e, d = _density(f.previous.histogram)
            ax.stairs(d, e, fill=True, color=PREVIOUS, alpha=0.45, label="previous")
        e, d = _density(f.tonight.histogram)
        ax.stairs(d, e, color=TONIGHT, lw=1.6, label="tonight")
        ax.set_yticks([])
    else:
        # no bins: median and IQR as two horizontal boxes
        for y, (dist, colour) in enumerate([(f.previous, PREVIOUS), (f.tonight, TONIGHT)]):
            if dist is None or dist.median is None:
                continue
            if dist.q1 is not None and dist.q3 is not None:
                ax.barh(y, dist.q3 - dist.q1, left=dist.q1, height=0.5, color=colour, alpha=0.5)
            ax.plot([dist.median] * 2, [y - 0.3, y + 0.3], color=colour, lw=2)
        ax.set_yticks([0, 1], ["prev", "tonight"], fontsize=7)
    title = _plain(f.feature, 34) + (f"\nKS {f.ks_statistic:.2f}" if f.ks_statistic is not None
                                     else "")
    ax.set_title(title, fontsize=8, color=FLAG if f.flagged else "black")
    ax.tick_params(labelsize=7)
    if f.flagged:
        for spine in ax.spines.values():
            spine.set_color(FLAG)
            spine.set_linewidth(1.5)


def feature_small_multiples(features: Sequence[FeatureDrift], max_panels: int = 24,
                            cols: int = 4) -> str | None:
    """One small panel per feature, tonight (line) over previous nights (shaded), flagged in red.

    Flagged features come first; at most `max_panels` panels (the table lists all)."""
    drawable = [f for f in features if f.tonight.histogram is not None or
                f.tonight.median is not None]
    if not drawable:
        return None
    ordered = sorted(drawable, key=lambda f: (not f.flagged, -(f.ks_statistic or 0.0)))
    shown = ordered[:max_panels]
    cols = min(cols, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = figure((2.3 * cols, 1.9 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, f in zip(axes.flat, shown, strict=False):
        _panel(ax, f)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper right", fontsize=8, ncols=2)
    return to_data_uri(fig)
