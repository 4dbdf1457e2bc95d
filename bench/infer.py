"""Inference benchmark, the same as ``toxdistill bench``: ``python bench/infer.py RUN_DIR [options]``."""

import sys

from toxdistill.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
