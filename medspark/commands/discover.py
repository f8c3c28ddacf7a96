"""`medspark discover`: clusters, rules, feature tests, trends, drift and outliers of a lake's
features (or any Parquet table) into `discoveries/` (docs/discover.md).

    medspark discover --lake DIR [--date D ...] [--label COL] [--config FILE] [--set k=v ...]
    medspark discover --lake DIR --table PATH --id-col C [--group-col C] [--label COL]
                      [--date-col C] [--batch-col C]

`medspark.cli` wires the command in with `add_parser(subparsers)` and calls `run(args)`.
Settings, the input and every column they name are checked before Spark starts (exit code 2).
"""

from __future__ import annotations

import argparse
import json

from medspark.config import ConfigError, Settings, load_settings


def add_parser(subparsers) -> None:
    """Add `discover` to a `medspark` subparsers object."""
    from medspark.cli import _common, _date

    p = subparsers.add_parser(
        "discover", help="knowledge discovery over features/ (or --table): clusters, "
                         "association rules, feature tests, trends, drift, outliers "
                         "-> discoveries/")
    p.add_argument("--lake", required=True, help="lake root (input features/, output "
                                                 "discoveries/ and _runs/)")
    p.add_argument("--date", dest="dates", action="append", default=[], type=_date,
                   help="the batch whose drift is tested (ingest_date, YYYY-MM-DD; "
                        "repeatable); later rows are left out. Default: the newest batch")
    p.add_argument("--label", help="label column (default: discover.label)")
    p.add_argument("--table", help="analyse this Parquet table instead of features/")
    p.add_argument("--id-col", help="row id column (default: discover.id_col)")
    p.add_argument("--group-col", help="patient/grouping column (default: discover.group_col)")
    p.add_argument("--date-col", help="date column of the trends (default: discover.date_col)")
    p.add_argument("--batch-col", help="batch column of the drift (default: "
                                       "discover.batch_col)")
    _common(p)


def overrides(args: argparse.Namespace) -> list[str]:
    """The command-line columns as `--set discover.*` overrides (after the user's own)."""
    out = list(args.overrides)
    for flag, key in (("label", "label"), ("id_col", "id_col"), ("group_col", "group_col"),
                      ("date_col", "date_col"), ("batch_col", "batch_col")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"discover.{key}={json.dumps(value)}")
    return out


def prepare(args: argparse.Namespace) -> tuple[Settings, object]:
    """Settings and the validated request (raises ConfigError; no Spark)."""
    from medspark.discover.request import DiscoverRequest

    if args.table and not args.id_col:
        raise ConfigError("--table needs --id-col (the column that identifies a row)")
    settings = load_settings(args.config, overrides(args))
    request = DiscoverRequest(lake=args.lake, table=args.table, dates=list(args.dates))
    request.validate(settings.discover)
    return settings, request


def run(args: argparse.Namespace) -> int:
    """Validate, build the session, run the job, print its headlines (or the manifest)."""
    from medspark.cli import _spark_conf

    settings, request = prepare(args)
    conf = _spark_conf(args.spark_conf)

    from medspark.session import build_session
    from medspark.spark.discover import run_discover

    spark = build_session(settings.spark, master=args.master, conf=conf)
    manifest = run_discover(spark, settings, request)
    print(json.dumps(manifest, indent=2, default=str) if args.json else summary(manifest))
    return 0


def summary(manifest: dict) -> str:
    """Human summary of a discover run: headlines, skipped analyses, outputs."""
    lines = [f"discover run {manifest['run_id']} ({manifest['spark']['master']}) on "
             f"{manifest['input']} in {manifest['duration_s']:.1f}s"]
    lines += [f"  {h}" for h in manifest.get("headlines", [])]
    for name, why in (manifest.get("skipped") or {}).items():
        lines.append(f"  skipped {name}: {why}")
    for name, out in (manifest.get("outputs") or {}).items():
        where = out["table"] if isinstance(out, dict) else out
        lines.append(f"  {name:<22} {where}")
    lines.append(f"  {'manifest':<22} {manifest['manifest_path']}")
    return "\n".join(lines)
