"""Deep learning speed: TorchDistributor training and predict_batch_udf scoring vs plain PyTorch.

Data: N synthetic CT-like planes (uint16, 64 x 64, a bright blob in the positive half) as a
medspark plane table in Parquet, with an index putting 80% in training and 20% in validation.
Both sides use the same network (SmallCNN), input transform, batch size, epochs and the same
total number of torch threads:

1. training (images/s of the epochs after the first; start-up printed apart):
   - plain: one process with `--threads` torch threads; the training images decoded and
     transformed once into a tensor, `DataLoader(shuffle=True)`, the usual loop;
   - medspark: `TorchDistributor(num_processes=P, local_mode=True)` running
     `medspark.deep.loop.run_training` (DDP over gloo; each process streams its own row groups,
     decodes every epoch, `--threads / P` torch threads);
2. scoring the same Parquet files with the trained model (images/s, warm):
   - plain: pyarrow `iter_batches` + `Scorer.predict` in one process with `--threads` threads;
   - medspark: `predict_batch_udf` over `spark.read.parquet` on local[P] (one torch thread per
     task, as Spark sets OMP_NUM_THREADS), written to the noop sink; a small warm-up table is
     scored first.

Targets: medspark / plain >= 0.8 for both. CPU seconds of the whole process tree are printed
too (steadier than wall time on a shared machine).

    .venv/bin/python benchmarks/deep.py --images 4000 --epochs 3 --processes 2 --threads 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu import tree_cpu_s  # noqa: E402

SIZE, WIDTHS, LR, SEED = 64, [16, 32, 64], 0.003, 0


def cpu_now() -> float:
    return sum(tree_cpu_s(os.getpid()))


def make_data(folder: Path, n: int, seed: int = SEED) -> tuple[list[str], str]:
    """Plane Parquet files (8) and the index (image_id, _y, _split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medspark.planes import encode_plane

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rows, labels = [], []
    for i in range(n):
        img = 1000 + rng.normal(0, 40, (SIZE, SIZE))
        label = i % 2
        if label:
            cy, cx = rng.integers(12, SIZE - 12, 2)
            img += 400 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
        rows.append({"image_id": f"im{i:06d}", **encode_plane(img.astype(np.uint16))})
        labels.append(label)
    folder.mkdir(parents=True, exist_ok=True)
    table, files, step = pa.Table.from_pylist(rows), [], -(-n // 8)
    for k in range(8):
        path = folder / f"part-{k}.parquet"
        pq.write_table(table.slice(k * step, step), path, row_group_size=256)
        files.append(str(path))
    split = np.where(np.random.default_rng(seed + 1).random(n) < 0.8, 0, 1)
    index = folder.parent / f"{folder.name}-index.parquet"
    pq.write_table(pa.table({"image_id": [r["image_id"] for r in rows],
                             "_y": np.asarray(labels, float), "_split": split}), index)
    return files, str(index)


def job(files: list[str], index: str, model_dir: Path, epochs: int, batch: int,
        threads: int):
    from medspark.deep.config import DeepSettings
    from medspark.deep.data import DataSpec, list_units
    from medspark.deep.infer import write_model_config
    from medspark.deep.loop import TrainJob

    cfg = DeepSettings(input_size=SIZE, cnn={"widths": WIDTHS}, optimizer={"lr": LR},
                       schedule={"name": "none"})
    arch = cfg.architecture(2)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_model_config(str(model_dir), {"architecture": arch, "transform": cfg.transform(),
                                        "objective": "classification", "labels": [0, 1]})
    spec = DataSpec("planes", list_units(files), cfg.transform(), index_path=index, seed=SEED)
    return TrainJob(arch, "classification", spec, str(model_dir), epochs, batch,
                    cfg.optimizer.model_dump(), cfg.schedule.model_dump(), seed=SEED,
                    patience=0, threads=threads, resume=False)


def plain_training(train_job, threads: int) -> dict:
    """The usual single-process loop over an in-memory tensor of the same training images."""
    import pyarrow.parquet as pq
    import torch

    from medspark.deep.nets import build_model
    from medspark.deep.transform import ImageTransform

    torch.set_num_threads(threads)
    start = time.perf_counter()
    index = pq.read_table(train_job.data.index_path).to_pandas().set_index("image_id")
    transform = ImageTransform.from_dict(train_job.data.transform)
    xs, ys = [], []
    for unit in train_job.data.units:
        for row in pq.ParquetFile(unit.path).read_row_group(unit.row_group).to_pylist():
            if index.at[row["image_id"], "_split"] == 0:
                xs.append(transform.row(row))
                ys.append(int(index.at[row["image_id"], "_y"]))
    data = torch.utils.data.TensorDataset(torch.from_numpy(np.stack(xs)), torch.tensor(ys))
    loader = torch.utils.data.DataLoader(data, batch_size=train_job.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(SEED))
    torch.manual_seed(SEED)
    model = build_model(train_job.architecture)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    setup_s = time.perf_counter() - start
    rates, cpu0 = [], cpu_now()
    for _ in range(train_job.epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        rates.append(len(data) / (time.perf_counter() - t0))
    return {"images_per_s": float(np.median(rates[1:] or rates)), "setup_s": setup_s,
            "wall_s": time.perf_counter() - start, "images": len(data),
            "cpu_ms_per_image": 1e3 * (cpu_now() - cpu0) / (len(data) * train_job.epochs)}


def medspark_training(spark, train_job, processes: int) -> dict:
    from pyspark.ml.torch.distributor import TorchDistributor

    from medspark.deep.loop import run_training

    start, cpu0 = time.perf_counter(), cpu_now()
    out = TorchDistributor(num_processes=processes, local_mode=True, use_gpu=False).run(
        run_training, train_job)
    wall = time.perf_counter() - start
    rates = [r["images_per_s"] for r in out["history"][1:] or out["history"]]
    epochs_s = sum(r["epoch_s"] for r in out["history"])
    images = sum(r["train_images"] for r in out["history"])
    return {"images_per_s": float(np.median(rates)), "wall_s": wall,
            "startup_s": wall - epochs_s, "cpu_s": cpu_now() - cpu0,
            "cpu_ms_per_image": 1e3 * (cpu_now() - cpu0) / images,
            "val_accuracy": out["history"][-1]["val_accuracy"]}


def plain_scoring(model_dir: str, files: list[str], threads: int) -> dict:
    import pyarrow.parquet as pq
    import torch

    from medspark.deep.infer import Scorer

    torch.set_num_threads(threads)
    scorer = Scorer.load(model_dir)
    start, cpu0, n = time.perf_counter(), cpu_now(), 0
    cols = ["height", "width", "channels", "dtype", "data"]
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=cols):
            arrays = [np.asarray(batch.column(c).to_pylist(), dtype=object) for c in cols]
            n += len(scorer.predict(*arrays)["score"])
    wall = time.perf_counter() - start
    return {"images_per_s": n / wall, "wall_s": wall, "cpu_s": cpu_now() - cpu0, "images": n}


def medspark_scoring(spark, model_dir: str, files: list[str], warm: list[str]) -> dict:
    from medspark.spark.deep_predict import model_config, score

    doc = model_config(model_dir)
    score(spark.read.parquet(*warm), model_dir, doc).write.format("noop").mode(
        "overwrite").save()
    frame = spark.read.parquet(*files)
    n = frame.count()
    start, cpu0 = time.perf_counter(), cpu_now()
    score(frame, model_dir, doc).write.format("noop").mode("overwrite").save()
    wall = time.perf_counter() - start
    return {"images_per_s": n / wall, "wall_s": wall, "cpu_s": cpu_now() - cpu0, "images": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2, help="TorchDistributor processes "
                        "and Spark local[P] cores")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all")
    parser.add_argument("--workdir", help="keep data here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medspark-bench-deep-"))
    try:
        from medspark.config import SparkSettings
        from medspark.session import build_session

        files, index = make_data(work / "planes", args.images)
        warm, _ = make_data(work / "warm", 256, seed=SEED + 7)
        print(f"data: {args.images} planes {SIZE}x{SIZE} uint16, SmallCNN widths {WIDTHS}, "
              f"batch {args.batch}, {args.epochs} epochs; {args.threads} torch thread(s) in "
              f"all; medspark: {args.processes} process(es)")
        spark = build_session(SparkSettings(
            master=f"local[{args.processes}]", log_level="ERROR",
            conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False}))
        threads_each = max(1, args.threads // args.processes)
        ms = medspark_training(spark, job(files, index, work / "ms", args.epochs, args.batch,
                                          threads_each), args.processes)
        pl = plain_training(job(files, index, work / "plain", args.epochs, args.batch,
                                args.threads), args.threads)
        print(f"training plain:    {pl['images_per_s']:8.1f} images/s ({pl['images']} training "
              f"images; decode + setup {pl['setup_s']:.1f}s, wall {pl['wall_s']:.1f}s; CPU "
              f"{pl['cpu_ms_per_image']:.2f} ms/image)")
        print(f"training medspark: {ms['images_per_s']:8.1f} images/s (TorchDistributor "
              f"start-up {ms['startup_s']:.1f}s apart, wall {ms['wall_s']:.1f}s; CPU "
              f"{ms['cpu_ms_per_image']:.2f} ms/image incl. start-up; validation accuracy "
              f"{ms['val_accuracy']:.3f})")
        print(f"ratio training images/s medspark/plain = "
              f"{ms['images_per_s'] / pl['images_per_s']:.2f} (target >= 0.8)")
        ps = plain_scoring(str(work / "ms"), files, args.threads)
        ss = medspark_scoring(spark, str(work / "ms"), files, warm)
        print(f"scoring plain:     {ps['images_per_s']:8.1f} images/s (wall {ps['wall_s']:.1f}s,"
              f" CPU {ps['cpu_s']:.1f}s)")
        print(f"scoring medspark:  {ss['images_per_s']:8.1f} images/s (predict_batch_udf, wall "
              f"{ss['wall_s']:.1f}s, CPU {ss['cpu_s']:.1f}s incl. the JVM)")
        print(f"ratio scoring images/s medspark/plain = "
              f"{ss['images_per_s'] / ps['images_per_s']:.2f} (target >= 0.8)")
        spark.stop()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
