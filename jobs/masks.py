"""spark-submit entry point: `spark-submit jobs/masks.py --lake DIR [--config FILE] ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["masks", *sys.argv[1:]]))
