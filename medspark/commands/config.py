"""`medspark config show`: the settings a job would run with, as YAML.

    medspark config show                      the defaults (conf/local.yaml, shipped with
                                              the package)
    medspark config show --config FILE --set train.engine=mllib
    medspark config show --section train      one section
    medspark config show --path               where the default file is

Every key is printed with its value after validation (defaults filled in), so the output is a
complete configuration file: `medspark config show > my.yaml` is a starting point.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from medspark.config import DEFAULT_CONFIG, ConfigError, load_settings, settings_dict


def add_parser(subparsers) -> None:
    config = subparsers.add_parser("config", help="print the settings (defaults: the packaged "
                                                  "conf/local.yaml)")
    sub = config.add_subparsers(dest="config_command", required=True)
    show = sub.add_parser("show", help="the validated settings as YAML")
    show.add_argument("--config", help="YAML settings file (default: the packaged defaults)")
    show.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="override a setting: train.engine=mllib")
    show.add_argument("--section", help="print only this section (spark, ingest, train, ...)")
    show.add_argument("--path", action="store_true", help="print the default file's path")


def run(args: argparse.Namespace) -> int:
    if args.path:
        print(DEFAULT_CONFIG)
        return 0
    doc = settings_dict(load_settings(args.config, args.overrides))
    if args.section:
        if args.section not in doc:
            raise ConfigError(f"no section {args.section!r}; sections: {sorted(doc)}")
        doc = {args.section: doc[args.section]}
    yaml.safe_dump(doc, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0
