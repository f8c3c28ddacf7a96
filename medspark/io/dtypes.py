"""Smallest exact dtype: store decoded pixels compactly without changing a single value.

Readers often produce float64 (after a rescale) or wide integers for data that fits a much
smaller type, e.g. CT in HU after slope 1 / intercept -1024 fits int16. Choosing the dtype from
the actual values keeps the pixel store small and lossless.
"""

from __future__ import annotations

import numpy as np

INT_CANDIDATES = tuple(
    np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32")
)
FLOAT32 = np.dtype("float32")
FLOAT64 = np.dtype("float64")


def _int_dtype(lo: float, hi: float) -> np.dtype | None:
    for dtype in INT_CANDIDATES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    return None


def _float_exact(values: np.ndarray, dtype: np.dtype) -> bool:
    """True if every value survives a roundtrip through `dtype` (NaN counts as itself)."""
    with np.errstate(over="ignore", invalid="ignore"):
        back = values.astype(dtype).astype(values.dtype)
    if values.dtype.kind == "f":
        return bool(np.array_equal(back, values, equal_nan=True))
    return bool(np.array_equal(back, values))


def smallest_exact_dtype(values: np.ndarray) -> np.dtype:
    """The smallest of uint8, int8, uint16, int16, uint32, int32, float32, float64 holding
    `values` exactly.

    Integer types are only chosen when all values are finite and integral. Empty (and boolean)
    arrays give uint8. Values no candidate holds exactly (e.g. int64 above 2**53) keep their own
    dtype, in native byte order. Complex and non-numeric arrays raise TypeError.
    """
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"no exact real dtype for {values.dtype.kind!r} arrays")
    if values.size == 0 or kind == "b":
        return INT_CANDIDATES[0]
    if kind == "f":
        finite = bool(np.isfinite(values).all())
        if finite and bool((values == np.round(values)).all()):
            found = _int_dtype(float(values.min()), float(values.max()))
            if found is not None:
                return found
    else:
        found = _int_dtype(int(values.min()), int(values.max()))
        if found is not None:
            return found
    for dtype in (FLOAT32, FLOAT64):
        if values.dtype.itemsize < dtype.itemsize and kind == "f":
            return dtype  # widening a float (float16 -> float32) is always exact
        if _float_exact(values, dtype):
            return dtype
    return values.dtype.newbyteorder("=")


def to_smallest_exact(values: np.ndarray) -> np.ndarray:
    """`values` converted to `smallest_exact_dtype(values)` (native byte order, same shape)."""
    values = np.asarray(values)
    return values.astype(smallest_exact_dtype(values), copy=False)
