"""`evaluate`: drive `seqio.Evaluator` with a linguamix model (T5X model contract).

Rank-classification tasks call the model's `score_batch`, generation tasks its
`predict_batch`; a tqdm bar per task shows requests/s. Every host scores the whole eval
set (the sets are small); only host 0 writes files.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import jax
import numpy as np
import seqio
import tensorflow as tf
import tqdm

import linguamix.evals  # registers the benchmark tasks  # noqa: F401
from linguamix import atomic
from linguamix.evals import data
from linguamix.evals import loggers
from linguamix.evals import registry
from linguamix.models import base

LOGGERS = (loggers.MetricsLogger, loggers.ScoresLogger)


def _check_name(name: str) -> None:
  family, lang = registry.family_of(name)
  if lang and family in registry.BENCHMARKS:
    registry.check_language(registry.BENCHMARKS[family], lang)
  seqio.get_mixture_or_task(name)  # unknown names fail here, listing what exists


def _batches(ds: tf.data.Dataset, batch_size: int):
  """(ids[n], batch padded to batch_size, n) from an enumerated model dataset."""
  for ids, batch in ds.batch(batch_size).as_numpy_iterator():
    n = len(ids)
    if n < batch_size:
      batch = {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
               for k, v in batch.items()}
    yield ids, batch, n


def _model_fn(step_fn: Callable[[Mapping[str, np.ndarray]], Any], batch_size: int,
              name: str, to_output: Callable[[np.ndarray], Any]):
  """A seqio score/predict fn: [(id, output)] for every row, with a progress bar."""
  def model_fn(ds: tf.data.Dataset, model_feature_shapes=None):
    del model_feature_shapes
    out = []
    total = int(ds.cardinality().numpy()) if ds.cardinality() >= 0 else None
    with tqdm.tqdm(total=total, desc=name, unit="req", dynamic_ncols=True,
                   disable=jax.process_index() != 0) as bar:
      for ids, batch, n in _batches(ds, batch_size):
        result = np.asarray(step_fn(batch))[:n]
        out.extend((int(i), to_output(r)) for i, r in zip(ids, result))
        bar.update(n)
    return out
  return model_fn


def evaluate(model: base.BaseModel, params: Any, task_or_mixture_names: str | Sequence[str],
             output_dir: str, *, split: str = registry.DEFAULT_SPLIT, batch_size: int = 32,
             sequence_length: Mapping[str, int] | None = None,
             num_examples: int | None = None, step: int | None = None,
             feature_converter: seqio.FeatureConverter | None = None,
             logger_cls: Sequence[type[seqio.Logger]] = LOGGERS,
             rng: jax.Array | None = None, jit: bool = True) -> dict[str, dict[str, float]]:
  """Scores tasks/mixtures; returns {task: {metric: value}} and writes `output_dir`.

  `split`: "default" (each benchmark's reported split), "validation" or "test".
  `sequence_length`: task feature lengths; None measures the longest example.
  `jit`: compile `score_batch` (off for scorers that are plain Python).
  """
  names = [task_or_mixture_names] if isinstance(task_or_mixture_names, str) \
      else list(task_or_mixture_names)
  for name in names:
    _check_name(name)
  converter = feature_converter or model.feature_converter_cls(pack=False)
  score = jax.jit(model.score_batch) if jit else model.score_batch
  rng = jax.random.PRNGKey(0) if rng is None else rng
  writes = jax.process_index() == 0
  results: dict[str, dict[str, float]] = {}
  for name in names:
    tasks = seqio.get_subtasks(seqio.get_mixture_or_task(name))
    lacking = [t.name for t in tasks if split not in t.splits]
    if lacking:
      raise ValueError(f"split {split!r} not offered by {lacking}")
    try:
      evaluator = seqio.Evaluator(
          name, feature_converter=converter, eval_split=split,
          sequence_length=sequence_length, num_examples=num_examples,
          logger_cls=logger_cls if writes else (), log_dir=output_dir,
          async_compute_metrics=False)
    except tf.errors.InvalidArgumentError as e:  # e.g. rank.check_fits: name the task
      raise ValueError(f"{name}: {e.message.split('assertion failed: ')[-1].splitlines()[0]}") from None
    metrics, _ = evaluator.evaluate(
        compute_metrics=True, step=step,
        score_fn=_model_fn(lambda b: score(params, b), batch_size, name, float),
        predict_fn=_model_fn(lambda b: model.predict_batch(params, b, rng), batch_size,
                             name, lambda r: r.tolist()))
    results.update({task: {k: float(np.asarray(getattr(v, "value", v)))
                           for k, v in m.items() if np.ndim(getattr(v, "value", v)) == 0}
                    for task, m in metrics.result().items()})
  if writes:
    tf.io.gfile.makedirs(output_dir)
    with atomic.atomic_write(os.path.join(output_dir, "run.json")) as f:
      json.dump({"tasks": names, "split": split, "step": step,
                 "skipped_malformed_rows": {p: len(lines) for p, lines in data.SKIPPED.items()}, "metrics": results},
                f, indent=2, ensure_ascii=False)
  logging.info("evaluated %s: %s", names, results)
  return results
