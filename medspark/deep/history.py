"""The per-epoch training curves as a PNG (matplotlib's Agg canvas, no pyplot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_history(history: list[dict[str, Any]], path: str | Path,
                 best_epoch: int | None = None) -> Path:
    """Training and validation loss per epoch (left) and the validation metric (right)."""
    fig = Figure(figsize=(9.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    left.plot(epochs, [r["train_loss"] for r in history], "o-", label="training")
    left.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    if best_epoch is not None and best_epoch >= 0:
        left.axvline(best_epoch, ls="--", color="grey", lw=1, label=f"best (epoch {best_epoch})")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    metric = next((k for k in ("val_accuracy", "val_rmse") if history and k in history[0]), None)
    if metric:
        right.plot(epochs, [r[metric] for r in history], "o-", color="tab:green")
        right.set(xlabel="epoch", ylabel=metric.removeprefix("val_"),
                  title=f"Validation {metric.removeprefix('val_')}")
    else:
        right.plot(epochs, [r["lr"] for r in history], "o-", color="tab:purple")
        right.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
