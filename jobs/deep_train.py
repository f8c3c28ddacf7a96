"""spark-submit entry point: `spark-submit jobs/deep_train.py --lake DIR [--arch cnn] ...`."""

import sys

from medspark.commands.deep import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
