"""spark-submit entry point: `spark-submit jobs/train.py --lake DIR [--label COL] ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
