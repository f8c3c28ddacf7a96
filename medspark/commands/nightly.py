"""`medspark nightly`: the scheduled nightly batch (see medspark.spark.nightly).

    medspark nightly --input URI [--input URI ...] --lake DIR [--date YYYY-MM-DD]
                     [--model ID|latest|none] [--labels FILE | --label-from-path REGEX]
                     [--input-list FILE] [--config FILE] [--set k=v ...] [--master URL]
                     [--json-log]

Exit codes: 0 every stage ok; 1 finished, but something needs a person (files unaccounted, a
stage failed, images that failed a step); 2 configuration error (before Spark starts); 3
another run holds the lake's lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    from medspark.cli import _common, _date

    p = subparsers.add_parser("nightly", help="the nightly batch: ingest -> masks -> "
                                              "preprocess -> features -> predict -> discover "
                                              "-> morning report")
    p.add_argument("--input", dest="inputs", action="append", default=[],
                   help="directory (recursive), glob, file or URI; repeatable")
    p.add_argument("--input-list", dest="input_lists", action="append", default=[],
                   help="text file listing one path per line; repeatable")
    p.add_argument("--lake", required=True, help="lake root directory")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="CSV/Parquet of labels (see README for key columns)")
    labels.add_argument("--label-from-path", help="regex with one group over the source path")
    p.add_argument("--date", type=_date, help="the night (YYYY-MM-DD); default: today (UTC)")
    p.add_argument("--model", default="latest",
                   help="model id or folder to score with, 'latest' (the newest model, "
                        "skipped when there is none) or 'none'")
    p.add_argument("--json-log", action="store_true",
                   help="progress as JSON lines on stderr (for log collectors)")
    _common(p)


def run(args: argparse.Namespace) -> int:
    from medspark.config import load_settings
    from medspark.lake import is_local
    from medspark.nightly.lock import LockHeld
    from medspark.nightly.progress import Progress
    from medspark.spark.ingest import IngestRequest
    from medspark.spark.nightly import EXIT_LOCKED, NightlyRequest, run_nightly

    settings = load_settings(args.config, args.overrides)
    date = args.date or dt.datetime.now(dt.UTC).date()
    request = NightlyRequest(
        ingest=IngestRequest(inputs=args.inputs, lake=args.lake, input_lists=args.input_lists,
                             labels=args.labels, label_from_path=args.label_from_path),
        date=date, model=args.model)
    if not is_local(args.lake):
        from medspark.config import ConfigError

        raise ConfigError("nightly needs a local (or shared, mounted) lake: its lock and "
                          "reports are files")
    key = request.ingest.validate(settings)  # every config error before Spark starts
    if args.json_log:
        logging.getLogger().handlers.clear()
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format='{"level": "%(levelname)s", "logger": "%(name)s", '
                                   '"message": "%(message)s"}')
    progress = Progress(json_log=args.json_log)
    # fail fast when another run holds the lock: before the JVM starts
    from medspark.nightly.lock import acquire

    try:
        acquire(args.lake, date.isoformat(), settings.nightly.lock_timeout_hours, probe=True)
    except LockHeld as e:
        print(f"medspark nightly: {e}", file=sys.stderr)
        return EXIT_LOCKED

    from medspark.session import build_session

    spark = build_session(settings.spark, master=args.master,
                          conf=_spark_conf(args.spark_conf), python_bound=True)
    try:
        state, code = run_nightly(spark, settings, request, key, progress)
    except LockHeld as e:
        print(f"medspark nightly: {e}", file=sys.stderr)
        return EXIT_LOCKED
    if args.json:
        print(json.dumps(state, indent=2, default=str))
    else:
        print(night_summary_text(state))
    return code


def _spark_conf(pairs: list[str]) -> dict[str, str]:
    from medspark.cli import _spark_conf as parse

    return parse(pairs)


def night_summary_text(state: dict) -> str:
    lines = [f"nightly {state['date']} ({state['run_id']}): {state['status']} "
             f"in {state['duration_s']:.1f}s, exit code {state['exit_code']}"]
    for s in state["stages"]:
        why = f" ({s['reason']})" if s.get("reason") else ""
        took = f"{s['duration_s']:.1f}s" if s.get("duration_s") is not None else "-"
        lines.append(f"  {s['name']:<11} {s['status']:<8} {took:>8}{why}")
    lines += [f"  ! {a}" for a in state["attention"]]
    report = next((s["outputs"].get("report") for s in state["stages"]
                   if s["name"] == "report" and s.get("outputs")), None)
    if report:
        lines.append(f"  report      {report}")
    lines.append(f"  state       {state['manifest_path']}")
    return "\n".join(lines)
