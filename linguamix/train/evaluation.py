"""In-run evaluation as T5X wires it: `train_eval` (validation loss over EVAL_STEPS
packed batches per task) and `infer_eval` (`seqio.Evaluator` with the tasks' metric
functions, prediction and score metrics). Also the predict/score functions that
`python -m linguamix.eval` and `python -m linguamix.infer` use.
"""

from __future__ import annotations

import functools

from typing import Any, Callable, Sequence

import jax
import numpy as np
import seqio
import tensorflow as tf
from jax.experimental import multihost_utils

from linguamix.train import data as data_lib
from linguamix.train import partitioning


def _tasks(name: str) -> list[seqio.Task]:
  mt = data_lib.get_mixture_or_task(name)
  return list(mt.tasks) if isinstance(mt, seqio.Mixture) else [mt]


def train_eval(eval_step: Callable, params: Any, cfg: data_lib.DatasetConfig, model,
               partitioner: partitioning.Partitioner, *, eval_steps: int, seed: int
               ) -> dict[str, dict[str, float]]:
  """{task: {loss, accuracy?...}} over `eval_steps` batches of each task's split."""
  results, skipped = {}, []
  for task in _tasks(cfg.mixture_or_task_name):
    if cfg.split not in task.splits:
      skipped.append(task.name)
      continue
    task_cfg = data_lib.DatasetConfig(**{**cfg.__dict__, "mixture_or_task_name": task.name})
    ds = data_lib.host_dataset(task_cfg, model.feature_converter_cls(pack=cfg.pack),
                               host_index=jax.process_index(), num_hosts=jax.process_count(),
                               seed=seed).take(eval_steps)
    sums: dict[str, float] = {}
    for batch in data_lib.numpy_batches(ds):
      out = jax.device_get(eval_step(params, partitioner.global_batch(batch)))
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    tokens = sums.pop("tokens", 0.0)
    if tokens:
      results[task.name] = {k: v / tokens for k, v in sums.items()}
  if skipped:
    print(f"train_eval: {len(skipped)} task(s) without split {cfg.split!r} skipped: "
          f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
  return results


class BatchRunner:
  """Runs a jitted per-batch function over an enumerated eval dataset: batches of
  `batch_size` (the last one padded), each host feeding its rows of a global array."""

  def __init__(self, partitioner: partitioning.Partitioner, batch_size: int):
    self.partitioner = partitioner
    dp = partitioner.data_parallel_size * jax.process_count()
    self.batch_size = -(-batch_size // dp) * dp

  def __call__(self, fn: Callable, dataset: tf.data.Dataset) -> list[tuple[int, Any]]:
    """(example index, fn's row) pairs; a fn returning a tuple of arrays gives tuples of rows."""
    out = []
    hosts, host = jax.process_count(), jax.process_index()
    rows = self.batch_size // hosts
    for index_B, batch in dataset.batch(self.batch_size).as_numpy_iterator():
      n = len(index_B)
      padded = {k: np.concatenate([v, np.repeat(v[-1:], self.batch_size - n, 0)])
                for k, v in batch.items()}
      local = {k: v[host * rows:(host + 1) * rows] for k, v in padded.items()}
      result = fn(self.partitioner.global_batch(local))
      if hosts > 1:
        result = multihost_utils.process_allgather(result, tiled=True)
      parts = result if isinstance(result, tuple) else (result,)
      parts = [np.asarray(jax.device_get(x))[:n].tolist() for x in parts]
      out.extend(zip(index_B.tolist(), zip(*parts) if isinstance(result, tuple) else parts[0]))
    return out


@functools.lru_cache(maxsize=8)
def _jitted_fns(model, seed: int, decode_items: tuple):
  """One jitted predict/score pair per model, kept across evals so that each
  EVAL_PERIOD reuses the compiled decode instead of tracing it again."""
  rng = jax.random.PRNGKey(seed)
  decode_kwargs = dict(decode_items)
  return (jax.jit(lambda p, b: model.predict_batch(p, b, rng, **decode_kwargs)),
          jax.jit(model.score_batch))


def model_fns(model, params: Any, runner: BatchRunner, seed: int = 0, **decode_kwargs):
  """seqio's predict_fn / score_fn over `params`."""
  predict, score = _jitted_fns(model, seed, tuple(sorted(decode_kwargs.items())))

  def predict_fn(ds: tf.data.Dataset, model_feature_shapes=None):
    del model_feature_shapes
    return runner(lambda b: predict(params, b), ds)

  def score_fn(ds: tf.data.Dataset, model_feature_shapes=None):
    del model_feature_shapes
    return runner(lambda b: score(params, b), ds)

  return predict_fn, score_fn


def infer_eval(evaluator: seqio.Evaluator, model, params: Any, runner: BatchRunner, *,
               step: int) -> dict[str, dict[str, Any]]:
  """Runs the tasks' metric functions; {task: {metric: value}}."""
  predict_fn, score_fn = model_fns(model, params, runner)
  future, _ = evaluator.evaluate(compute_metrics=jax.process_index() == 0, step=step,
                                 predict_fn=predict_fn, score_fn=score_fn)
  return future.result() if future is not None else {}


def make_evaluator(cfg: data_lib.DatasetConfig, model, *, log_dir: str | None,
                   logger_cls: Sequence[type] = (), seed: int = 0,
                   num_examples: int | None = None) -> seqio.Evaluator | None:
  """A seqio.Evaluator over the tasks that have `cfg.split` and metric functions."""
  names = [t.name for t in _tasks(cfg.mixture_or_task_name)
           if cfg.split in t.splits and (t.metric_fns or getattr(t, "score_metric_fns", None)
                                         or getattr(t, "predict_metric_fns", None))]
  if not names:
    print(f"infer_eval: no task of {cfg.mixture_or_task_name!r} has split {cfg.split!r} "
          "and metric functions; skipped")
    return None
  return seqio.Evaluator(
      mixture_or_task_name=cfg.mixture_or_task_name,
      feature_converter=model.feature_converter_cls(pack=False),
      eval_split=cfg.split, use_cached=False, seed=seed,
      sequence_length=cfg.task_feature_lengths, num_examples=num_examples,
      logger_cls=tuple(logger_cls), log_dir=log_dir)
