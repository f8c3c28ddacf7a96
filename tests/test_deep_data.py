"""Sharded Parquet datasets: disjoint balanced shards, the index's splits, seeded order and
augmentation, the input transform and series padding (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import digits_rows, seeded_split, write_index, write_planes  # noqa: E402

from medspark.deep.data import (  # noqa: E402
    TEST,
    TRAIN,
    VALIDATION,
    DataSpec,
    ShardDataset,
    Unit,
    list_units,
    pad_series,
    shard_units,
)
from medspark.deep.transform import ImageTransform, even_subsample  # noqa: E402

TRANSFORM = {"input_size": 8, "channels": 1, "normalize": "minmax"}


@pytest.fixture(scope="module")
def planes(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep-data")
    rows, y = digits_rows(600)
    files = write_planes(str(root / "planes"), rows, files=3, row_group=70)
    split = seeded_split(len(rows))
    index = write_index(str(root / "index.parquet"), [r["image_id"] for r in rows], y, split)
    ids = np.array([r["image_id"] for r in rows])
    return {"files": files, "index": index, "ids": ids, "split": split, "y": y, "rows": rows}


def spec_of(planes, **kw) -> DataSpec:
    return DataSpec("planes", list_units(planes["files"]), TRANSFORM,
                    index_path=planes["index"], **kw)


def ids_of(ds: ShardDataset) -> list[str]:
    return [i for i, _, _ in ds.samples()]


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_are_disjoint_cover_everything_and_balanced(world):
    units = [Unit(f"f{i % 4}", i, n) for i, n in enumerate([70, 70, 70, 30, 70, 5, 70, 64, 1])]
    shards = [shard_units(units, r, world) for r in range(world)]
    flat = [u for s in shards for u in s]
    assert sorted(flat, key=lambda u: u.row_group) == units
    loads = [sum(u.num_rows for u in s) for s in shards]
    assert max(loads) - min(loads) <= max(u.num_rows for u in units)
    assert shards == [shard_units(units, r, world) for r in range(world)]  # deterministic


def test_each_split_read_once_across_ranks(planes):
    spec = spec_of(planes)
    for split in (TRAIN, VALIDATION, TEST):
        want = sorted(planes["ids"][planes["split"] == split])
        for world in (1, 2, 3):
            got = [i for r in range(world)
                   for i in ids_of(ShardDataset(spec, split, 16, r, world, train=split == TRAIN))]
            assert sorted(got) == want
            assert sum(len(ShardDataset(spec, split, 16, r, world)) for r in range(world)) \
                == len(want)


def test_targets_and_batches(planes):
    ds = ShardDataset(spec_of(planes), TRAIN, 16, 0, 1, train=True)
    target = dict(zip(planes["ids"], planes["y"], strict=True))
    assert all(target[i] == t for i, t, _ in ds.samples())
    batches = list(ds)
    assert all(x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 for x, _ in batches)
    assert [len(y) for _, y in batches[:-1]] == [16] * (len(batches) - 1)
    assert sum(len(y) for _, y in batches) == len(ds)
    x, _ = batches[0]
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_training_order_is_seeded_per_epoch(planes):
    spec = spec_of(planes, shuffle_buffer=64)
    ds = ShardDataset(spec, TRAIN, 16, 0, 2, train=True)
    first = ids_of(ds)
    assert ids_of(ShardDataset(spec, TRAIN, 16, 0, 2, train=True)) == first
    ds.set_epoch(1)
    second = ids_of(ds)
    assert sorted(second) == sorted(first) and second != first
    val = ShardDataset(spec, VALIDATION, 16, 0, 2)
    assert ids_of(val) == ids_of(val)  # evaluation: file order, no shuffle


def test_augmentation_follows_image_and_epoch_not_shard(planes):
    aug = {"rotation_deg": 20.0, "flip_horizontal": 0.5, "shift": 0.1}
    spec = spec_of(planes, augment=aug, seed=5)
    one = {i: x for i, _, x in ShardDataset(spec, TRAIN, 8, 0, 1, train=True).samples()}
    two = {i: x for r in (0, 1)
           for i, _, x in ShardDataset(spec, TRAIN, 8, r, 2, train=True).samples()}
    assert one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)
    ds = ShardDataset(spec, TRAIN, 8, 0, 1, train=True)
    ds.set_epoch(1)
    later = {i: x for i, _, x in ds.samples()}
    assert sum(not np.array_equal(one[k], later[k]) for k in one) > len(one) // 2
    plain = {i: x for i, _, x in ShardDataset(spec, VALIDATION, 8).samples()}
    raw = ImageTransform.from_dict(TRANSFORM)
    row = {r["image_id"]: r for r in planes["rows"]}
    assert all(np.array_equal(plain[k], raw.row(row[k])) for k in plain)


def test_transform_channels_and_scaling():
    grey = np.arange(64, dtype=np.uint16).reshape(8, 8) * 100
    rgb = np.stack([grey, grey, grey], axis=2).astype(np.uint8)
    for image in (grey, rgb):
        x1 = ImageTransform(16, 1).array(image)
        x3 = ImageTransform(16, 3, "zscore").array(image)
        assert x1.shape == (1, 16, 16) and x1.min() == 0 and x1.max() == 1
        assert x3.shape == (3, 16, 16) and abs(float(x3.mean())) < 1e-5
    assert ImageTransform(4, 1).array(np.full((5, 5), 7.0)).max() == 0  # constant image


def test_series_padding_and_subsampling():
    x, lengths = pad_series([np.ones((3, 1, 4, 4), np.float32), np.ones((5, 1, 4, 4))])
    assert x.shape == (2, 5, 1, 4, 4) and lengths.tolist() == [3, 5]
    assert float(x[0, 3:].abs().sum()) == 0
    keep = even_subsample(100, 10)
    assert len(keep) == 10 and keep[0] == 0 and keep[-1] == 99
    assert even_subsample(4, 10).tolist() == [0, 1, 2, 3]


def test_loader_workers_split_the_rank_shard(planes):
    spec = spec_of(planes, loader_workers=2)
    ds = ShardDataset(spec, TRAIN, 16, 0, 1, train=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    n = sum(len(y) for _, y in loader)
    assert n == len(ds) == int((planes["split"] == TRAIN).sum())
