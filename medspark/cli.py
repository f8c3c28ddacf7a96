"""`medspark <job> ...`: the command line; `jobs/*.py` are spark-submit shims over `main`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from medspark.config import ConfigError, load_settings

log = logging.getLogger("medspark")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML settings file (default conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a setting: ingest.files_per_task=8")
    parser.add_argument("--master", help="Spark master URL (spark-submit's --master wins)")
    parser.add_argument("--conf", dest="spark_conf", action="append", default=[],
                        metavar="KEY=VALUE", help="extra Spark setting, repeatable")
    parser.add_argument("--json", action="store_true", help="print the run manifest as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medspark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sample = sub.add_parser("sample", help="write the synthetic sample dataset")
    sample.add_argument("--output", required=True)
    sample.add_argument("--patients", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--nights", type=int, default=0,
                        help="also split the images into N nights of arrivals under "
                             "<output>/nights/<k>/ (later nights bring new patients)")

    ingest = sub.add_parser("ingest", help="ingest image files into the lake")
    ingest.add_argument("--input", dest="inputs", action="append", default=[],
                        help="directory (recursive), glob, file or URI; repeatable")
    ingest.add_argument("--input-list", dest="input_lists", action="append", default=[],
                        help="text file listing one path per line; repeatable")
    ingest.add_argument("--lake", required=True, help="lake root directory or URI")
    labels = ingest.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="CSV/Parquet of labels (see README for key columns)")
    labels.add_argument("--label-from-path", help="regex with one group over the source path")
    _common(ingest)

    masks = sub.add_parser("masks", help="rasterise cataloged RTSTRUCTs (or label images "
                                         "with --label-images) into masks/")
    masks.add_argument("--lake", required=True, help="lake root directory or URI")
    masks.add_argument("--label-images", help="folder of NIfTI/PNG label images to join")
    masks.add_argument("--source", default="labels", help="masks/source=<name> (label images)")
    masks.add_argument("--rewrite", nargs=2, metavar=("REGEX", "REPLACEMENT"),
                       default=[r"^(.*)$", r"\1"],
                       help="label path (relative) -> image source_relpath, e.g. "
                            "'_seg(\\.nii\\.gz)$' '\\1'")
    masks.add_argument("--date", dest="dates", action="append", default=[], type=_date,
                       help="also re-rasterise structure sets whose study got planes on this "
                            "ingest_date (YYYY-MM-DD); repeatable")
    _common(masks)

    train = sub.add_parser("train", help="train, select and evaluate a model into models/<id>/")
    train.add_argument("--lake", required=True, help="lake root (models/ and _runs/ go here)")
    train.add_argument("--label", help="label column (default: train.label)")
    train.add_argument("--task", choices=["classification", "regression", "clustering"])
    train.add_argument("--table", help="train on this Parquet table instead of features/")
    train.add_argument("--id-col", help="row id column (default: train.id_col)")
    train.add_argument("--group-col", help="patient/grouping column (default: train.group_col)")
    train.add_argument("--as-of", metavar="VERSION|TIMESTAMP",
                       help="train on this version of the features table (a Delta version "
                            "number or an ISO timestamp), e.g. to reproduce a model")
    train.add_argument("--select", metavar="ALGO[,ALGO...]",
                       help="choose among these algorithms (default parameters) instead of "
                            "train.selection.candidates: MLlib names or scikit-learn import "
                            "paths, e.g. LogisticRegression,"
                            "sklearn.ensemble.HistGradientBoostingClassifier")
    _common(train)

    predict = sub.add_parser("predict", help="score features/ (or --table) with a model")
    predict.add_argument("--lake", required=True, help="lake root directory")
    predict.add_argument("--model", required=True,
                         help="model id under models/, a path, or 'latest'")
    predict.add_argument("--table", help="score this Parquet table instead of features/")
    predict.add_argument("--date", dest="dates", action="append", default=[], type=_date,
                         help="only features of this ingest_date (YYYY-MM-DD); repeatable")
    _common(predict)

    for name, text in (("preprocess", "segment + preprocess ingested planes into "
                                      "preprocessed/ and masks/"),
                       ("features", "radiomics features per plane into features/")):
        job = sub.add_parser(name, help=text)
        job.add_argument("--lake", required=True, help="lake root directory or URI")
        job.add_argument("--date", dest="dates", action="append", default=[],
                         type=_date, help="only this ingest_date (YYYY-MM-DD); repeatable")
        _common(job)
    for module in command_modules():
        module.add_parser(sub)
    return parser


# commands that live in their own module (`add_parser(subparsers)`, `run(args) -> int`)
COMMAND_MODULES = ("lake", "nightly", "discover", "deep", "config")


def command_modules() -> list:
    import importlib

    return [importlib.import_module(f"medspark.commands.{name}") for name in COMMAND_MODULES]


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _spark_conf(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--conf {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def _cmd_sample(args: argparse.Namespace) -> int:
    from medspark.sample import generate_sample

    start = time.time()
    summary = generate_sample(args.output, patients=args.patients, seed=args.seed)
    if args.nights:
        from medspark.sample import split_nights

        summary["nights"] = [str(p) for p in split_nights(args.output, args.nights)]
    print(f"sample written to {args.output} in {time.time() - start:.1f}s")
    print(summary)
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from medspark.spark.ingest import IngestRequest, run_ingest

    settings = load_settings(args.config, args.overrides)
    conf = _spark_conf(args.spark_conf)
    request = IngestRequest(inputs=args.inputs, lake=args.lake, input_lists=args.input_lists,
                            labels=args.labels, label_from_path=args.label_from_path)
    key = request.validate(settings)  # every config error surfaces before Spark starts

    from medspark.session import build_session

    t0 = time.time()
    spark = build_session(settings.spark, master=args.master, conf=conf, python_bound=True)
    jvm_start = time.time() - t0
    manifest = run_ingest(spark, settings, request, key)
    manifest["jvm_start_s"] = round(jvm_start, 3)
    if args.json:
        print(json.dumps(manifest, indent=2, default=str))
    else:
        print(ingest_summary(manifest))
    return 0 if manifest["counts"]["all_files_accounted"] else 1


def ingest_summary(manifest: dict) -> str:
    """Human summary of an ingest run."""
    c = manifest["counts"]
    lines = [
        f"ingest run {manifest['run_id']} ({manifest['spark']['master']})",
        f"  files listed         {c['files_listed']}"
        f" ({c['files_skipped_already_ingested']} already ingested, skipped)",
        f"  image files          {c['image_files']} -> {c['rows']['catalog']} catalog rows, "
        f"{c['rows']['pixels']} pixel planes",
        f"  non-image objects    {c['non_image_objects']}",
        f"  quarantined          {c['files_quarantined']} {c['quarantined_by_class'] or ''}",
        f"  labelled rows        {c['labelled_catalog_rows']}",
        f"  every file accounted {c['all_files_accounted']}",
        f"  time                 {manifest['duration_s']:.1f}s"
        + (f" (+{manifest['jvm_start_s']:.1f}s JVM start)" if "jvm_start_s" in manifest else ""),
    ]
    lines += [f"  {name:<20} {out['table']} (version {out.get('version')}, "
              f"{out.get('rows', 0)} rows added)" for name, out in manifest["outputs"].items()]
    lines.append(f"  manifest             {manifest['manifest_path']}")
    return "\n".join(lines)


def _cmd_imaging(args: argparse.Namespace) -> int:
    from medspark.session import build_session
    from medspark.spark import imaging

    settings = load_settings(args.config, args.overrides)  # validates every step up front
    spark = build_session(settings.spark, master=args.master, conf=_spark_conf(args.spark_conf),
                          python_bound=True)
    run = imaging.run_preprocess if args.command == "preprocess" else imaging.run_features
    manifest = run(spark, settings, args.lake, args.dates or None)
    if args.json:
        print(json.dumps(manifest, indent=2, default=str))
    else:
        print(f"{args.command} run {manifest['run_id']} ({manifest['spark']['master']}) "
              f"in {manifest['duration_s']:.1f}s")
        for key, value in manifest["counts"].items():
            print(f"  {key:<20} {value}")
        for key, value in manifest["outputs"].items():
            print(f"  {key:<20} {value}")
        print(f"  {'manifest':<20} {manifest['manifest_path']}")
    return 0


def _cmd_masks(args: argparse.Namespace) -> int:
    from medspark.privacy.pseudonym import resolve_key
    from medspark.session import build_session
    from medspark.spark.masks import run_label_masks, run_masks

    settings = load_settings(args.config, args.overrides)
    key = b""
    if not args.label_images:
        try:  # the referenced UIDs are matched through the same HMAC as the catalog's
            key = resolve_key(settings.privacy.allow_demo_key)
        except RuntimeError as e:
            raise ConfigError(str(e)) from None
    spark = build_session(settings.spark, master=args.master, conf=_spark_conf(args.spark_conf),
                          python_bound=True)
    if args.label_images:
        manifest = run_label_masks(spark, settings, args.lake, args.label_images, args.source,
                                   *args.rewrite)
    else:
        manifest = run_masks(spark, settings, args.lake, key, args.dates or None)
    print(json.dumps(manifest, indent=2, default=str) if args.json else
          f"masks run {manifest['run_id']}: {manifest['counts']}\n"
          + "".join(f"  {name} {out['table']} (version {out.get('version')}, "
                    f"{out.get('rows', 0)} rows added)\n"
                    for name, out in manifest["outputs"].items())
          + f"  manifest {manifest['manifest_path']}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from medspark.session import build_session

    overrides = list(args.overrides)
    if args.command == "train" and args.select:
        overrides.append(select_override(args.select))
    settings = load_settings(args.config, overrides)  # an unknown algorithm stops here
    if args.command == "train":  # columns and settings checked on the schema, before Spark
        from medspark.spark.train import preflight

        preflight(settings, args.lake, args.table, as_of=args.as_of, label=args.label,
                  task=args.task, id_col=args.id_col, group_col=args.group_col)
    spark = build_session(settings.spark, master=args.master, conf=_spark_conf(args.spark_conf))
    if args.command == "train":
        from medspark.spark.train import run_train

        manifest = run_train(spark, settings, args.lake, table=args.table, label=args.label,
                             task=args.task, id_col=args.id_col, group_col=args.group_col,
                             as_of=args.as_of)
    else:
        from medspark.spark.predict import run_predict

        manifest = run_predict(spark, settings, args.lake, _model_arg(args.lake, args.model),
                               table=args.table, dates=args.dates or None)
    if args.json:
        print(json.dumps(manifest, indent=2, default=str))
    else:
        print(model_summary(manifest))
    return 0


def select_override(select: str) -> str:
    """`--select A,B` as a `--set` override of train.selection.candidates (default params)."""
    names = [n.strip() for n in select.split(",") if n.strip()]
    if not names:
        raise ConfigError("--select: no algorithm named")
    return "train.selection.candidates=[" + ", ".join(
        f"{{algorithm: {json.dumps(n)}}}" for n in names) + "]"


def _model_arg(lake: str, model: str) -> str:
    """`latest` -> the most recently trained model under <lake>/models/; else unchanged."""
    if model != "latest":
        return model
    root = Path(lake) / "models"
    dirs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if not dirs:
        raise ConfigError(f"--model latest: no model under {root}; run `medspark train` first")
    return max(dirs, key=lambda p: p.stat().st_mtime).name


def _metric_line(name: str, m: dict) -> str:
    ci = (f" (95% CI {m['ci_low']:.3f}-{m['ci_high']:.3f})"
          if m.get("ci_low") is not None and m.get("ci_high") is not None else "")
    value = m.get("value")
    return f"    {name:<20} {value:.3f}{ci}" if isinstance(value, int | float) else \
        f"    {name:<20} {value}"


def model_summary(manifest: dict) -> str:
    """Human summary of a train or predict run: leaderboard, test metrics with CIs, outputs."""
    lines = [f"{manifest['job']} run {manifest['run_id']} ({manifest['spark']['master']}) in "
             f"{manifest['duration_s']:.1f}s"]
    model_dir = (manifest.get("outputs") or {}).get("model")
    if manifest["job"] == "train" and model_dir:
        import pandas as pd

        board = pd.read_parquet(f"{model_dir}/leaderboard.parquet")
        with open(f"{model_dir}/metrics.json") as fh:
            doc = json.load(fh)
        lines.append(f"  model                {manifest['model_id']}")
        lines.append(f"  leaderboard ({doc['selection']['metric']}, {doc['selection']['folds']}"
                     "-fold CV grouped by patient):")
        cols = [c for c in ("algorithm", "kind", "params", "mean", "sd", "error")
                if c in board.columns and not (c == "error" and board[c].isna().all())]
        lines += ["    " + line for line in board[cols].to_string(index=False).splitlines()]
        lines.append(f"  best                 {doc['algorithm']} {doc['params']}")
        lines.append("  held-out test metrics (patient-grouped, bootstrap 95% CI):")
        lines += [_metric_line(k, v) for k, v in doc["test"].items()
                  if isinstance(v, dict) and "value" in v]
    return "\n".join(lines + manifest_lines(manifest))


def manifest_lines(manifest: dict) -> list[str]:
    """A job's counts, outputs and manifest path, one aligned line each (the end of a
    summary)."""
    lines = [f"  {key:<20} {value}" for key, value in (manifest.get("counts") or {}).items()]
    lines += [f"  {key:<20} {value}" for key, value in (manifest.get("outputs") or {}).items()]
    return [*lines, f"  {'manifest':<20} {manifest['manifest_path']}"]


COMMANDS = {"sample": _cmd_sample, "ingest": _cmd_ingest, "masks": _cmd_masks,
            "preprocess": _cmd_imaging, "features": _cmd_imaging, "train": _cmd_models,
            "predict": _cmd_models}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    handlers = {**COMMANDS, **{m.__name__.rsplit(".", 1)[1]: m.run
                               for m in command_modules()}}
    try:
        return handlers[args.command](args)
    except ConfigError as e:
        print(f"medspark {args.command}: configuration error:\n{e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
