"""spark-submit entry point: `spark-submit jobs/preprocess.py --lake DIR [--config FILE] ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
