"""`python -m linguamix.eval`: score a checkpoint on eval tasks (runs/eval.gin) through
`linguamix.evals.runner.evaluate` (seqio.Evaluator with the evals' loggers)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import gin
import jax
import flax.linen as nn

from linguamix.train import checkpoints as ckpt_lib
from linguamix.train import partitioning
from linguamix.train import trainer


def load_checkpoint_params(model, checkpoint_path: str, task_feature_lengths=None):
  """Params of `checkpoint_path`, sharded by the default partitioner."""
  lengths = task_feature_lengths or {"inputs": 8, "targets": 8}
  boxed, _ = trainer.abstract_params(model, lengths)
  shardings = partitioning.Partitioner().param_shardings(boxed)
  return ckpt_lib.load_params(checkpoint_path, nn.unbox(boxed), shardings, what="CHECKPOINT_PATH")


@gin.configurable
def evaluate_checkpoint(*, model, checkpoint_path: str, output_dir: str,
                        tasks: Sequence[str] | str | None = None,
                        mixture_or_task_name: str | None = None, split: str = "default",
                        batch_size: int = 32, task_feature_lengths: Mapping[str, int] | None = None,
                        num_examples: int | None = None,
                        add_bos_token: bool | None = None, model_id: str | None = None) -> dict:
  """Requests are lm-evaluation-harness 0.4.13's for the model's tokenizer (a decoder-only
  model scores with the start token the tokenizer implies: BOS iff it adds one).
  `add_bos_token`: lm-eval's override of that (None: the tokenizer's default).
  `model_id`: the model's name in MT-Bench-X answer files (default: the name of the
  CHECKPOINT_PATH folder, e.g. a study's run name)."""
  from linguamix.evals import runner  # registers the benchmark tasks
  if not model_id:
    folder = os.path.normpath(checkpoint_path)
    if os.path.basename(folder).startswith("checkpoint_"):
      folder = os.path.dirname(folder)
    model_id = os.path.basename(folder)
  checkpoint_path = ckpt_lib.latest_checkpoint(checkpoint_path)  # a MODEL_DIR: its latest
  names = tasks or mixture_or_task_name
  if not names:
    raise ValueError("nothing to evaluate: set EVAL_TASKS (task or mixture names) or "
                     "MIXTURE_OR_TASK_NAME")
  params = load_checkpoint_params(model, checkpoint_path, task_feature_lengths)
  step = trainer._initial_step(checkpoint_path) or None
  results = runner.evaluate(model, params, names, output_dir, split=split,
                            batch_size=batch_size, sequence_length=task_feature_lengths,
                            num_examples=num_examples, step=step, add_bos_token=add_bos_token,
                            model_id=model_id)
  if jax.process_index() == 0:
    for task, metrics in sorted(results.items()):
      print(task + ": " + format_metrics(metrics))
    print(f"wrote {os.path.abspath(output_dir)}")
  return results


def format_metrics(metrics: Mapping[str, float | int]) -> str:
  """`acc 54.6000 ± 2.2263, num_examples 500`: the standard error beside its metric (the
  95% interval is in the files), counts as integers."""
  parts = []
  for k, v in sorted(metrics.items()):
    if k.endswith(("_stderr", "_ci_low", "_ci_high")):
      continue
    text = f"{int(v)}" if k.startswith("num_") else f"{v:.4f}"
    if f"{k}_stderr" in metrics:
      text += f" ± {metrics[k + '_stderr']:.4f}"
    parts.append(f"{k} {text}")
  return ", ".join(parts)


@gin.configurable
def benchmark(*, model, params, model_dir: str, step: int, tasks: Sequence[str] | str = "xcopa",
              split: str = "default", batch_size: int = 32, metric: str = "acc",
              num_examples: int | None = None, output_subdir: str = "benchmark") -> dict:
  """After training (`trainer.train.benchmark`): scores the trained params on `tasks`
  as `python -m linguamix.eval` does, into MODEL_DIR/`output_subdir`; prints the
  per-language table and draws `linguamix report`'s chart into MODEL_DIR.
  `num_examples`: the first N scored rows per task (a smoke test), None for all."""
  from linguamix.evals import charts, runner  # runner registers the benchmark tasks
  output_dir = os.path.join(model_dir, output_subdir)
  results = runner.evaluate(model, params, tasks, output_dir, split=split,
                            batch_size=batch_size, num_examples=num_examples, step=step)
  if jax.process_index() == 0:
    print(format_table(results, split))
    print(f"wrote {output_dir}")
    charts.write_report([output_dir], model_dir, labels=[f"step {step}"], metric=metric)
  return results


def format_table(results: Mapping[str, Mapping[str, float]], split: str) -> str:
  """One row per task (language) and the mean over them, per benchmark family."""
  lines = []
  families: dict[str, list[str]] = {}
  for task in sorted(results):
    families.setdefault(task.partition(".")[0], []).append(task)
  for family, names in families.items():
    metrics = sorted({k for t in names for k in results[t]
                      if not k.endswith(("_stderr", "_ci_low", "_ci_high"))}
                     - {"num_examples", "num_flagged", "chance"})
    shown = split
    if split == "default":  # the split the field reports, e.g. XCOPA's test split
      from linguamix.evals import registry
      shown = getattr(registry.BENCHMARKS.get(family), "default_split", split)
    lines.append(f"{family} ({shown} split): " + ", ".join(metrics) + " in %")
    lines.append(f"{'lang':<10}" + "".join(f"{m:>10}" for m in metrics) + f"{'examples':>10}")
    for task in names:
      r = results[task]
      lines.append(f"{task.partition('.')[2]:<10}" + "".join(
          f"{r.get(m, float('nan')):>10.1f}" for m in metrics)
          + f"{int(r.get('num_examples', 0)):>10,}")
    total = sum(int(results[t].get("num_examples", 0)) for t in names)
    lines.append(f"{'mean':<10}" + "".join(
        f"{sum(results[t].get(m, 0.0) for t in names) / len(names):>10.1f}" for m in metrics)
        + f"{total:>10,}")
  return "\n".join(lines)
