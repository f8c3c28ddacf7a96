"""Spark SQL's `xxhash64(col, ...)` in numpy, for work done outside Spark that must agree with it.

The train job assigns folds by a seeded xxhash64 of the group id and fingerprints its rows by an
xor of every row's xxhash64; when a table small enough for one task is prepared there with
pyarrow (`medspark.models.task_split`), these give the same values, so the split and the model
id do not depend on which path read the table. Spark's function is XXH64 (seed 42) applied
column after column, each column's hash seeding the next, a null leaving the hash as it was:

    boolean, byte, short, int, date   XXH64 of the 4-byte value (true = 1)
    long, timestamp                   XXH64 of the 8-byte value
    float / double                    of the float's / double's bits; -0.0 as 0.0, one NaN
    string, binary                    XXH64 of the UTF-8 bytes

Every function works on whole columns (arrays of uint64 state, wrapping arithmetic): one pass
per column, and one per distinct byte length for strings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPARK_SEED = 42
P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
_U64 = np.uint64


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U64(r)) | (x >> _U64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h = h * P2
    h = h ^ (h >> _U64(29))
    h = h * P3
    return h ^ (h >> _U64(32))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * P2, 31) * P1


def _merge(h: np.ndarray, acc: np.ndarray) -> np.ndarray:
    return (h ^ _round(_U64(0), acc)) * P1 + P4


def hash_int(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """XXH64 of 4-byte values (int32 bits)."""
    lanes = values.astype(np.int32).view(np.uint32).astype(np.uint64)
    h = seed + P5 + _U64(4)
    h = h ^ (lanes * P1)
    return _fmix(_rotl(h, 23) * P2 + P3)


def hash_long(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """XXH64 of 8-byte values (int64 bits)."""
    lanes = values.astype(np.int64).view(np.uint64)
    h = seed + P5 + _U64(8)
    h = h ^ _round(_U64(0), lanes)
    return _fmix(_rotl(h, 27) * P1 + P4)


def hash_bytes(data: np.ndarray, starts: np.ndarray, length: int,
               seed: np.ndarray) -> np.ndarray:
    """XXH64 of `length` bytes of `data` at each of `starts` (uint8 buffer, int64 offsets)."""
    rows = data[starts[:, None] + np.arange(length, dtype=np.int64)] if length else \
        np.zeros((len(starts), 0), np.uint8)

    def lanes(a: int, width: int) -> np.ndarray:
        chunk = np.ascontiguousarray(rows[:, a:a + width])
        return chunk.view("<u8" if width == 8 else "<u4").ravel().astype(np.uint64)

    pos = 0
    if length >= 32:
        v = [seed + P1 + P2, seed + P2, seed.copy(), seed - P1]
        while pos + 32 <= length:
            v = [_round(v[i], lanes(pos + 8 * i, 8)) for i in range(4)]
            pos += 32
        h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
        for acc in v:
            h = _merge(h, acc)
    else:
        h = seed + P5
    h = h + _U64(length)
    while pos + 8 <= length:
        h = _rotl(h ^ _round(_U64(0), lanes(pos, 8)), 27) * P1 + P4
        pos += 8
    if pos + 4 <= length:
        h = _rotl(h ^ (lanes(pos, 4) * P1), 23) * P2 + P3
        pos += 4
    while pos < length:
        h = _rotl(h ^ (rows[:, pos].astype(np.uint64) * P5), 11) * P1
        pos += 1
    return _fmix(h)


def _hash_strings(column: pa.Array, seed: np.ndarray) -> np.ndarray:
    arr = column.cast(pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None \
        else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    out = seed.copy()
    for length in np.unique(lengths):
        at = np.flatnonzero(lengths == length)
        out[at] = hash_bytes(data, offsets[:-1][at], int(length), seed[at])
    return out


def hash_column(column: pa.Array | pa.ChunkedArray, seed: np.ndarray) -> np.ndarray:
    """Spark's per-column step: each row's XXH64 of its value seeded by `seed` (uint64), or
    `seed` where the value is null. Raises TypeError for a type this does not follow."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) \
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        out = _hash_strings(column, seed)
    elif pa.types.is_boolean(kind) or _int_width(kind):
        values = pc.fill_null(column.cast(pa.int32()), 0).to_numpy()
        out = hash_int(values, seed)
    elif pa.types.is_int64(kind) or pa.types.is_uint32(kind):  # Spark reads uint32 as long
        out = hash_long(pc.fill_null(column.cast(pa.int64()), 0).to_numpy(), seed)
    elif pa.types.is_float32(kind):
        out = hash_int(_float_bits(column, np.float32, np.int32, 0x7FC00000), seed)
    elif pa.types.is_float64(kind):
        out = hash_long(_float_bits(column, np.float64, np.int64, 0x7FF8000000000000), seed)
    else:
        raise TypeError(f"no Spark xxhash64 equivalent here for {kind}")
    return np.where(valid, out, seed)


def _float_bits(column: pa.Array, float_type: type, int_type: type, nan: int) -> np.ndarray:
    """The bits Java's floatToIntBits / doubleToLongBits give, -0.0 first made 0.0."""
    values = np.array(pc.fill_null(column, 0).to_numpy(zero_copy_only=False), dtype=float_type)
    values[values == 0] = 0  # -0.0 -> 0.0
    bits = values.view(int_type).copy()
    bits[np.isnan(values)] = nan
    return bits


def xxhash64(columns: Iterable[pa.Array | pa.ChunkedArray], rows: int,
             seed: int = SPARK_SEED) -> np.ndarray:
    """`xxhash64(c1, c2, ...)` per row, as Spark's signed int64."""
    state = np.full(rows, seed, dtype=np.int64).view(np.uint64)
    for column in columns:
        state = hash_column(column, state)
    return state.view(np.int64)


def xxhash64_int_then(value: int, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """`xxhash64(lit(value), column)` with `value` an int literal (the fold ranking's seed)."""
    first = hash_int(np.array([value], dtype=np.int64), np.array([SPARK_SEED], np.uint64))
    state = np.full(len(column), first[0], dtype=np.uint64)
    return hash_column(column, state).view(np.int64)


def is_hashable(kind: pa.DataType) -> bool:
    """Whether `hash_column` follows Spark for this Arrow type (asks it, on no rows)."""
    try:
        hash_column(pa.array([], kind), np.zeros(0, np.uint64))
    except TypeError:
        return False
    return True


def _int_width(kind: pa.DataType) -> bool:
    """An integer Spark reads as byte, short or int (uint8/16 widen; uint32 is a long)."""
    return pa.types.is_integer(kind) and (kind.bit_width < 32 or (
        kind.bit_width == 32 and pa.types.is_signed_integer(kind)))
