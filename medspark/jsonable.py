"""JSON helpers shared by the model code: plain Python scalars, strict JSON, canonical hashes.

One place for what was copied into several modules: numpy scalars unwrapped (`py`), NaN/inf as
null (`num`, `finite`), a `json.dump` default (`json_default`), and the canonical JSON text
(sorted keys, no spaces) whose sha256 names models and configurations (`short_hash`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any

import numpy as np


def py(v: Any) -> Any:
    """A numpy scalar as the Python scalar it holds; anything else unchanged."""
    return v.item() if isinstance(v, np.generic) else v


def num(v: Any) -> float | None:
    """A finite float, or None for None, NaN and infinities (strict JSON has no NaN)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def finite(doc: Any) -> Any:
    """`doc` as JSON-ready values: non-finite floats (nested anywhere) as None, numpy scalars and
    arrays as Python values, dates as ISO text; dict keys as text."""
    if isinstance(doc, dict):
        return {str(k): finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [finite(v) for v in doc]
    if isinstance(doc, np.ndarray):
        return finite(doc.tolist())
    if isinstance(doc, dt.date):
        return doc.isoformat()
    if isinstance(doc, float | np.floating):
        return num(doc)
    return py(doc)


def json_default(v: Any) -> Any:
    """`json.dump(default=...)`: numpy scalars and arrays as Python values, others as str."""
    if isinstance(v, np.ndarray):
        return finite(v.tolist())
    if isinstance(v, np.generic):
        return finite(v.item())
    return str(v)


def canonical_json(doc: Any) -> str:
    """Sorted keys, no whitespace, non-JSON values as str: equal documents, equal text."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(doc: Any, n: int = 16) -> str:
    """The first `n` hex digits of the sha256 of `canonical_json(doc)`."""
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()[:n]


def dumps(doc: Any) -> str:
    """Indented, key-sorted strict JSON of `doc` (NaN -> null) for the files a model writes."""
    return json.dumps(finite(doc), indent=2, sort_keys=True, default=json_default,
                      allow_nan=False)
