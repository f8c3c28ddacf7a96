"""spark-submit entry point: `spark-submit jobs/ingest.py --input DIR --lake DIR ...`."""

import sys

from medspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
