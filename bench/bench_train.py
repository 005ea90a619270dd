"""Training throughput and MFU at small widths (same as `make bench` / `mdm bench train`): bare step,
full `mdm train` loop, minimal GPT, thread layout, fp32 vs bf16.

.venv/bin/python bench/bench_train.py [--widths 64,128] [--threads 1,2] [--steps 6] [--rounds 3]
"""

import sys

from mdm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train", *sys.argv[1:]]))
