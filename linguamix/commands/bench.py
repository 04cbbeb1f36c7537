"""`linguamix bench train ...`; runs `linguamix.train.bench.run`."""

from __future__ import annotations

import argparse
import sys

USAGE = """\
usage: linguamix bench train [--steps N] [--peak_tflops X] --gin_file=... [--gin.NAME=VALUE]

Benchmark a gin configuration (the same files and bindings as python -m linguamix.train):
training steps/s, tokens/s, MFU and peak memory, then the input pipeline's examples/s
and packing efficiency for the same mixture.

  --steps N        timed training steps after compilation (default 10)
  --peak_tflops X  peak TFLOP/s per device for MFU (default: the table of known
                   accelerators; none on a CPU, so MFU reads n/a there)
  --gin_file, --gin.NAME=VALUE, --gin_bindings, --gin_search_paths, --tfds_data_dir:
                   as for python -m linguamix.train
"""


def main(argv: list[str]) -> int:
  wants_help = any(a in ("-h", "--help") for a in argv)
  if wants_help or not argv or argv[0] != "train":
    print(USAGE, file=sys.stdout if wants_help else sys.stderr)
    return 0 if wants_help else 2
  p = argparse.ArgumentParser(prog="linguamix bench train", add_help=False)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--peak_tflops", type=float, default=None)
  known, rest = p.parse_known_args(argv[1:])
  from linguamix.train import bench
  return bench.run(known, rest)
