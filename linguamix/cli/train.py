"""`python -m linguamix.train` / `.eval` / `.infer`: flags -> gin -> `trainer.train` (and
`run_eval.evaluate_checkpoint`, `run_infer.infer`), T5X style.

Bad flags, gin typos, unknown mixtures and missing macros are reported as one line on
stderr with exit status 2, before any compilation; every other user error too, through
`linguamix.errors.run_main` (`--verbose` adds the traceback). A NaN loss stops with
status 1; a preemption (SIGTERM) checkpoints and exits with `trainer.EXIT_PREEMPTED`.
"""

from __future__ import annotations

import importlib
import os
import sys

import gin

from linguamix import _malloc_tuning, _quiet
from linguamix.cli import flags

TRAIN_REQUIRED = ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS", "TRAIN_STEPS",
                  "INITIAL_CHECKPOINT_PATH", "MODEL")


def _not_orbax(record) -> bool:
  return "/orbax/" not in record.pathname


def _init_distributed() -> None:
  """Multi-host: TPU pods initialise from the environment; GPU/CPU clusters from
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
  import jax
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TPU_WORKER_HOSTNAMES"):
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
      kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                    num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                    process_id=int(os.environ["JAX_PROCESS_ID"]))
    jax.distributed.initialize(**kwargs)


def run(argv: list[str], *, prog: str, description: str, run_gin: str,
        required: tuple[str, ...], entry, default_gin: str = flags.QUICKSTART_GIN) -> int:
  verbose = _quiet.verbose_requested(argv)
  if not verbose:
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)  # SeqIO's per-dataset warnings drown the bar
    # Orbax logs a failed background save with tracebacks from each of its threads; the
    # trainer reports that failure itself, as one line.
    absl_logging.get_absl_logger().addFilter(_not_orbax)  # kept once however often run() is
  from linguamix import errors

  def go(args: list[str]) -> int:
    flags.parse_and_configure(args, prog=prog, description=description, run_gin=run_gin,
                              required_macros=required, default_gin=default_gin)
    _init_distributed()
    with gin.unlock_config():
      entry()
    return 0

  return errors.run_main(go, argv, prog=prog, verbose=verbose)


def _call(module: str, function: str):
  """The gin-configured entry, imported only once the flags have parsed (--help is instant)."""
  return lambda: getattr(importlib.import_module(module), function)()


def main(argv: list[str]) -> int:
  compile_only = [a for a in argv if a.startswith("--compile_only=")]
  if compile_only:  # the same flags, compiled for a TPU topology instead of trained
    from linguamix import errors
    from linguamix.cli import plan
    rest = [a for a in argv if not a.startswith("--compile_only=")]
    prog = "python -m linguamix.train --compile_only"
    return errors.run_main(lambda a: plan.main(a, prog=prog), [
        "--topology", compile_only[-1].split("=", 1)[1], *rest], prog=prog)
  return run(argv, prog="python -m linguamix.train",
             description="Train a model on a SeqIO mixture from gin files (T5X's train). "
                         "With --compile_only=TOPOLOGY (e.g. v5e-16) the same flags compile the "
                         "training step for a TPU topology instead: see `linguamix plan --help`.",
             run_gin="runs/finetune.gin", required=TRAIN_REQUIRED,
             entry=_call("linguamix.train.trainer", "train"))


def eval_main(argv: list[str]) -> int:
  return run(argv, prog="python -m linguamix.eval",
             description="Evaluate a checkpoint on SeqIO eval tasks from gin files (T5X's eval).",
             run_gin="runs/eval.gin", required=("CHECKPOINT_PATH", "EVAL_OUTPUT_DIR", "MODEL"),
             entry=_call("linguamix.train.run_eval", "evaluate_checkpoint"),
             default_gin="models/mt5_tiny.gin")


def infer_main(argv: list[str]) -> int:
  return run(argv, prog="python -m linguamix.infer",
             description="Predict or score a split with a checkpoint from gin files (T5X's infer).",
             run_gin="runs/infer.gin",
             required=("CHECKPOINT_PATH", "INFER_OUTPUT_DIR", "MIXTURE_OR_TASK_NAME", "MODEL"),
             entry=_call("linguamix.train.run_infer", "infer"), default_gin="models/mt5_tiny.gin")


def program(entry) -> None:
  """`python -m ...`: quiet stderr (unless --verbose / LINGUAMIX_VERBOSE), then `entry`."""
  argv = sys.argv[1:]
  if not {"-h", "--help"} & set(argv):
    _malloc_tuning.reexec()
  _quiet.install(verbose=_quiet.verbose_requested(argv))
  sys.exit(entry(argv))
