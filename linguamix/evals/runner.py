"""`evaluate`: score benchmark tasks with a linguamix model (T5X model contract).

Rank-classification tasks call the model's `score_batch`, all their requests in one
length-sorted loop (`batched`); generation tasks run through `seqio.Evaluator` and the
model's `predict_batch`. A tqdm bar shows requests/s. Every host scores the whole eval
set (the sets are small); only host 0 writes files.
"""

from __future__ import annotations

import functools
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
from linguamix.evals import batched
from linguamix.evals import data
from linguamix.evals import generation
from linguamix.evals import loggers as loggers_lib
from linguamix.evals import registry
from linguamix.evals import requests
from linguamix.models import base
from linguamix.t5x_tasks import vocab as vocab_lib

LOGGERS = (loggers_lib.MetricsLogger, loggers_lib.ScoresLogger)
_PREDICTION = seqio.metrics.ModelOutputType.PREDICTION


def _check_name(name: str) -> None:
  family, lang = registry.family_of(name)
  if lang and family in registry.BENCHMARKS:
    registry.check_language(registry.BENCHMARKS[family], lang)
  seqio.get_mixture_or_task(name)  # unknown names fail here, listing what exists


def _fit(v: np.ndarray, length: int) -> np.ndarray:
  """`v` [B, L] cut or zero-padded to [B, length]."""
  if v.shape[1] >= length:
    return v[:, :length]
  return np.pad(v, [(0, 0), (0, length - v.shape[1])])


def _batches(ds: tf.data.Dataset, batch_size: int, by_length: bool):
  """(ids[n], batch padded to batch_size, n) from an enumerated model dataset.

  `by_length` (scoring): rows sorted by length, longest first, and each batch cut (or
  padded) to its longest row rounded up to a power of two. Trailing padding changes no score:
  causal attention and the padding masks keep it out of every real position."""
  rows = list(ds.as_numpy_iterator())
  if not rows:
    return
  ids = np.array([i for i, _ in rows])
  features = {k: np.stack([r[k] for _, r in rows]) for k in rows[0][1]}
  order = np.arange(len(ids))
  lengths = {}
  if by_length:
    for prefix in ("encoder_", "decoder_"):
      keys = [k for k in features if k.startswith(prefix)]
      if keys:
        used = np.any(np.stack([features[k] != 0 for k in keys]), axis=0)
        lengths[prefix] = np.where(used.any(-1), used.shape[-1] - np.argmax(used[:, ::-1], -1), 0)
    if lengths:
      order = np.lexsort([-v for v in lengths.values()])
  for start in range(0, len(order), batch_size):
    take = order[start:start + batch_size]
    n = len(take)
    batch = {}
    for k, v in features.items():
      v = v[take]
      prefix = "encoder_" if k.startswith("encoder_") else "decoder_"
      if prefix in lengths:
        v = _fit(v, batched.bucket(int(lengths[prefix][take].max())))
      if n < batch_size:
        v = np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
      batch[k] = v
    yield ids[take], batch, n


def _model_fn(step_fn: Callable[[Mapping[str, np.ndarray]], Any], batch_size: int,
              name: str, to_output: Callable[[np.ndarray], Any], by_length: bool = False):
  """A seqio score/predict fn: [(id, output)] for every row, with a progress bar."""
  def model_fn(ds: tf.data.Dataset, model_feature_shapes=None):
    del model_feature_shapes
    out = []
    total = int(ds.cardinality().numpy()) if ds.cardinality() >= 0 else None
    with tqdm.tqdm(total=total, desc=name, unit="req", dynamic_ncols=True,
                   disable=jax.process_index() != 0) as bar:
      for ids, batch, n in _batches(ds, batch_size, by_length):
        result = np.asarray(step_fn(batch))[:n]
        out.extend((int(i), to_output(r)) for i, r in zip(ids, result))
        bar.update(n)
    return sorted(out, key=lambda pair: pair[0])
  return model_fn


def _predictions(task: seqio.Task, evaluator: seqio.Evaluator, outputs) -> dict[int, str]:
  """idx -> the task's decoded, post-processed predictions (as its metrics saw them)."""
  vocabulary = task.output_features["targets"].vocabulary
  examples = evaluator.cached_task_datasets[task.name]
  return {int(ex["idx"]): task.postprocess_fn(vocabulary.decode(tokens), example=ex, is_target=False)
          for ex, tokens in zip(examples.as_numpy_iterator(), outputs[task.name][_PREDICTION])}


def _further_turns(task: seqio.Task, evaluator: seqio.Evaluator, outputs, split: str,
                   output_dir: str, model_id: str, writes: bool, evaluate_name) -> None:
  """Generates a multi-turn benchmark's later turns after `task` (its first turn), each
  with the model's own earlier answers, then writes the conversations."""
  family, lang = registry.family_of(task.name)
  benchmark = registry.BENCHMARKS.get(family)
  if getattr(benchmark, "next_turn", None) is None or _PREDICTION not in outputs.get(task.name, {}):
    return
  release = generation.release_split(benchmark, split)
  answers = {i: [p] for i, p in _predictions(task, evaluator, outputs).items()}
  turn = 1
  while True:
    follow = benchmark.next_turn(lang, release, answers)
    if not follow:
      break
    turn += 1
    name = generation.follow_up_task(benchmark, lang, turn, follow)
    (next_task,), next_evaluator, next_outputs = evaluate_name(name)
    for i, p in _predictions(next_task, next_evaluator, next_outputs).items():
      answers[i].append(p)
  if writes and benchmark.save_answers is not None:
    path = benchmark.save_answers(lang, release, answers, output_dir, model_id)
    logging.info("%s: %d conversations of %d turns in %s", task.name, len(answers), turn, path)


def evaluate(model: base.BaseModel, params: Any, task_or_mixture_names: str | Sequence[str],
             output_dir: str, *, split: str = registry.DEFAULT_SPLIT, batch_size: int = 32,
             sequence_length: Mapping[str, int] | None = None,
             num_examples: int | None = None, step: int | None = None,
             feature_converter: seqio.FeatureConverter | None = None,
             logger_cls: Sequence[type[seqio.Logger]] = LOGGERS,
             rng: jax.Array | None = None, jit: bool = True,
             add_bos_token: bool | None = None,
             model_id: str = "linguamix") -> dict[str, dict[str, float]]:
  """Scores tasks/mixtures; returns {task: {metric: value}} and writes `output_dir`.

  Rank-classification requests are lm-evaluation-harness's (`requests.py`) for the
  model's kind and tokenizer; a decoder-only model scores with the start token its
  tokenizer implies. `add_bos_token`: lm-eval's override (None: the tokenizer's default).
  The requests of all rank-classification tasks are scored in one length-sorted loop
  (`batched`); other tasks (generation) run through `seqio.Evaluator`, task by task.

  `split`: "default" (each benchmark's reported split), "validation" or "test".
  `sequence_length`: task feature lengths; None measures the longest example.
  `num_examples`: the first rows (rank classification: choices) of each task.
  `jit`: compile `score_batch` (off for scorers that are plain Python).
  `model_id`: the model's name in multi-turn answer files (FastChat's `model_id`).

  Multi-turn benchmarks (MT-Bench-X) go on after their first turn: each later turn is
  the task `{family}_turn{t}.{lang}` of prompts holding the model's own earlier answers
  (its metrics and scores files beside the first turn's), then the conversations are
  written for the judge.
  """
  names = [task_or_mixture_names] if isinstance(task_or_mixture_names, str) \
      else list(task_or_mixture_names)
  # This evaluation's own count of skipped malformed rows (another evaluation in the
  # same process keeps its own).
  skips = data.Skips()
  with data.counting(skips):
    for name in names:
      _check_name(name)
    tasks = list({t.name: t for name in names
                  for t in seqio.get_subtasks(seqio.get_mixture_or_task(name))}.values())
    lacking = [t.name for t in tasks if split not in t.splits]
    if lacking:
      raise ValueError(f"split {split!r} not offered by {lacking}")
    for t in tasks:  # generation feeds the task's token ids to the model (ranking re-tokenizes)
      if not batched.is_rank_task(t) and "targets" in t.output_features:
        vocab_lib.check_same_tokenization(f"task {t.name!r}", t.output_features["targets"].vocabulary,
                                          model.vocabulary)
    converter = feature_converter or model.feature_converter_cls(pack=False)
    model, fmt = requests.for_model(model, add_bos_token)
    score = jax.jit(model.score_batch) if jit else model.score_batch
    rng = jax.random.PRNGKey(0) if rng is None else rng
    writes = jax.process_index() == 0
    results: dict[str, dict[str, float]] = {}
    # MetricsLogger records the request format the scores were computed with.
    logger_cls = [functools.partial(cls, requests_format=fmt)
                  if issubclass(cls, loggers_lib.MetricsLogger) else cls for cls in logger_cls]
    ranked = [batched.task_requests(t, split, num_examples, sequence_length, fmt)
              for t in tasks if batched.is_rank_task(t)]
    if ranked:
      loggers = [cls(output_dir=output_dir) for cls in logger_cls] if writes else []
      token_fn = None
      if getattr(model, "shares_prefixes", False):  # score each example's context once
        tokens = jax.jit(model.token_log_likelihood) if jit else model.token_log_likelihood
        token_fn = lambda b: tokens(params, b)  # noqa: E731
      scores = batched.score_all(lambda b: score(params, b), ranked, converter, batch_size,
                                 token_fn=token_fn)
      for task_requests, task_scores in zip(ranked, scores):
        results[task_requests.task.name] = loggers_lib.scalars(
            batched.task_metrics(task_requests, task_scores, step, loggers))

    def evaluate_name(name: str):
      """One generation task through `seqio.Evaluator`: ([task], evaluator, outputs)."""
      evaluator = seqio.Evaluator(
          name, feature_converter=converter, eval_split=split,
          sequence_length=sequence_length, num_examples=num_examples,
          logger_cls=logger_cls if writes else (), log_dir=output_dir,
          async_compute_metrics=False)
      metrics, outputs = evaluator.evaluate(
          compute_metrics=True, step=step,
          score_fn=_model_fn(lambda b: score(params, b), batch_size, name, float, by_length=True),
          predict_fn=_model_fn(lambda b: model.predict_batch(params, b, rng), batch_size,
                               name, lambda r: r.tolist()))
      results.update({t: loggers_lib.scalars(m) for t, m in metrics.result().items()})
      return seqio.get_subtasks(seqio.get_mixture_or_task(name)), evaluator, outputs

    for task in tasks:
      if batched.is_rank_task(task):
        continue
      (task,), evaluator, outputs = evaluate_name(task.name)
      _further_turns(task, evaluator, outputs, split, output_dir, model_id, writes, evaluate_name)
  if writes:
    tf.io.gfile.makedirs(output_dir)
    with atomic.atomic_write(os.path.join(output_dir, "run.json")) as f:
      json.dump({"tasks": names, "split": split, "step": step, "requests": fmt.record(),
                 "skipped_malformed_rows": skips.counts(), "metrics": results},
                f, indent=2, ensure_ascii=False)
  logging.info("evaluated %s: %s", names, results)
  return results
