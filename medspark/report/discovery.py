"""Discovery findings in the report: `medspark discover`'s summary.json, rendered generically.

The summary's exact layout belongs to the discover job, so this module reads it by shape, not by
name: headline keys (`headline`, `headlines`, `findings`, `highlights`) become a list of
sentences; a list of records (or `{"columns": [...], "rows": [[...]]}`) becomes a table; a string
naming an image file (.png/.svg/.jpg/.gif/.webp) becomes an embedded plot, read from the
summary's own folder only (a path that leaves it, or a missing file, is shown as a note); a nested
mapping becomes a sub-section; other scalars a key/value table. Every string is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from medspark.report.model import DiscoverySection

HEADLINE_KEYS = ("headline", "headlines", "findings", "highlights", "summary")
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
MAX_ROWS = 50
MAX_DEPTH = 4
MAX_IMAGE_BYTES = 5 * 1024 * 1024
_RUN_DATE = re.compile(r"run_date=(\d{4}-\d{2}-\d{2})$")


def load_discovery(folder: str | Path) -> DiscoverySection | None:
    """The discovery of one run (`<lake>/discoveries/run_date=<d>/`), or None without one."""
    folder = Path(folder)
    path = folder / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(summary, dict):
        summary = {"summary": summary}
    m = _RUN_DATE.search(folder.name)
    return DiscoverySection(run_date=dt.date.fromisoformat(m.group(1)) if m else None,
                            base_dir=str(folder.resolve()), summary=summary)


def fmt(value: Any) -> str:
    """A cell's text (not yet escaped): numbers to 4 significant digits, lists joined,
    mappings as `key=value` words."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        sep = "; " if any(isinstance(v, dict) for v in value) else ", "
        return sep.join(fmt(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def _label(key: str) -> str:
    return escape(key.replace("_", " ").strip().capitalize())


def _is_image_ref(value: Any) -> bool:
    return isinstance(value, str) and Path(value).suffix.lower() in IMAGE_TYPES


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def table(columns: list[str] | None, rows: list[list[Any]], *, cls: str = "") -> str:
    """An escaped HTML table (no header row without `columns`), cut at MAX_ROWS rows."""
    head = ("<thead><tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in columns)
            + "</tr></thead>") if columns else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt(v))}</td>" for v in row) + "</tr>"
        for row in rows[:MAX_ROWS])
    more = (f'<p class="note">… {len(rows) - MAX_ROWS} more rows not shown</p>'
            if len(rows) > MAX_ROWS else "")
    klass = f' class="{escape(cls)}"' if cls else ""
    return f"<table{klass}>{head}<tbody>{body}</tbody></table>{more}"


def _records_table(records: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    return table(columns, [[r.get(c) for c in columns] for r in records])


class _Renderer:
    def __init__(self, base_dir: str | None):
        self.base = Path(base_dir).resolve() if base_dir else None

    def image(self, ref: str, title: str | None = None) -> str:
        alt = escape(title or Path(ref).name)
        note = f'<p class="note">plot not available: {escape(ref)}</p>'
        if self.base is None:
            return note
        path = (self.base / ref).resolve()
        if not path.is_relative_to(self.base) or not path.is_file() \
                or path.stat().st_size > MAX_IMAGE_BYTES:
            return note
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        mime = IMAGE_TYPES[path.suffix.lower()]
        return (f'<figure><img alt="{alt}" src="data:{mime};base64,{data}">'
                f"<figcaption>{alt}</figcaption></figure>")

    def headlines(self, value: Any) -> str:
        items = value if isinstance(value, list) else [value]
        lis = []
        for item in items:
            if isinstance(item, dict):
                text = item.get("text") or item.get("title") or item.get("finding")
                rest = {k: v for k, v in item.items() if k not in ("text", "title", "finding")}
                line = escape(fmt(text)) if text is not None else ""
                if rest:
                    line += f' <span class="note">({escape(fmt(rest))})</span>'
                lis.append(f"<li>{line}</li>")
            else:
                lis.append(f"<li>{escape(fmt(item))}</li>")
        return f'<ul class="findings">{"".join(lis)}</ul>'

    def value(self, key: str, value: Any, depth: int) -> str:
        if key.lower() in HEADLINE_KEYS and (isinstance(value, str) or (
                isinstance(value, list) and all(_is_scalar(v) or isinstance(v, dict)
                                                for v in value))):
            return self.headlines(value)
        if _is_image_ref(value):
            return self.image(value, key)
        if isinstance(value, list) and value and all(_is_image_ref(v) for v in value):
            return "".join(self.image(v) for v in value)
        if _is_records(value) and all(_is_image_ref(v.get("path")) for v in value):
            return "".join(self.image(v["path"], v.get("title")) for v in value)
        if isinstance(value, dict) and _is_image_ref(value.get("path")) and len(value) <= 3:
            return self.image(value["path"], value.get("title") or key)
        if isinstance(value, dict) and isinstance(value.get("columns"), list) \
                and isinstance(value.get("rows", value.get("data")), list):
            rows = value.get("rows", value.get("data"))
            return table([str(c) for c in value["columns"]],
                         [r if isinstance(r, list) else [r] for r in rows])
        if _is_records(value):
            return _records_table(value)
        if isinstance(value, dict):
            return self.mapping(value, depth + 1)
        if isinstance(value, list):
            return f"<p>{escape(fmt(value))}</p>" if value else '<p class="note">none</p>'
        return f"<p>{escape(fmt(value))}</p>"

    def mapping(self, data: dict[str, Any], depth: int) -> str:
        if depth > MAX_DEPTH:
            return f"<pre>{escape(json.dumps(data, indent=1, default=str))}</pre>"
        scalars = [(k, v) for k, v in data.items() if _is_scalar(v) and not _is_image_ref(v)
                   and k.lower() not in HEADLINE_KEYS]
        parts = []
        for k in (k for k in data if k.lower() in HEADLINE_KEYS):
            parts.append(self.value(k, data[k], depth))
        if scalars:
            parts.append(table(None, [[k.replace("_", " "), v] for k, v in scalars], cls="kv"))
        level = min(6, 3 + depth)
        for k, v in data.items():
            if k.lower() in HEADLINE_KEYS or (_is_scalar(v) and not _is_image_ref(v)):
                continue
            if _is_image_ref(v):  # a plot carries its key as caption, no heading of its own
                parts.append(self.image(v, k.replace("_", " ")))
                continue
            parts.append(f"<h{level}>{_label(k)}</h{level}>{self.value(k, v, depth)}")
        return "".join(parts)


def render_discovery(section: DiscoverySection) -> str:
    """The discovery section's HTML body (without its heading)."""
    if not section.summary:
        return '<p class="note">The discovery summary is empty.</p>'
    return _Renderer(section.base_dir).mapping(section.summary, depth=0)
