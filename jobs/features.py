"""spark-submit entry point: `spark-submit jobs/features.py --lake DIR [--config FILE] ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
