"""spark-submit entry point: `spark-submit jobs/deep_embed.py --lake DIR --model ID|latest`."""

import sys

from medspark.commands.deep import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
