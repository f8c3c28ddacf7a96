"""PNG plots of a discover run, drawn on matplotlib's Agg canvas (no pyplot, no global state).

Each function takes the bounded results (pandas tables the Spark layer already collected) and
returns the PNG bytes, or None when there is nothing to draw; the caller writes them next to
`summary.json` (local or remote lake alike).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medspark.figures import figure, png_bytes


def cluster_profiles(profile: pd.DataFrame, shares: dict[int, float] | None = None,
                     max_features: int = 20) -> bytes | None:
    """Heatmap: clusters x the features that set them apart (standardised mean difference)."""
    if profile.empty:
        return None
    strength = profile.abs().max(axis=0).sort_values(ascending=False)
    cols = list(strength.index[:max_features])
    data = profile[cols].to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
    longest = max(len(c) for c in cols)  # rotated tick labels need room below the axes
    fig = figure((max(5.0, 0.35 * len(cols) + 3.0), 1.5 + 0.5 * len(profile) + 0.06 * longest))
    ax = fig.add_subplot()
    im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    labels = [f"{c} ({shares[c]:.0%})" if shares and c in shares else str(c)
              for c in profile.index]
    ax.set_yticks(range(len(profile)), labels)
    ax.set_ylabel("cluster")
    ax.set_title("Cluster profiles (standardised mean difference vs other rows)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return png_bytes(fig)


def k_selection(scores: list[dict]) -> bytes | None:
    """Silhouette (and seed stability) per candidate k."""
    if not scores:
        return None
    ks = [s["k"] for s in scores]
    fig = figure((5.0, 3.5))
    ax = fig.add_subplot()
    ax.plot(ks, [np.nan if s["silhouette"] is None else s["silhouette"] for s in scores],
            "o-", label="silhouette")
    stab = [np.nan if s["stability"] is None else s["stability"] for s in scores]
    if np.isfinite(stab).any():
        ax.plot(ks, stab, "s--", label="stability (adjusted Rand across seeds)")
    ax.set_xlabel("k")
    ax.set_xticks(ks)
    ax.set_title("Choice of k")
    ax.legend(fontsize=8)
    return png_bytes(fig)


def feature_tests(table: pd.DataFrame, n: int = 15) -> bytes | None:
    """The top features by effect: AUC (classification) or Spearman rho (regression)."""
    if table.empty:
        return None
    top = table.head(n).iloc[::-1]
    use_auc = top["auc"].notna().any()
    values = top["auc"] if use_auc else top["effect_size"]
    fig = figure((6.0, 0.3 * len(top) + 1.5))
    ax = fig.add_subplot()
    colors = ["tab:red" if s else "tab:gray" for s in top["significant"].fillna(False)]
    base = 0.5 if use_auc else 0.0
    ax.barh(top["feature"], values - base, left=base, color=colors)
    ax.axvline(base, color="black", lw=0.8)
    ax.set_xlabel("AUC (label positive)" if use_auc else "effect size")
    if use_auc:
        ax.set_xlim(0, 1)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Features against the label (red: significant after FDR)")
    return png_bytes(fig)


def trends(table: pd.DataFrame, tests: pd.DataFrame, n: int = 4) -> bytes | None:
    """Median and IQR per period of the most significant trending series."""
    chosen = tests[tests["trending"].fillna(False) & (tests["feature"] != "label_rate")].head(n)
    if chosen.empty:
        return None
    fig = figure((6.0, 2.2 * len(chosen)))
    axes = fig.subplots(len(chosen), 1, squeeze=False)[:, 0]
    for ax, (_, t) in zip(axes, chosen.iterrows(), strict=True):
        s = table[(table["split"] == t["split"]) & (table["stratum"] == t["stratum"])
                  & (table["feature"] == t["feature"])].sort_values("period")
        x = pd.to_datetime(s["period"])
        ax.plot(x, s["median"], "o-", ms=3)
        ax.fill_between(x, s["q1"], s["q3"], alpha=0.25)
        where = "" if t["split"] == "all" else f" [{t['split']}={t['stratum']}]"
        ax.set_title(f"{t['feature']}{where}: slope {t['slope']:+.3g}/period, "
                     f"q={t['q_value']:.2g}", fontsize=9)
    return png_bytes(fig)


def drift(table: pd.DataFrame, threshold: float, n: int = 20) -> bytes | None:
    """PSI of the most shifted features (and metadata), with the threshold."""
    if table.empty:
        return None
    top = table.sort_values("psi", ascending=False).head(n).iloc[::-1]
    fig = figure((6.0, 0.3 * len(top) + 1.5))
    ax = fig.add_subplot()
    colors = ["tab:red" if d else "tab:gray" for d in top["drifted"].fillna(False)]
    ax.barh([f"{k}: {m}" if k != "feature" else m for k, m in zip(top["kind"], top["name"],
                                                                   strict=True)],
            top["psi"].fillna(0), color=colors)
    ax.axvline(threshold, color="black", ls="--", lw=0.8)
    ax.set_xlabel("PSI (batch vs reference)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Drift (red: drifted)")
    return png_bytes(fig)
