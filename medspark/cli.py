"""`medspark <job> ...`: the command line; `jobs/*.py` are spark-submit shims over `main`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence

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
    _common(masks)

    for name, text in (("preprocess", "segment + preprocess ingested planes into "
                                      "preprocessed/ and masks/"),
                       ("features", "radiomics features per plane into features/")):
        job = sub.add_parser(name, help=text)
        job.add_argument("--lake", required=True, help="lake root directory or URI")
        job.add_argument("--date", dest="dates", action="append", default=[],
                         type=_date, help="only this ingest_date (YYYY-MM-DD); repeatable")
        _common(job)
    return parser


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
    spark = build_session(settings.spark, master=args.master, conf=conf)
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
    lines += [f"  {name:<20} {path}" for name, path in manifest["outputs"].items()]
    lines.append(f"  manifest             {manifest['manifest_path']}")
    return "\n".join(lines)


def _cmd_imaging(args: argparse.Namespace) -> int:
    from medspark.session import build_session
    from medspark.spark import imaging

    settings = load_settings(args.config, args.overrides)  # validates every step up front
    spark = build_session(settings.spark, master=args.master, conf=_spark_conf(args.spark_conf))
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
    spark = build_session(settings.spark, master=args.master, conf=_spark_conf(args.spark_conf))
    if args.label_images:
        manifest = run_label_masks(spark, settings, args.lake, args.label_images, args.source,
                                   *args.rewrite)
    else:
        manifest = run_masks(spark, settings, args.lake, key)
    print(json.dumps(manifest, indent=2, default=str) if args.json else
          f"masks run {manifest['run_id']}: {manifest['counts']}\n"
          f"  masks {manifest['outputs']['masks']}\n  manifest {manifest['manifest_path']}")
    return 0


COMMANDS = {"sample": _cmd_sample, "ingest": _cmd_ingest, "masks": _cmd_masks,
            "preprocess": _cmd_imaging, "features": _cmd_imaging}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"medspark {args.command}: configuration error:\n{e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
