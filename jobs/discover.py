"""spark-submit entry point: `spark-submit jobs/discover.py --lake DIR [--table PATH ...] ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["discover", *sys.argv[1:]]))
