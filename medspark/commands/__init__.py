"""Command modules `medspark.cli` wires in: each has `add_parser(subparsers)` and `run(args)`."""
