"""Matplotlib figures off-screen (Agg, no pyplot state), as PNG bytes or data URIs: shared by
the morning report and discovery's plots, so both draw at one resolution."""

from __future__ import annotations

import base64
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def figure(size: tuple[float, float]) -> Figure:
    """A new figure of `size` inches with constrained layout, attached to an Agg canvas."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def to_data_uri(fig: Figure) -> str:
    """The figure as a `data:image/png;base64,...` URI (a self-contained HTML image)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode("ascii")
