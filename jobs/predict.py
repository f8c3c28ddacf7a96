"""spark-submit entry point: `spark-submit jobs/predict.py --lake DIR --model ID ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
