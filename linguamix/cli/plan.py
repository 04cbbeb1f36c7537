"""`linguamix plan` (also `python -m linguamix.train --compile_only=T`): the run's gin
configuration, compiled for a TPU topology by `linguamix.train.plan`."""

from __future__ import annotations

import argparse
import os
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
  return run(known, rest, prog=prog)


def parse_run(argv: list[str], prog: str = "linguamix plan") -> None:
  """Parses a training run's flags into gin's configuration, as `python -m linguamix.train`
  does (MODEL_DIR is not needed)."""
  from linguamix.cli import flags
  os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compiling needs no local accelerator
  flags.parse_and_configure(
      list(argv) + ['--gin.MODEL_DIR="/dev/null"'], prog=prog,
      description="Compile a run's training step for a TPU topology.",
      run_gin="runs/finetune.gin", required_macros=("MODEL", "TASK_FEATURE_LENGTHS"))


def run(known: argparse.Namespace, rest: list[str], prog: str) -> int:
  """`known`: the flags above; `rest`: the run's gin flags."""
  import gin

  from linguamix.train import plan
  topology = plan.parse_topology(known.topology, known.slices)
  parse_run(rest, prog)
  settings = plan.run_settings(known.rows)
  if getattr(known, "search", False):
    config_cls = type(settings["model"].config)
    selector = f"{config_cls.__module__}.{config_cls.__qualname__}"

    def make_model(remat: str):
      with gin.unlock_config():
        gin.bind_parameter(f"{selector}.remat_policy", remat)
        return plan.run_value("model", required=True)

    common = {k: v for k, v in settings.items()
              if k not in ("model", "partitioner_cfg", "num_microbatches")}
    result = plan.search(make_model, topology, known.budget_s, **common)
    print(plan.format_search(result, selector))
    if known.json:
      plan.write_json(result, known.json)
    if not result["fits"]:
      print(f"{prog}: no candidate fits (tried {len(result['tried'])} of "
            f"{result['candidates']}; a larger --budget_s tries more)", file=sys.stderr)
      return 1
    return 0
  report = plan.plan(topology=topology, **settings)
  print(plan.format_report(report))
  if known.json:
    plan.write_json(report, known.json)
  if not report["fits"]:
    print(f"{prog}: {plan.does_not_fit_line(report)}", file=sys.stderr)
    return 1
  return 0
