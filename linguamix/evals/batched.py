"""Rank-classification requests of every task scored in one loop.

lm-evaluation-harness gathers the requests of all its tasks, sorts them by length and
runs one loop. Here too: the requests of every rank-classification task asked for are
built in Python (`requests.pair_encoder`, the ids the SeqIO task's `tokenize_pairs`
builds) and converted to the model's features as its SeqIO feature converter converts
them, all at once. A decoder-only model scores an example's requests in one row: the
context they share once, then each continuation as a branch that attends to it
(`decoder_branch_ids`); those rows are packed several to a row of one width, as
training packs examples (segment ids keep them apart), so the jitted scorer traces and
compiles once whatever the tasks, languages and lengths. Other models' requests are
sorted longest first and scored in batches cut to a few length buckets (a compilation
each). The SeqIO tasks' own postprocessor and metric functions then score each task,
and the loggers write its files, as `seqio.Evaluator` would."""

from __future__ import annotations

import bisect
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
                  sequence_length: Mapping[str, int] | None = None,
                  fmt: requests.Format = requests.Format()) -> TaskRequests:
  """The task's requests for a model of format `fmt`: the rows SeqIO's
  `rank_classification` + `tokenize_pairs` + `check_fits` give, without a tf.data pass.

  `num_examples` keeps the first rows (choices), as `seqio.Evaluator` does."""
  benchmark, lang = registry.RANK_TASKS[task.name]
  vocab = task.output_features["targets"].vocabulary
  encode = requests.pair_encoder(vocab, fmt)
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
  """The padded length of a batch whose longest row has `length` tokens: 16, 24, 32,
  then four steps per doubling (40, 48, 56, 64, 80, ...). At most a quarter padding,
  and a handful of shapes for all tasks, so a handful of compilations."""
  if length <= 16:
    return 16
  step = max(8, 1 << (length.bit_length() - 3))
  return -(-length // step) * step


def _model_features(all_rows: Sequence[dict[str, Any]], converter: seqio.FeatureConverter
                    ) -> dict[str, np.ndarray]:
  """The converter's features for every row, [rows, max length]: in NumPy where the
  converter builds SeqIO's rows so (`convert_unpacked`), else in one tf.data pass."""
  convert = getattr(converter, "convert_unpacked", None)
  if convert is not None and not converter.pack:
    return convert([r["inputs"] for r in all_rows], [r["targets"] for r in all_rows])
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


def _batch_of(rows: Sequence[Mapping[str, np.ndarray]], widths: Mapping[str, int],
              batch_size: int) -> dict[str, np.ndarray]:
  """Rows stacked, each feature cut or zero-padded to its prefix's width, then zero rows
  up to `batch_size` (one shape per bucket, so one compilation)."""
  batch = {}
  for key in rows[0]:
    width = widths["encoder_" if key.startswith("encoder_") else "decoder_"]
    value = np.zeros((batch_size, width), rows[0][key].dtype)
    for i, row in enumerate(rows):
      n = min(width, len(row[key]))
      value[i, :n] = row[key][:n]
    batch[key] = value
  return batch


def _shared_rows(features: Mapping[str, np.ndarray], length: np.ndarray,
                 groups: Sequence[np.ndarray]):
  """Decoder rows that score each example's requests together: the positions all its
  requests agree on (input, target, weight: the shared context) once as branch 0, then
  each request's remaining positions as its own branch, positions continuing the shared
  ones. Yields (row features, [(request, branch slice)], shared slice); the packer gives
  each row its segment id."""
  for group in groups:
    cols = [features[k][group] for k in features]
    shortest = int(length[group].min())
    same = np.ones(shortest - 1, bool)  # every request keeps one position of its own
    for c in cols:
      same &= (c[:, :shortest - 1] == c[:1, :shortest - 1]).all(0)
    shared = int(np.cumprod(same).sum())
    parts = {k: [features[k][group[0], :shared]] for k in features}
    positions, branches, owners = [np.arange(shared)], [np.zeros(shared, np.int32)], []
    at = shared
    for b, r in enumerate(group, start=1):
      n = int(length[r])
      for k in features:
        parts[k].append(features[k][r, shared:n])
      positions.append(np.arange(shared, n))
      branches.append(np.full(n - shared, b, np.int32))
      owners.append((int(r), slice(at, at + n - shared)))
      at += n - shared
    row = {k: np.concatenate(v) for k, v in parts.items()}
    row["decoder_positions"] = np.concatenate(positions).astype(np.int32)
    row["decoder_branch_ids"] = np.concatenate(branches)
    yield row, owners, slice(0, shared)


def score_all(score_fn: Callable[[Mapping[str, np.ndarray]], Any],
              tasks: Sequence[TaskRequests], converter: seqio.FeatureConverter,
              batch_size: int, token_fn: Callable[[Mapping[str, np.ndarray]], Any] | None = None,
              desc: str = "rank classification") -> list[np.ndarray]:
  """Every row's summed log-likelihood, per task in row order, from one loop over all
  rows sorted longest first; each batch is cut to its bucket and the last one padded to
  `batch_size` rows (padding rows and trailing padding change no real row's score).

  `token_fn` (per-position log-likelihoods of a decoder-only model that takes
  `decoder_branch_ids`): each example's requests share one row, their common context
  scored once (`_shared_rows`), those rows packed into rows of one width (`_pack`, one
  compilation); a batch then holds `batch_size` requests on average."""
  all_rows = [r for t in tasks for r in t.rows]
  scores = np.zeros(len(all_rows), np.float64)
  if all_rows:
    features = _model_features(all_rows, converter)
    used = _used_lengths(features, all_rows)
    if token_fn is not None and list(used) == ["decoder_"]:
      _score_shared(token_fn, features, used["decoder_"], _groups(tasks), batch_size, scores, desc)
    else:
      # longest first, as lm-eval; ties keep task and row order
      order = np.lexsort([-v for v in reversed(list(used.values()))])
      rows = [{k: v[i] for k, v in features.items()} for i in range(len(all_rows))]
      with _bar(len(order), desc) as bar:
        for start in range(0, len(order), batch_size):
          take = order[start:start + batch_size]
          widths = {p: bucket(int(v[take].max())) for p, v in used.items()}
          batch = _batch_of([rows[i] for i in take], widths, batch_size)
          scores[take] = np.asarray(score_fn(batch))[:len(take)]
          bar.update(len(take))
  out, start = [], 0
  for t in tasks:
    out.append(scores[start:start + len(t.rows)].astype(np.float32))
    start += len(t.rows)
  return out


def _bar(total: int, desc: str):
  return tqdm.tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True,
                   disable=jax.process_index() != 0)


def _groups(tasks: Sequence[TaskRequests]) -> list[np.ndarray]:
  """Global row indices of each example's requests (consecutive rows of one idx)."""
  groups, start = [], 0
  for t in tasks:
    for i, row in enumerate(t.rows):
      if i and row["idx"] == t.rows[i - 1]["idx"]:
        groups[-1].append(start + i)
      else:
        groups.append([start + i])
    start += len(t.rows)
  return [np.array(g) for g in groups]


def _pack(sizes: Sequence[int], capacity: int) -> list[list[int]]:
  """Indices of `sizes` in bins of `capacity`: best-fit decreasing (each item, longest
  first, into the fullest bin it still fits), so few bins and little padding."""
  bins: list[list[int]] = []
  free: list[tuple[int, int]] = []  # (room left, bin), sorted
  for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
    at = bisect.bisect_left(free, (sizes[i], -1))
    if at == len(free):
      bins.append([i])
      room, b = capacity - sizes[i], len(bins) - 1
    else:
      room, b = free.pop(at)
      bins[b].append(i)
      room -= sizes[i]
    bisect.insort(free, (room, b))
  return bins


def _score_shared(token_fn, features, length, groups, batch_size, scores, desc) -> None:
  shared = list(_shared_rows(features, length, groups))
  sizes = [len(row["decoder_positions"]) for row, _, _ in shared]
  # One shape for the whole run, so one trace and one compilation: each example's row
  # (its context once, then its continuations) is a segment of a packed row of
  # `width` tokens, as training packs examples; segments never attend to each other.
  width = bucket(max(sizes))
  bins = _pack(sizes, width)
  # `batch_size` counts requests, as lm-eval's does: packed rows per batch hold that
  # many on average (at least one row), the same for every batch
  rows = max(1, round(batch_size * len(bins) / len(scores)))
  with _bar(len(scores), desc) as bar:
    for start in range(0, len(bins), rows):
      packed, owners = [], []
      for members in bins[start:start + rows]:
        parts, at, own = [], 0, []
        for segment, i in enumerate(members, start=1):
          row, requests_, prefix = shared[i]
          parts.append({**row, "decoder_segment_ids": np.full(sizes[i], segment, np.int32)})
          own.append((at, requests_, prefix))
          at += sizes[i]
        packed.append({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        owners.append(own)
      token_ll = np.asarray(token_fn(_batch_of(packed, {"decoder_": width}, rows)), np.float64)
      for ll, own in zip(token_ll, owners):
        for at, requests_, prefix in own:
          context = ll[at + prefix.start:at + prefix.stop].sum()
          for request, branch in requests_:
            scores[request] = context + ll[at + branch.start:at + branch.stop].sum()
          bar.update(len(requests_))


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
