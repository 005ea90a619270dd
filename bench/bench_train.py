"""Training throughput and MFU of the tiny default configs (same as `make bench` / `mdm bench train`).

.venv/bin/python bench/bench_train.py [--widths 128,256,384] [--steps 10]
"""

import sys

from mdm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train", *sys.argv[1:]]))
