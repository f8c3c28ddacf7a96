"""The per-rank training loop without Spark: a training process killed after an epoch resumes
from its checkpoint and ends exactly where an uninterrupted run ends; 2-process DDP (torchrun,
gloo) reaches the 1-process validation accuracy within 0.05."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from deep_helpers import digits_job, digits_rows  # noqa: E402

from medspark.deep.loop import (  # noqa: E402
    MODEL_FILE,
    Context,
    average_buffers,
    last_checkpoint,
    run_training,
)

EPOCHS = 4
DDP_TOLERANCE = 0.05  # |validation accuracy, 2 processes - 1 process| at the best epoch

SCRIPT = textwrap.dedent("""
    import json, pickle, sys
    from medspark.deep.loop import run_training
    job = pickle.load(open(sys.argv[1], "rb"))
    pause_after = int(sys.argv[2])
    def hold(epoch, record):
        if epoch == pause_after:
            print(f"CHECKPOINTED {epoch}", flush=True)
            sys.stdin.readline()  # blocks: the test kills this process here
    out = run_training(job, on_epoch_end=hold)
    if len(sys.argv) > 3 and out["world_size"] == 1 or len(sys.argv) > 3 and \\
            __import__("os").environ.get("RANK") == "0":
        json.dump(out, open(sys.argv[3], "w"))
""")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep-loop")
    script = root / "train_job.py"
    script.write_text(SCRIPT)
    return root, str(script)


@pytest.fixture(scope="module")
def reference(work):
    """One uninterrupted single-process run in this process."""
    root, _ = work
    job = digits_job(str(root / "data-ref"), str(root / "ref"), epochs=EPOCHS)
    return job, run_training(job)


def _job_file(root, name: str, **kw) -> tuple[str, object]:
    job = digits_job(str(root / f"data-{name}"), str(root / name), epochs=EPOCHS, **kw)
    path = root / f"{name}.pkl"
    path.write_bytes(pickle.dumps(job))
    return str(path), job


def test_killed_training_resumes_from_its_checkpoint(work, reference):
    root, script = work
    ref_job, ref = reference
    path, job = _job_file(root, "killed")
    proc = subprocess.Popen([sys.executable, script, path, "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("CHECKPOINTED 1"):
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert os.path.basename(last_checkpoint(job.model_dir)) == "epoch-0001.pt"
    assert not os.path.exists(os.path.join(job.model_dir, MODEL_FILE))

    out_json = root / "resumed.json"
    subprocess.run([sys.executable, script, path, "-1", str(out_json)], check=True,
                   timeout=300)
    resumed = json.loads(out_json.read_text())
    assert resumed["resumed_from"] == 2 and resumed["epochs_run"] == EPOCHS
    for a, b in zip(resumed["history"], ref["history"], strict=True):
        assert a["epoch"] == b["epoch"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    got = torch.load(os.path.join(job.model_dir, MODEL_FILE), weights_only=True)
    want = torch.load(os.path.join(ref_job.model_dir, MODEL_FILE), weights_only=True)
    assert got.keys() == want.keys()
    assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-6) for k in got)


def test_two_process_ddp_matches_one_process(work, reference):
    root, script = work
    _, ref = reference
    path, _ = _job_file(root, "ddp")
    out_json = root / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nnodes=1", "--nproc_per_node=2", script, path, "-1", str(out_json)],
                   check=True, timeout=300, env=env)
    ddp = json.loads(out_json.read_text())
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["rows"] == ref["rows"]  # the two shards together hold every row once
    best = {k: r["history"][r["best_epoch"]]["val_accuracy"] for k, r in (("one", ref),
                                                                          ("two", ddp))}
    assert best["one"] >= 0.9, best
    assert abs(best["two"] - best["one"]) <= DDP_TOLERANCE, best


def test_regression_objective(tmp_path):
    """A regression head (the digit's value, sd ~2.9) trains and scores: its validation RMSE
    ends below the targets' standard deviation (better than predicting the mean), and the
    score equals the prediction."""
    import dataclasses

    import numpy as np

    from medspark.deep.infer import Scorer, write_model_config

    job = digits_job(str(tmp_path / "data"), str(tmp_path / "m"), epochs=4, limit=600)
    arch = {**job.architecture, "n_outputs": 1}
    job = dataclasses.replace(job, architecture=arch, objective="regression",
                              data=dataclasses.replace(job.data, target_dtype="float32"))
    write_model_config(job.model_dir, {"architecture": arch, "transform": job.data.transform,
                                       "objective": "regression", "labels": None})
    out = run_training(job)
    assert all("val_rmse" in r and "val_accuracy" not in r for r in out["history"])
    rows, y = digits_rows(600)
    assert out["history"][-1]["val_rmse"] < float(np.std(y))
    rows = rows[:5]
    cols = [np.array([r[c] for r in rows], dtype=object)
            for c in ("height", "width", "channels", "dtype", "data")]
    pred = Scorer.load(job.model_dir).predict(*cols)
    assert pred["probability"].shape == (5, 0)
    assert np.array_equal(pred["score"], pred["prediction"])


def _average_on_rank(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        bn = torch.nn.BatchNorm2d(3)
        bn.running_mean.fill_(float(rank * 4))  # rank 0: 0, rank 1: 4
        bn.running_var.fill_(float(1 + rank * 2))  # 1, 3
        bn.num_batches_tracked.fill_(10 + rank)
        average_buffers(bn, Context(rank, 2, rank, torch.device("cpu"), "gloo"))
        queue.put((rank, bn.running_mean.tolist(), bn.running_var.tolist(),
                   int(bn.num_batches_tracked)))
    finally:
        dist.destroy_process_group()


def test_batch_norm_statistics_are_averaged_over_the_ranks():
    """DDP runs without its per-step broadcast of rank 0's buffers; once per epoch every rank
    takes the mean of the ranks' running statistics instead, so all ranks evaluate and
    checkpoint one model. Integer buffers (batches seen) are left alone."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_average_on_rank, args=(r, port, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict((r, rest) for r, *rest in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    for rank, (mean, var, tracked) in got.items():
        assert mean == [2.0] * 3 and var == [2.0] * 3
        assert tracked == 10 + rank
    single = torch.nn.BatchNorm2d(3)
    single.running_mean.fill_(5.0)
    average_buffers(single, Context(0, 1, 0, torch.device("cpu"), None))  # one process: as is
    assert single.running_mean.tolist() == [5.0] * 3
