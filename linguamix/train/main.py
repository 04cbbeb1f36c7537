"""Entry points: flags -> gin -> `trainer.train` (and eval / infer, see run_eval, run_infer).

Bad flags, gin typos, unknown mixtures and missing macros are reported as one line on
stderr with exit status 2, before any compilation; every other user error too, through
`linguamix.errors.run_main` (`--verbose` adds the traceback). A NaN loss stops with
status 1; a preemption (SIGTERM) checkpoints and exits with `trainer.EXIT_PREEMPTED`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import gin

from linguamix.train import flags

TRAIN_REQUIRED = ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS", "TRAIN_STEPS",
                  "INITIAL_CHECKPOINT_PATH", "MODEL")


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
  from absl import logging as absl_logging
  from linguamix import errors
  absl_logging.set_verbosity(absl_logging.ERROR)  # SeqIO's per-dataset warnings drown the bar

  def go(args: list[str]) -> int:
    flags.parse_and_configure(args, prog=prog, description=description, run_gin=run_gin,
                              required_macros=required, default_gin=default_gin)
    _init_distributed()
    with gin.unlock_config():
      entry()
    return 0

  return errors.run_main(go, argv, prog=prog)


def main(argv: list[str]) -> int:
  from linguamix.train import trainer
  return run(argv, prog="python -m linguamix.train",
             description="Train a model on a SeqIO mixture from gin files (T5X's train).",
             run_gin="runs/finetune.gin", required=TRAIN_REQUIRED,
             entry=lambda: trainer.train())
