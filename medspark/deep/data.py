"""Each training process streams its own shard of a list of Parquet files, in bounded memory.

The unit of sharding is a Parquet row group (`list_units`): `shard_units` deals them out to
the ranks, largest first to the least loaded, so shards are disjoint, cover every row and are
balanced within one row group. A process never reads another rank's row groups, reads its own
in small record batches (`READ_ROWS`), and holds at most those, the one row group's column chunks
pyarrow buffers and `shuffle_buffer` decoded images: memory does not grow with the table.

Two kinds of rows:
- planes: lake plane rows (`image_id`, `height`, `width`, `channels`, `dtype`, `data`, ...),
  matched by `image_id` against an index file (`image_id`, `_y`, `_split`) the Spark layer
  wrote: the index says which rows are training / validation / test and their targets, so the
  lake's own files are streamed without a copy;
- series: rows of a per-series table (`key`, `_y`, `_split` and parallel arrays `image_ids`,
  `heights`, `widths`, `channels`, `dtypes`, `datas` in slice order) for the GRU.

Training order is reproducible: row groups are visited in a permutation and rows leave the
shuffle buffer at positions drawn from `numpy.random.default_rng((seed, epoch, rank))`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from medspark.deep.transform import ImageTransform, even_subsample

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}
PLANE_COLUMNS = ["image_id", "height", "width", "channels", "dtype", "data"]
SERIES_COLUMNS = ["key", "_y", "image_ids", "heights", "widths", "channels", "dtypes", "datas"]
READ_ROWS = {"planes": 64, "series": 2}  # rows per record batch read (a series is many planes)


@dataclass(frozen=True)
class Unit:
    """One row group of one Parquet file."""

    path: str
    row_group: int
    num_rows: int


def list_units(files: list[str]) -> list[Unit]:
    """Every non-empty row group of `files` (footers only), in file order."""
    units = []
    for path in files:
        meta = pq.ParquetFile(_local(path)).metadata
        units += [Unit(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)
                  if meta.row_group(i).num_rows]
    return units


def shard_units(units: list[Unit], rank: int, world: int) -> list[Unit]:
    """This rank's row groups: greedy by size (largest to the least loaded rank, ties to the
    lowest rank), deterministic, disjoint across ranks; returned in their listing order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    load = [0] * world
    mine = set()
    order = sorted(range(len(units)), key=lambda i: (-units[i].num_rows, i))
    for i in order:
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += units[i].num_rows
        if r == rank:
            mine.add(i)
    return [u for i, u in enumerate(units) if i in mine]


def _local(path: str) -> str:
    """The filesystem path of a plain path or a file: URI (pyarrow opens local paths)."""
    return urlparse(path).path if path.startswith("file:") else path


@dataclass(frozen=True)
class DataSpec:
    """Everything a process needs to build its datasets (picklable, no Spark)."""

    kind: Literal["planes", "series"]
    units: list[Unit]
    transform: dict[str, Any]
    index_path: str | None = None
    augment: dict[str, Any] | None = None
    seed: int = 0
    shuffle_buffer: int = 1024
    max_slices: int = 64
    loader_workers: int = 0
    target_dtype: str = "int64"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Plan:
    """Rows of one unit in a split: their positions in the row group, targets and ids."""

    unit: Unit
    positions: np.ndarray
    targets: np.ndarray
    ids: np.ndarray


class ShardDataset(IterableDataset):
    """Batches of one split of this rank's shard: `(x, y)` for planes, `(x, lengths, y)` for
    series (x zero-padded to the longest series of the batch). Call `set_epoch` before each
    training epoch; `len(ds)` is the number of rows this rank holds for the split."""

    def __init__(self, spec: DataSpec, split: int, batch_size: int, rank: int = 0,
                 world: int = 1, train: bool = False):
        self.spec, self.split, self.batch_size = spec, split, int(batch_size)
        self.rank, self.train, self.epoch = rank, train, 0
        self.transform = ImageTransform.from_dict(spec.transform, spec.augment, spec.seed)
        self.plans = self._plan(shard_units(spec.units, rank, world))

    def __len__(self) -> int:
        return int(sum(len(p.positions) for p in self.plans))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- which rows ---------------------------------------------------------------------------
    def _plan(self, units: list[Unit]) -> list[_Plan]:
        lookup = None
        if self.spec.kind == "planes":
            if not self.spec.index_path:
                raise ValueError("planes need an index_path")
            index = pq.read_table(_local(self.spec.index_path),
                                  columns=["image_id", "_y", "_split"]).to_pandas()
            index = index[index["_split"] == self.split]
            lookup = (index.set_index("image_id")["_y"])
        plans = []
        for unit in units:
            pf = pq.ParquetFile(_local(unit.path))
            if lookup is not None:
                ids = pf.read_row_group(unit.row_group, columns=["image_id"]).column(0)
                ids = np.asarray(ids.to_pylist(), dtype=object)
                at = lookup.index.get_indexer(ids)
                pos = np.flatnonzero(at >= 0)
                targets = lookup.to_numpy()[at[pos]]
            else:
                head = pf.read_row_group(unit.row_group, columns=["key", "_y", "_split"])
                split = head.column("_split").to_numpy(zero_copy_only=False)
                pos = np.flatnonzero(split == self.split)
                ids = np.asarray(head.column("key").to_pylist(), dtype=object)
                targets = head.column("_y").to_numpy(zero_copy_only=False)[pos]
            if len(pos):
                plans.append(_Plan(unit, pos, np.asarray(targets, dtype=np.float64),
                                   ids[pos]))
        return plans

    # -- reading ------------------------------------------------------------------------------
    def _rows(self, plan: _Plan) -> Iterator[tuple[Any, float, np.ndarray]]:
        """(id, target, network input) of a plan's rows, reading READ_ROWS rows at a time."""
        cols = PLANE_COLUMNS if self.spec.kind == "planes" else SERIES_COLUMNS
        pf = pq.ParquetFile(_local(plan.unit.path))
        wanted, k, offset = plan.positions, 0, 0
        epoch = self.epoch if self.train else None
        for batch in pf.iter_batches(batch_size=READ_ROWS[self.spec.kind],
                                     row_groups=[plan.unit.row_group],
                                     columns=cols, use_threads=False):
            end = offset + batch.num_rows
            stop = int(np.searchsorted(wanted, end))
            if stop > k:
                rows = batch.take(pa.array(wanted[k:stop] - offset)).to_pylist()
                for j, row in enumerate(rows):
                    yield plan.ids[k + j], plan.targets[k + j], self._sample(row, epoch)
                k = stop
            offset = end
            if k >= len(wanted):
                break

    def _sample(self, row: dict[str, Any], epoch: int | None) -> np.ndarray:
        if self.spec.kind == "planes":
            return self.transform.row(row, epoch)
        keep = even_subsample(len(row["datas"]), self.spec.max_slices)
        return np.stack([self.transform.row(
            {"image_id": row["image_ids"][i], "height": row["heights"][i],
             "width": row["widths"][i], "channels": row["channels"][i],
             "dtype": row["dtypes"][i], "data": row["datas"][i]}, epoch) for i in keep])

    def samples(self) -> Iterator[tuple[Any, float, np.ndarray]]:
        """(id, target, input) of this split's rows: shuffled for training, else in order."""
        plans = self.plans
        info = get_worker_info()
        if info is not None:  # DataLoader workers split the rank's row groups again
            plans = plans[info.id::info.num_workers]
        if not self.train:
            for plan in plans:
                yield from self._rows(plan)
            return
        rng = np.random.default_rng((self.spec.seed, self.epoch, self.rank,
                                     0 if info is None else info.id))
        buffer: list[tuple[Any, float, np.ndarray]] = []
        cap = self.spec.shuffle_buffer
        for i in rng.permutation(len(plans)):
            for item in self._rows(plans[i]):
                if len(buffer) < cap:
                    buffer.append(item)
                    continue
                j = int(rng.integers(cap))
                yield buffer[j]
                buffer[j] = item
        for j in rng.permutation(len(buffer)):
            yield buffer[j]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        chunk: list[tuple[Any, float, np.ndarray]] = []
        for item in self.samples():
            chunk.append(item)
            if len(chunk) == self.batch_size:
                yield self.collate(chunk)
                chunk = []
        if chunk:
            yield self.collate(chunk)

    def collate(self, items: list[tuple[Any, float, np.ndarray]]) -> tuple[torch.Tensor, ...]:
        y = torch.as_tensor(np.array([t for _, t, _ in items]),
                            dtype=getattr(torch, self.spec.target_dtype))
        if self.spec.kind == "planes":
            return torch.from_numpy(np.stack([x for _, _, x in items])), y
        return (*pad_series([x for _, _, x in items]), y)


def pad_series(series: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T_max, C, H, W) zero-padded float tensor and the (B,) lengths of (T, C, H, W) arrays."""
    lengths = [len(s) for s in series]
    out = np.zeros((len(series), max(lengths), *series[0].shape[1:]), dtype=np.float32)
    for i, s in enumerate(series):
        out[i, :len(s)] = s
    return torch.from_numpy(out), torch.as_tensor(lengths, dtype=torch.int64)
