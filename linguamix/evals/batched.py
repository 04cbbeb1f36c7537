"""Rank-classification requests of every task scored in one length-sorted loop.

lm-evaluation-harness gathers the requests of all its tasks, sorts them by length and
runs one loop. Here too: the requests of every rank-classification task asked for are
built in Python (`requests.pair_encoder`, the ids the SeqIO task's `tokenize_pairs`
builds), converted by the model's SeqIO feature converter in one pass, sorted by length
(longest first) and scored in batches cut to a few length buckets, so the jitted scorer
compiles once per bucket whatever the number of tasks and languages. The SeqIO tasks'
own postprocessor and metric functions then score each task, and the loggers write its
files, as `seqio.Evaluator` would.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import seqio
import tensorflow as tf
import tqdm

from linguamix.evals import rank
from linguamix.evals import registry
from linguamix.evals import requests


@dataclasses.dataclass
class TaskRequests:
  """One task's rows, in the order its SeqIO dataset yields them (example, then choice):
  the rank fields `rank_target` reads, `inputs` / `targets` ids and their texts."""
  task: seqio.Task
  rows: list[dict[str, Any]]


def is_rank_task(task: seqio.Task) -> bool:
  return task.name in registry.RANK_TASKS


def task_requests(task: seqio.Task, split: str, num_examples: int | None = None,
                  sequence_length: Mapping[str, int] | None = None) -> TaskRequests:
  """The task's requests for the model in `requests.current()`: the rows SeqIO's
  `rank_classification` + `tokenize_pairs` + `check_fits` give, without a tf.data pass.

  `num_examples` keeps the first rows (choices), as `seqio.Evaluator` does."""
  benchmark, lang = registry.RANK_TASKS[task.name]
  vocab = task.output_features["targets"].vocabulary
  encode = requests.pair_encoder(vocab)
  eos = [requests.resolved(vocab).eos_id] if rank.score_eos() else []
  release_split = benchmark.default_split if split == registry.DEFAULT_SPLIT else split
  rows = []
  for ex in benchmark.load(lang, release_split):
    for choice, (context, continuation) in enumerate(zip(ex.contexts, ex.continuations)):
      if num_examples is not None and len(rows) >= num_examples:
        return TaskRequests(task, rows)
      ctx, cont = encode(context, continuation)
      stripped = context.rstrip()  # lm-eval's whitespace rule, as the texts record it
      row = {"idx": ex.idx, "choice": choice, "label": ex.label,
             "num_choices": len(ex.contexts), "flag": ex.flag, "length": ex.norm_lengths[choice],
             "inputs": np.array(ctx, np.int32), "targets": np.array(cont + eos, np.int32),
             "inputs_pretokenized": stripped,
             "targets_pretokenized": context[len(stripped):] + continuation}
      for key in ("inputs", "targets"):
        limit = (sequence_length or {}).get(key)
        if limit is not None and len(row[key]) > limit:
          raise ValueError(
              f"{task.name}: example {ex.idx} choice {choice}: rank-classification {key} "
              f"longer than sequence_length[{key!r}]={limit} ({len(row[key])} tokens); raise "
              "it or pass sequence_length=None")
      rows.append(row)
  return TaskRequests(task, rows)


def bucket(length: int) -> int:
  """The padded length of a batch whose longest row has `length` tokens: at least 16,
  then four steps per doubling (16, 20, 24, 28, 32, 40, ...), rounded to a multiple of
  8. At most 25% padding, and a handful of shapes for all tasks, so a handful of
  compilations."""
  if length <= 16:
    return 16
  step = max(8, 1 << (length.bit_length() - 3))
  return -(-length // step) * step


def _model_features(all_rows: Sequence[dict[str, Any]], converter: seqio.FeatureConverter
                    ) -> dict[str, np.ndarray]:
  """The converter's features for every row, [rows, max length], in one tf.data pass."""
  def ragged(key):
    ids = [r[key] for r in all_rows]
    return tf.RaggedTensor.from_row_lengths(
        np.concatenate(ids).astype(np.int32), np.array([len(i) for i in ids], np.int64))
  lengths = {k: max(1, max(len(r[k]) for r in all_rows)) for k in ("inputs", "targets")}
  ds = tf.data.Dataset.from_tensor_slices({"inputs": ragged("inputs"), "targets": ragged("targets")})
  chunks = list(converter(ds, lengths).batch(4096).as_numpy_iterator())
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _used_lengths(features: Mapping[str, np.ndarray], all_rows) -> dict[str, np.ndarray]:
  """Tokens each row uses, per feature prefix: an encoder-decoder model's encoder holds
  the inputs and its decoder the targets; a decoder-only model's decoder holds both."""
  inputs = np.array([len(r["inputs"]) for r in all_rows])
  targets = np.array([len(r["targets"]) for r in all_rows])
  if any(k.startswith("encoder_") for k in features):
    return {"encoder_": inputs, "decoder_": targets}
  return {"decoder_": inputs + targets}


def score_all(score_fn: Callable[[Mapping[str, np.ndarray]], Any],
              tasks: Sequence[TaskRequests], converter: seqio.FeatureConverter,
              batch_size: int, desc: str = "rank classification") -> list[np.ndarray]:
  """Every row's summed log-likelihood, per task in row order, from one loop over all
  rows sorted longest first; each batch is cut to its bucket and the last one padded to
  `batch_size` rows (padding rows and trailing padding change no real row's score)."""
  all_rows = [r for t in tasks for r in t.rows]
  scores = np.zeros(len(all_rows), np.float32)
  if all_rows:
    features = _model_features(all_rows, converter)
    used = _used_lengths(features, all_rows)
    # longest first, as lm-eval; ties keep task and row order
    order = np.lexsort([-v for v in reversed(list(used.values()))])
    with tqdm.tqdm(total=len(order), desc=desc, unit="req", dynamic_ncols=True,
                   disable=jax.process_index() != 0) as bar:
      for start in range(0, len(order), batch_size):
        take = order[start:start + batch_size]
        n = len(take)
        batch = {}
        width = {p: bucket(int(v[take].max())) for p, v in used.items()}
        for key, value in features.items():
          width_k = width["encoder_" if key.startswith("encoder_") else "decoder_"]
          value = value[take][:, :width_k]
          if value.shape[1] < width_k:
            value = np.pad(value, [(0, 0), (0, width_k - value.shape[1])])
          if n < batch_size:
            value = np.concatenate([value, np.zeros((batch_size - n,) + value.shape[1:], value.dtype)])
          batch[key] = value
        scores[take] = np.asarray(score_fn(batch))[:n]
        bar.update(n)
  out, start = [], 0
  for t in tasks:
    out.append(scores[start:start + len(t.rows)])
    start += len(t.rows)
  return out


def task_metrics(task_requests: TaskRequests, scores: np.ndarray, step: int | None,
                 loggers: Sequence[seqio.Logger]) -> dict[str, Any]:
  """The task's score metrics on its targets (its postprocessor), logged as
  `seqio.Evaluator` logs them; returns {metric: value}."""
  task, rows = task_requests.task, task_requests.rows
  targets = [task.postprocess_fn(r["targets_pretokenized"], example=r, is_target=True) for r in rows]
  scores = scores.tolist()
  metrics: dict[str, Any] = {}
  for fn in task.score_metric_fns:
    for key, value in fn(targets, scores).items():
      if key in metrics:
        raise ValueError(f"duplicate metric key {key!r} in task {task.name!r}")
      metrics[key] = value
  logged = {k: v if isinstance(v, seqio.metrics.MetricValue) else seqio.metrics.Scalar(v)
            for k, v in metrics.items()}
  for logger in loggers:
    logger(task_name=task.name, step=step, metrics=logged, dataset=rows, targets=targets,
           inferences={"score": scores})
  return metrics
