"""Data for the deep-learning tests: sklearn's digits as plane rows in Parquet files, an index
and a training job, without Spark."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medspark.planes import encode_plane


def digits_rows(limit: int | None = None) -> tuple[list[dict], np.ndarray]:
    """sklearn's 1797 8x8 digit scans as uint8 plane rows (0..16 -> 0..255) and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    n = limit or len(d.images)
    rows = [{"image_id": f"img{i:05d}",
             **encode_plane(np.round(d.images[i] * 255 / 16).astype(np.uint8))}
            for i in range(n)]
    return rows, d.target[:n].astype(np.int64)


def write_planes(folder: str, rows: list[dict], files: int = 4, row_group: int = 150
                 ) -> list[str]:
    """The rows split over `files` Parquet files of `row_group`-row row groups."""
    os.makedirs(folder, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    step = -(-len(rows) // files)
    out = []
    for k in range(files):
        path = os.path.join(folder, f"part-{k}.parquet")
        pq.write_table(table.slice(k * step, step), path, row_group_size=row_group)
        out.append(path)
    return out


def write_index(path: str, ids: list[str], targets: np.ndarray, split: np.ndarray) -> str:
    pq.write_table(pa.table({"image_id": ids, "_y": np.asarray(targets, dtype=float),
                             "_split": np.asarray(split, dtype=np.int32)}), path)
    return path


def seeded_split(n: int, seed: int = 0) -> np.ndarray:
    """0 train / 1 validation / 2 test, 60/20/20, seeded."""
    return np.random.default_rng(seed).choice([0, 0, 0, 1, 2], size=n)


def digits_job(root: str, model_dir: str, epochs: int = 6, batch_size: int = 32,
               input_size: int = 8, lr: float = 0.005, patience: int = 0, threads: int = 1,
               limit: int | None = None):
    """A CNN TrainJob on the digits (Parquet files and index under `root`)."""
    from medspark.deep.config import DeepSettings
    from medspark.deep.data import DataSpec, list_units
    from medspark.deep.infer import write_model_config
    from medspark.deep.loop import TrainJob

    rows, y = digits_rows(limit)
    files = write_planes(os.path.join(root, "planes"), rows)
    index = write_index(os.path.join(root, "index.parquet"), [r["image_id"] for r in rows], y,
                        seeded_split(len(rows)))
    cfg = DeepSettings(input_size=input_size, cnn={"widths": [32, 64], "dropout": 0.1},
                       optimizer={"lr": lr})
    arch = cfg.architecture(10)
    os.makedirs(model_dir, exist_ok=True)
    write_model_config(model_dir, {"architecture": arch, "transform": cfg.transform(),
                                   "objective": "classification", "labels": list(range(10))})
    spec = DataSpec("planes", list_units(files), cfg.transform(), index_path=index,
                    augment={"rotation_deg": 8.0, "flip_horizontal": 0.0, "shift": 0.05},
                    seed=3, shuffle_buffer=256)
    return TrainJob(arch, "classification", spec, model_dir, epochs, batch_size,
                    cfg.optimizer.model_dump(), cfg.schedule.model_dump(), seed=0,
                    patience=patience, threads=threads)
