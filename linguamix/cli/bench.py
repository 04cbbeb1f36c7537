"""`linguamix bench train ...`: the gin configuration's training step and input pipeline,
measured by `linguamix.train.bench.bench_train`."""

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
  import gin

  from linguamix.cli import flags
  from linguamix.train import bench
  try:
    flags.parse_and_configure(
        rest + ['--gin.MODEL_DIR="/dev/null"'], prog="linguamix bench train",
        description="Benchmark the training step and input pipeline of a gin configuration.",
        run_gin="runs/finetune.gin", required_macros=("MIXTURE_OR_TASK_NAME", "MODEL"))
    with gin.unlock_config():
      bind = lambda name: flags.bound_argument(f"trainer.train.{name}")  # noqa: E731
      report = bench.bench_train(
          model=bind("model"), train_dataset_cfg=bind("train_dataset_cfg"),
          partitioner=bind("partitioner"), optimizer=bind("optimizer"),
          learning_rate=bind("learning_rate"), steps=known.steps,
          peak_flops=known.peak_tflops * 1e12 if known.peak_tflops else None)
  except (flags.UsageError, ValueError) as e:
    print(f"linguamix bench train: error: {e}", file=sys.stderr)
    return 2
  print(bench.format_report(report))
  return 0
