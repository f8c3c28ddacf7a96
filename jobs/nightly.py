"""spark-submit entry point: `spark-submit jobs/nightly.py --input URI --lake DIR ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["nightly", *sys.argv[1:]]))
