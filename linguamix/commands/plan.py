"""`linguamix plan`; runs `linguamix.train.plan.run` (also `python -m linguamix.train --compile_only=T`)."""

from __future__ import annotations

import argparse
import sys

USAGE = """\
usage: linguamix plan --topology T [--slices N] [--rows N] [--json FILE]
                      [--search [--budget_s S]] --gin_file=... [--gin.NAME=VALUE]

Compile a training run's own step for a TPU topology on this host (no TPU needed: libtpu's
compiler runs on the CPU) and print, per chip: memory by kind against the chip's HBM,
FLOPs, the collectives of the compiled program, and a roofline ESTIMATE of the step time,
MFU and chip-hours. The gin files and bindings are exactly those of the run
(python -m linguamix.train); the mesh is the run's partitioning.Partitioner
(data x fsdp x model) over the topology's chips. No weights, checkpoint or tokenizer
file are read. A run that does not fit prints one line with the per-chip bytes and the
HBM and exits with status 1.

  --topology T   v4-8 ... v4-4096, v5e-1 ... v5e-256, v5p-8 ..., v6e-1 ... v6e-256
                 (accelerator types: chips on v5e/v6e, TensorCores on v4/v5p), or a
                 slice shape such as v5e:4x4 or v4:2x2x2
  --slices N     N such slices over the data-center network (multi-slice; the mesh's
                 data axis spans them)
  --rows N       packed rows in one epoch of the mixture (`linguamix mixtures show NAME
                 --count_at ...` prints it): adds steps, hours and chip-hours per epoch,
                 and per run with TRAIN_EPOCHS
  --json FILE    also write every figure (bytes per kind, HBM, FLOPs, collectives, the
                 estimate and its inputs) to FILE
  --search       compile candidates instead of the run's own settings: every split of
                 the chips into data x fsdp x model that the batch allows, remat
                 policies none / dots_with_no_batch_dims / full, 1-8 microbatches;
                 prints those that fit ranked by the estimated step time, and the gin
                 bindings of the best (exit status 1 if none fits)
  --budget_s S   stop compiling candidates after S seconds (default 600; a progress bar
                 shows how far it got)
  --gin_file, --gin.NAME=VALUE, --gin_bindings, --gin_search_paths:
                 as for python -m linguamix.train (MODEL_DIR and checkpoints not needed)

Needs libtpu: pip install 'linguamix[tpu]'. docs/tpu_planning.md explains each figure
and the estimate's formula.
"""


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="linguamix plan", add_help=False)
  p.add_argument("--topology", required=True)
  p.add_argument("--slices", type=int, default=1)
  p.add_argument("--rows", type=int, default=None)
  p.add_argument("--json", default=None)
  p.add_argument("--search", action="store_true")
  p.add_argument("--budget_s", type=float, default=600.0)
  return p


def main(argv: list[str], prog: str = "linguamix plan") -> int:
  if any(a in ("-h", "--help") for a in argv):
    print(USAGE)
    return 0
  p = parser()
  try:
    known, rest = p.parse_known_args(argv)
  except SystemExit:
    print(USAGE, file=sys.stderr)
    return 2
  from linguamix.train import plan
  return plan.run(known, rest, prog=prog)
