"""`python -m linguamix.eval`: score a checkpoint on eval tasks (runs/eval.gin) through
`linguamix.evals.runner.evaluate` (seqio.Evaluator with the evals' loggers)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import gin
import jax
import flax.linen as nn

from linguamix.train import checkpoints as ckpt_lib
from linguamix.train import main as main_lib
from linguamix.train import partitioning
from linguamix.train import trainer


def load_checkpoint_params(model, checkpoint_path: str, task_feature_lengths=None):
  """Params of `checkpoint_path`, sharded by the default partitioner."""
  lengths = task_feature_lengths or {"inputs": 8, "targets": 8}
  boxed, _ = trainer.abstract_params(model, lengths)
  shardings = partitioning.Partitioner().param_shardings(boxed)
  return ckpt_lib.load_params(checkpoint_path, nn.unbox(boxed), shardings)


def _line(metrics: Mapping[str, float | int]) -> str:
  """`acc 55.20 ± 2.22, ..., num_examples 500`: stderr beside its metric, counts as integers."""
  parts = []
  for k, v in sorted(metrics.items()):
    if k.endswith(("_stderr", "_ci_low", "_ci_high")):
      continue
    text = str(v) if isinstance(v, int) else f"{v:.4f}"
    if f"{k}_stderr" in metrics:
      text += f" ± {metrics[k + '_stderr']:.4f}"
    parts.append(f"{k} {text}")
  return ", ".join(parts)


@gin.configurable
def evaluate_checkpoint(*, model, checkpoint_path: str, output_dir: str,
                        tasks: Sequence[str] | str | None = None,
                        mixture_or_task_name: str | None = None, split: str = "default",
                        batch_size: int = 32, task_feature_lengths: Mapping[str, int] | None = None,
                        num_examples: int | None = None,
                        add_bos_token: bool | None = None) -> dict:
  """Requests are lm-evaluation-harness 0.4.13's for the model's tokenizer (a decoder-only
  model scores with the start token the tokenizer implies: BOS iff it adds one).
  `add_bos_token`: lm-eval's override of that (None: the tokenizer's default)."""
  from linguamix.evals import runner  # registers the benchmark tasks
  names = tasks or mixture_or_task_name
  if not names:
    raise ValueError("nothing to evaluate: set EVAL_TASKS (task or mixture names) or "
                     "MIXTURE_OR_TASK_NAME")
  params = load_checkpoint_params(model, checkpoint_path, task_feature_lengths)
  step = trainer._initial_step(checkpoint_path) or None
  results = runner.evaluate(model, params, names, output_dir, split=split,
                            batch_size=batch_size, sequence_length=task_feature_lengths,
                            num_examples=num_examples, step=step, add_bos_token=add_bos_token)
  if jax.process_index() == 0:
    for task, metrics in sorted(results.items()):
      print(f"{task}: {_line(metrics)}")
    print(f"wrote {os.path.abspath(output_dir)}")
  return results


def main(argv: list[str]) -> int:
  return main_lib.run(
      argv, prog="python -m linguamix.eval",
      description="Evaluate a checkpoint on SeqIO eval tasks from gin files (T5X's eval).",
      run_gin="runs/eval.gin", required=("CHECKPOINT_PATH", "EVAL_OUTPUT_DIR", "MODEL"),
      entry=lambda: evaluate_checkpoint(), default_gin="models/mt5_tiny.gin")
