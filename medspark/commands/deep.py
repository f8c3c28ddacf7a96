"""`medspark deep train|embed`: deep learning on the lake's pixels (PyTorch through Spark).

    medspark deep train --lake DIR [--arch cnn|resnet18|autoencoder|gru] [--label COL]
                        [--task classification|regression] [--source preprocessed|pixels]
                        [--group-col COL] [--config FILE] [--set k=v ...]   # -> models/<id>/
    medspark deep embed --lake DIR --model ID|PATH|latest    # -> features/feature_set=deep-<id>/

`medspark.cli` wires the command in with `add_parser(subparsers)` and calls `run(args)`;
`main(argv)` runs it on its own (the spark-submit shims `jobs/deep_*.py` use it). Settings,
the model folder and the torch installation are checked before Spark starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from medspark.config import ConfigError, load_settings
from medspark.deep import INSTALL_HINT, torch_available
from medspark.deep.config import ARCHS

log = logging.getLogger("medspark")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `deep` (with `train` and `embed`) to a `medspark` subparsers object."""
    from medspark.cli import _common

    deep = subparsers.add_parser(
        "deep", help="deep learning: train a CNN / ResNet-18 / autoencoder / GRU on the "
                     "lake's pixels (TorchDistributor), embed images as a feature set")
    sub = deep.add_subparsers(dest="deep_command", required=True)
    train = sub.add_parser("train", help="train and evaluate a deep model into models/<id>/")
    train.add_argument("--lake", required=True, help="lake root directory")
    train.add_argument("--arch", choices=ARCHS, help="network (default: deep.arch)")
    train.add_argument("--label", help="label column (default: deep.label, else train.label)")
    train.add_argument("--task", choices=["classification", "regression"])
    train.add_argument("--source", choices=["preprocessed", "pixels"],
                       help="preprocessed/ of the imaging config (default) or pixels/")
    train.add_argument("--group-col", help="patient column (default: train.group_col)")
    _common(train)
    embed = sub.add_parser("embed", help="embed every image with a deep model into "
                                         "features/feature_set=deep-<model id>/")
    embed.add_argument("--lake", required=True, help="lake root directory")
    embed.add_argument("--model", required=True, help="deep model id, folder or 'latest'")
    _common(embed)
    return deep


def run(args: argparse.Namespace) -> int:
    """Run `deep train` / `deep embed`; 2 (with how to install it) when torch is missing."""
    if not torch_available():
        print(f"medspark deep: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from medspark.cli import _spark_conf
    from medspark.session import build_session

    settings = load_settings(args.config, args.overrides)
    conf = _spark_conf(args.spark_conf)
    if args.deep_command == "train":
        from medspark.spark.deep_train import deep_settings, run_deep_train

        cfg = deep_settings(settings, arch=args.arch, task=args.task, source=args.source,
                            label=args.label)
        check_device(cfg.device, cfg.local_mode)
        spark = build_session(settings.spark, master=args.master, conf=conf, python_bound=True)
        manifest = run_deep_train(spark, settings, args.lake, arch=args.arch, label=args.label,
                                  task=args.task, source=args.source, group_col=args.group_col)
    else:
        from medspark.lake import Lake
        from medspark.spark.deep_embed import resolve_model, run_deep_embed

        model_dir = resolve_model(Lake(args.lake), args.model)
        spark = build_session(settings.spark, master=args.master, conf=conf, python_bound=True)
        manifest = run_deep_embed(spark, settings, args.lake, model_dir)
    print(json.dumps(manifest, indent=2, default=str) if args.json else summary(manifest))
    return 0


def check_device(device: str, local_mode: bool) -> None:
    """device: cuda on a driver without CUDA fails here (local mode), not in the processes."""
    if device == "cuda" and local_mode:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("deep.device: cuda, but torch sees no CUDA device here "
                              "(use auto or cpu)")


def summary(manifest: dict) -> str:
    """Human summary of a deep train / embed run."""
    from medspark.cli import _metric_line, manifest_lines

    lines = [f"{manifest['job']} run {manifest['run_id']} ({manifest['spark']['master']}) in "
             f"{manifest['duration_s']:.1f}s", f"  model                {manifest['model_id']}"]
    if manifest["job"] == "deep-train":
        t = manifest["training"]
        lines.append(f"  training             {t['epochs_run']} epoch(s) on {t['world_size']} "
                     f"process(es), {t['device']}, best epoch {t['best_epoch']}"
                     + (" (stopped early)" if t["stopped_early"] else "")
                     + (f", resumed after epoch {t['resumed_from'] - 1}"
                        if t.get("resumed_from") else ""))
        for r in manifest["history"]:
            metric = next((f"{k[4:]} {r[k]:.4f}" for k in ("val_accuracy", "val_rmse")
                           if k in r), "")
            lines.append(f"    epoch {r['epoch']:>3}  loss {r['train_loss']:.4f}  "
                         f"val loss {r['val_loss']:.4f}  {metric}  "
                         f"{r.get('images_per_s') or 0:.0f} img/s")
        lines.append("  held-out test metrics (patient-grouped, bootstrap 95% CI):")
        with open(f"{manifest['outputs']['model']}/metrics.json") as fh:
            test = json.load(fh)["test"]
        lines += [_metric_line(k, v) for k, v in test.items()
                  if isinstance(v, dict) and isinstance(v.get("value"), int | float)]
    return "\n".join(lines + manifest_lines(manifest))


def main(argv: Sequence[str] | None = None) -> int:
    """`medspark deep ...` on its own: argv starts with `train` or `embed`."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="medspark")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["deep", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except ConfigError as e:
        print(f"medspark deep {args.deep_command}: configuration error:\n{e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
