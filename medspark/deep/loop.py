"""The per-rank training loop: what each TorchDistributor process runs (`run_training`).

One process per rank, started by torchrun (TorchDistributor) with RANK / WORLD_SIZE /
LOCAL_RANK / MASTER_ADDR / MASTER_PORT in its environment, or alone (world size 1).
- Distribution: DistributedDataParallel over gloo (CPU) or nccl (CUDA); each rank streams its
  own row groups (`medspark.deep.data`), so shards differ in size by up to a row group and
  DDP's `Join` lets a rank that runs out of batches shadow the others' all-reduces.
  `batch_size` is global: each rank takes batch_size // world_size rows per step, so one and
  several processes take comparable optimisation steps. Batch norm's running statistics are
  averaged over the ranks once per epoch (`average_buffers`), not broadcast from rank 0 before
  every step (DDP's default, one more collective per step). On a 2-core CPU, 2 gloo ranks
  of the benchmark's small CNN: +8-10% images/s in a bare 2-process loop, within run-to-run
  noise (+-8%) through TorchDistributor (`benchmarks/deep.py`).
- Reproducibility: weights from `seed`; at every epoch start the torch generator is re-seeded
  from (seed, epoch, rank) and the data order comes from the same tuple, so a run resumed from
  a checkpoint continues exactly as the uninterrupted run would have.
- Checkpoints: after every epoch rank 0 writes `checkpoints/epoch-NNNN.pt` (weights,
  optimiser, schedule, history, early-stopping state) atomically; a new run of the same model
  folder continues after the last one. The best epoch's weights go to `checkpoints/best.pt`.
- Early stopping: on the validation loss (all ranks reduce the same sums, so they agree).
- Output: `model.pt` (the best epoch's state dict) and `history.json` in the model folder;
  every rank returns the same summary (TorchDistributor hands back one rank's).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from medspark.deep.data import TRAIN, VALIDATION, DataSpec, ShardDataset
from medspark.deep.nets import build_model, count_parameters

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class TrainJob:
    """One training run, picklable: TorchDistributor ships it to every process."""

    architecture: dict[str, Any]
    objective: str  # classification | regression | reconstruction
    data: DataSpec
    model_dir: str
    epochs: int
    batch_size: int
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adamw", "lr": 1e-3})
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    seed: int = 0
    patience: int = 5
    min_delta: float = 0.0
    device: str = "auto"
    threads: int | None = None
    resume: bool = True
    keep_checkpoints: int = 1


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str | None


# ------------------------------------------------------------------------------ distribution
def pick_device(setting: str, local_rank: int = 0) -> torch.device:
    """cpu; cuda:<local rank mod GPUs> (auto when this process sees a GPU; cuda: required)."""
    if setting != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if setting == "cuda":
        raise RuntimeError("device: cuda, but this process sees no CUDA device")
    return torch.device("cpu")


def setup(setting: str, threads: int | None) -> Context:
    """Join the process group torchrun described (nccl on CUDA, gloo on CPU)."""
    if threads:
        torch.set_num_threads(int(threads))
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(setting, local_rank)
    backend = None
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Context(rank, world, local_rank, device, backend)


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if ctx.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.cpu().tolist()


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()


def average_buffers(model: nn.Module, ctx: Context) -> None:
    """Set every floating-point buffer (batch norm's running mean and variance) to its mean
    over the ranks, in one all-reduce, so every rank evaluates and checkpoints the same model.
    DDP runs with `broadcast_buffers=False` (its default broadcasts rank 0's buffers before
    every forward pass, a collective per step) and this runs once per epoch instead."""
    if ctx.world == 1:
        return
    bufs = [b for b in model.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.detach().reshape(-1).double() for b in bufs])
    if ctx.backend != "nccl":
        flat = flat.cpu()
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for b in bufs:
        n = b.numel()
        b.copy_(flat[offset:offset + n].view_as(b).to(b.device, b.dtype))
        offset += n


# --------------------------------------------------------------------------- optimisation
def make_optimizer(params, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = cfg.get("name", "adamw"), float(cfg["lr"]), float(cfg.get("weight_decay", 0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)),
                               weight_decay=wd)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=wd)


def make_schedule(opt: torch.optim.Optimizer, cfg: dict[str, Any], epochs: int):
    """Per-epoch schedule: linear warm-up, then constant / cosine to min_lr / step decay
    (a LambdaLR), or ReduceLROnPlateau on the validation loss."""
    name = cfg.get("name", "none")
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=float(cfg.get("gamma", 0.1)), patience=2)
    warm, base = int(cfg.get("warmup_epochs", 0)), opt.param_groups[0]["lr"]
    floor = float(cfg.get("min_lr", 0.0)) / base
    step, gamma = int(cfg.get("step_size", 10)), float(cfg.get("gamma", 0.1))

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        e = epoch - warm
        if name == "cosine":
            span = max(1, epochs - warm - 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e, span) / span))
        if name == "step":
            return gamma ** (e // step)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def compute_loss(model: nn.Module, batch: tuple[torch.Tensor, ...], objective: str,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean loss, outputs, targets) of one batch."""
    *inputs, y = (t.to(device, non_blocking=True) for t in batch)
    out = model(*inputs)
    if objective == "reconstruction":
        x = inputs[0]
        return nn.functional.mse_loss(out, x), out, y
    if objective == "regression":
        return nn.functional.mse_loss(out.squeeze(1), y.float()), out, y
    return nn.functional.cross_entropy(out, y.long()), out, y


@torch.no_grad()
def evaluate(model: nn.Module, loader, objective: str, ctx: Context) -> dict[str, float]:
    """Validation loss (and accuracy / RMSE) over every rank's rows."""
    model.eval()
    loss_sum = n = hits = 0.0
    for batch in loader:
        loss, out, y = compute_loss(model, batch, objective, ctx.device)
        k = len(y)
        loss_sum += float(loss) * k
        n += k
        if objective == "classification":
            hits += float((out.argmax(1) == y).sum())
    loss_sum, n, hits = all_sum([loss_sum, n, hits], ctx)
    if n == 0:
        raise ValueError("no validation rows: every rank's validation shard is empty")
    out = {"val_loss": loss_sum / n, "val_rows": int(n)}
    if objective == "classification":
        out["val_accuracy"] = hits / n
    elif objective == "regression":
        out["val_rmse"] = math.sqrt(loss_sum / n)
    return out


# ---------------------------------------------------------------------------- checkpoints
def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINTS)


def last_checkpoint(model_dir: str) -> str | None:
    """The newest `epoch-NNNN.pt` of a model folder, or None."""
    folder = checkpoint_dir(model_dir)
    names = sorted(n for n in os.listdir(folder) if n.startswith("epoch-")
                   and n.endswith(".pt")) if os.path.isdir(folder) else []
    return os.path.join(folder, names[-1]) if names else None


def save_atomic(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_checkpoint(job: TrainJob, state: dict[str, Any], epoch: int) -> str:
    folder = checkpoint_dir(job.model_dir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"epoch-{epoch:04d}.pt")
    save_atomic(state, path)
    old = sorted(n for n in os.listdir(folder) if n.startswith("epoch-") and n.endswith(".pt"))
    for name in old[:-job.keep_checkpoints]:
        os.remove(os.path.join(folder, name))
    return path


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------------------------- the run
def run_training(job: TrainJob,
                 on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
                 ) -> dict[str, Any]:
    """Train (or resume) one model on this rank; returns the run summary (same on all ranks)."""
    ctx = setup(job.device, job.threads)
    try:
        return _train(job, ctx, on_epoch_end)
    finally:
        if ctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _loader(ds: ShardDataset, ctx: Context):
    if ds.spec.loader_workers <= 0:
        return ds
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=ds.spec.loader_workers,
                                       pin_memory=ctx.device.type == "cuda")


def _train(job: TrainJob, ctx: Context, on_epoch_end) -> dict[str, Any]:
    per_rank = max(1, job.batch_size // ctx.world)
    train_ds = ShardDataset(job.data, TRAIN, per_rank, ctx.rank, ctx.world, train=True)
    val_ds = ShardDataset(job.data, VALIDATION, per_rank, ctx.rank, ctx.world)
    rows = all_sum([float(len(train_ds)), float(len(val_ds))], ctx)
    torch.manual_seed(job.seed)
    model = build_model(job.architecture).to(ctx.device)
    n_params = count_parameters(model)
    opt = make_optimizer(model.parameters(), job.optimizer)
    sched = make_schedule(opt, job.schedule, job.epochs)
    history: list[dict[str, Any]] = []
    best = {"val_loss": math.inf, "epoch": -1}
    bad_epochs, start, resumed_from, stopped = 0, 0, None, False
    path = last_checkpoint(job.model_dir) if job.resume else None
    if path:
        state = torch.load(path, map_location=ctx.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
        start = resumed_from = state["epoch"] + 1
        stopped = state["stopped"]
    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            broadcast_buffers=False)  # averaged once per epoch: average_buffers
    from torch.distributed.algorithms.join import Join

    best_path = os.path.join(checkpoint_dir(job.model_dir), "best.pt")
    for epoch in range(start, job.epochs):
        if stopped:
            break
        t0 = time.time()
        torch.manual_seed(epoch_seed(job.seed, epoch, ctx.rank))
        train_ds.set_epoch(epoch)
        net.train()
        loss_sum = seen = 0.0
        with Join([net]) if ctx.world > 1 else contextlib.nullcontext():
            for batch in _loader(train_ds, ctx):
                opt.zero_grad(set_to_none=True)
                loss, _, y = compute_loss(net, batch, job.objective, ctx.device)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(y)
                seen += len(y)
        average_buffers(model, ctx)
        loss_sum, seen = all_sum([loss_sum, seen], ctx)
        train_s = time.time() - t0
        record: dict[str, Any] = {
            "epoch": epoch, "lr": opt.param_groups[0]["lr"],
            "train_loss": loss_sum / seen if seen else float("nan"),
            "train_images": int(seen), "train_s": round(train_s, 3),
            "images_per_s": round(seen / train_s, 2) if train_s > 0 else None,
            **evaluate(model, _loader(val_ds, ctx), job.objective, ctx)}
        record["epoch_s"] = round(time.time() - t0, 3)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(record["val_loss"])
        else:
            sched.step()
        improved = record["val_loss"] < best["val_loss"] - job.min_delta
        if improved:
            best, bad_epochs = {"val_loss": record["val_loss"], "epoch": epoch}, 0
        else:
            bad_epochs += 1
        stopped = job.patience > 0 and bad_epochs >= job.patience
        history.append(record)
        if ctx.rank == 0:
            os.makedirs(checkpoint_dir(job.model_dir), exist_ok=True)
            if improved:
                save_atomic(model.state_dict(), best_path)
            write_checkpoint(job, {"epoch": epoch, "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                                   "history": history, "best": best, "bad_epochs": bad_epochs,
                                   "stopped": stopped, "world_size": ctx.world}, epoch)
        barrier(ctx)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    if ctx.rank == 0:
        weights = torch.load(best_path, map_location="cpu", weights_only=True)
        save_atomic(weights, os.path.join(job.model_dir, MODEL_FILE))
        with open(os.path.join(job.model_dir, HISTORY_FILE), "w") as fh:
            json.dump(history, fh, indent=2)
    barrier(ctx)
    rates = [r["images_per_s"] for r in history if r.get("images_per_s")]
    return {"history": history, "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            "epochs_run": len(history), "stopped_early": bool(stopped),
            "resumed_from": resumed_from, "world_size": ctx.world, "device": str(ctx.device),
            "backend": ctx.backend, "threads": torch.get_num_threads(),
            "rows": {"train": int(rows[0]), "validation": int(rows[1])},
            "parameters": n_params,
            "images_per_s_median": float(np.median(rates)) if rates else None}


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of one rank's epoch (dropout), independent of where the run started."""
    return (int(seed) * 1_000_003 + epoch * 1_009 + rank) % (2**63)
