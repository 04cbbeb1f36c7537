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


@gin.configurable
def evaluate_checkpoint(*, model, checkpoint_path: str, output_dir: str,
                        tasks: Sequence[str] | str | None = None,
                        mixture_or_task_name: str | None = None, split: str = "default",
                        batch_size: int = 32, task_feature_lengths: Mapping[str, int] | None = None,
                        num_examples: int | None = None,
                        decoder_start_token: str | None = "none") -> dict:
  """`decoder_start_token`: how decoder-only models score (`DecoderOnlyModel.start_token`);
  `none` feeds the context with nothing before it, as lm-evaluation-harness does for
  causal models; None keeps the model gin's setting."""
  from linguamix.evals import runner  # registers the benchmark tasks
  from linguamix.models import decoder
  if decoder_start_token is not None and isinstance(model, decoder.DecoderOnlyModel):
    if decoder_start_token not in decoder.START_TOKENS:
      raise ValueError(f"evaluate_checkpoint.decoder_start_token={decoder_start_token!r}; "
                       f"expected one of {decoder.START_TOKENS} or None")
    model.start_token = decoder_start_token
  checkpoint_path = ckpt_lib.latest_checkpoint(checkpoint_path)  # a MODEL_DIR: its latest
  names = tasks or mixture_or_task_name
  if not names:
    raise ValueError("nothing to evaluate: set EVAL_TASKS (task or mixture names) or "
                     "MIXTURE_OR_TASK_NAME")
  params = load_checkpoint_params(model, checkpoint_path, task_feature_lengths)
  step = trainer._initial_step(checkpoint_path) or None
  results = runner.evaluate(model, params, names, output_dir, split=split,
                            batch_size=batch_size, sequence_length=task_feature_lengths,
                            num_examples=num_examples, step=step)
  if jax.process_index() == 0:
    for task, metrics in sorted(results.items()):
      print(task + ": " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    print(f"wrote {os.path.abspath(output_dir)}")
  return results


def main(argv: list[str]) -> int:
  return main_lib.run(
      argv, prog="python -m linguamix.eval",
      description="Evaluate a checkpoint on SeqIO eval tasks from gin files (T5X's eval).",
      run_gin="runs/eval.gin", required=("CHECKPOINT_PATH", "EVAL_OUTPUT_DIR", "MODEL"),
      entry=lambda: evaluate_checkpoint(), default_gin="models/mt5_tiny.gin")
