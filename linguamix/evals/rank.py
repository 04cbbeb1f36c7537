"""Rank classification in SeqIO terms, scored like lm-evaluation-harness.

A benchmark example becomes one (inputs, targets) pair per choice: inputs = the context,
targets = the continuation (target delimiter + choice). The model's `score_batch` sums
the log-likelihood of the target tokens (no EOS appended, so none is scored, unless gin
`score_eos.enabled = True`); the score metrics below regroup the pairs by their global
example id (the row's position in its release file, assigned before any host sharding).

The same pairs serve encoder-decoder models (context -> encoder, continuation ->
decoder targets) and decoder-only models (prefix-LM: context + continuation, loss on
the continuation only) through the model's feature converter.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping, Sequence

import gin
import numpy as np
import seqio
from sklearn import metrics as sk_metrics
import tensorflow as tf

from linguamix.evals import requests

# Python's str.isspace set, as RE2 classes (ASCII \s, Unicode separators, \x1c-\x1f, \x85).
_TRAILING_SPACE = r"[\s\p{Z}\x{1c}-\x{1f}\x{85}]+$"


# Plain TF functions (no Python control flow on tensors): autograph's conversion only
# costs tracing time, once per task.
_plain = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class Example:
  """One benchmark item: per-choice contexts and continuations, gold choice."""
  idx: int
  contexts: tuple[str, ...]
  continuations: tuple[str, ...]
  label: int
  flag: str = ""  # why the row is notable (e.g. a PAWS-X "NS" placeholder), counted
  # acc_norm's per-choice lengths in characters: lm-eval divides by len(choice), the
  # choice without the target delimiter (for partial scoring: the choice's context).
  norm_lengths: tuple[int, ...] = ()


def multiple_choice(idx: int, context: str, choices: Sequence[str], label: int,
                    delimiter: str = " ", flag: str = "") -> Example:
  """Same context for every choice; continuation = delimiter + choice."""
  return Example(idx, (context,) * len(choices), tuple(delimiter + c for c in choices), label,
                 flag, tuple(len(c) for c in choices))


def partial_scoring(idx: int, contexts: Sequence[str], continuation: str, label: int,
                    delimiter: str = " ") -> Example:
  """One context per choice, one shared continuation (XWinograd)."""
  return Example(idx, tuple(contexts), (delimiter + continuation,) * len(contexts), label,
                 norm_lengths=tuple(len(c) for c in contexts))


def to_dataset(examples: Sequence[Example]) -> tf.data.Dataset:
  """Examples as a tf.data.Dataset of `idx, contexts[n], continuations[n], label, flag,
  norm_length[n]`."""
  if not examples:
    raise ValueError("no examples to evaluate")
  n = {len(ex.contexts) for ex in examples}
  if len(n) != 1:
    raise ValueError(f"examples have differing numbers of choices {sorted(n)}")
  return tf.data.Dataset.from_tensor_slices({
      "idx": np.array([ex.idx for ex in examples], np.int64),
      "contexts": np.array([list(ex.contexts) for ex in examples], object),
      "continuations": np.array([list(ex.continuations) for ex in examples], object),
      "label": np.array([ex.label for ex in examples], np.int32),
      "flag": np.array([ex.flag for ex in examples], object),
      "norm_length": np.array([list(ex.norm_lengths) for ex in examples], np.int32),
  })


def rank_classification(ds: tf.data.Dataset) -> tf.data.Dataset:
  """One (inputs, targets) row per choice, with lm-eval's whitespace rule.

  Whitespace at the end of a context moves to the start of its continuation. Each row
  keeps `idx`, `choice`, `label`, `num_choices`, `flag` and `length` (the choice's
  length in characters without the delimiter, lm-eval's `acc_norm` divisor).
  """
  def expand(ex):
    contexts, continuations = ex["contexts"], ex["continuations"]
    stripped = tf.strings.regex_replace(contexts, _TRAILING_SPACE, "")
    moved = tf.strings.substr(contexts, tf.strings.length(stripped),
                              tf.strings.length(contexts) - tf.strings.length(stripped))
    targets = tf.strings.join([moved, continuations])
    n = tf.size(contexts)
    return tf.data.Dataset.from_tensor_slices({
        "idx": tf.fill([n], ex["idx"]),
        "choice": tf.range(n, dtype=tf.int32),
        "label": tf.fill([n], ex["label"]),
        "num_choices": tf.fill([n], n),
        "flag": tf.fill([n], ex["flag"]),
        "length": ex["norm_length"],
        "inputs": stripped,
        "targets": targets,
        "context": contexts,  # as written: lm-eval's empty-context test sees these
        "continuation": continuations,
    })
  return ds.flat_map(_plain(expand))


@gin.configurable
def score_eos(enabled: bool = False) -> bool:
  """Whether an EOS ends each continuation and is scored (lm-eval scores none; some
  encoder-decoder evaluations do): gin `score_eos.enabled = True`."""
  return enabled


def tokenize_pairs(ds: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
                   fmt: requests.Format = requests.Format()) -> tf.data.Dataset:
  """Token ids exactly as lm-evaluation-harness builds each request (`requests.py`).

  `fmt` (bound per task: `registry.rank_task`) says the model kind (causal: the
  continuation's ids are those of the encoded whole after the context's; seq2seq: the
  continuation alone, the context with the tokenizer's template, e.g. mT5's EOS), the
  `add_bos_token` override and whether the model's start slot holds BOS. An empty
  context becomes lm-eval's prefix token. Keeps `*_pretokenized` copies of the text.
  """
  encode_pair = requests.pair_encoder(output_features["targets"].vocabulary, fmt)
  eos = [requests.resolved(output_features["targets"].vocabulary).eos_id] if score_eos() else []

  def encode(context, continuation):
    ctx, cont = encode_pair(context.numpy().decode("utf-8"), continuation.numpy().decode("utf-8"))
    return np.array(ctx, np.int32), np.array(cont + eos, np.int32)

  def tokenize(ex):
    ex = dict(ex)
    ex["inputs_pretokenized"], ex["targets_pretokenized"] = ex["inputs"], ex["targets"]
    inputs, targets = tf.py_function(encode, [ex.pop("context"), ex.pop("continuation")],
                                     [tf.int32, tf.int32])
    inputs.set_shape([None])
    targets.set_shape([None])
    ex["inputs"], ex["targets"] = inputs, targets
    return ex
  return ds.map(_plain(tokenize), num_parallel_calls=tf.data.AUTOTUNE)


def check_fits(ds: tf.data.Dataset,
               sequence_length: Mapping[str, int] | None = None) -> tf.data.Dataset:
  """Fails on a request longer than the feature lengths: truncating it changes its score.

  (SeqIO trims silently when lengths are given; pass None to measure instead.)
  """
  if not sequence_length:
    return ds

  def check(ex):
    for key in ("inputs", "targets"):
      limit = sequence_length.get(key)
      if limit is not None:
        tf.debugging.assert_less_equal(
            tf.size(ex[key]), limit,
            message=f"rank-classification {key} longer than sequence_length[{key!r}]={limit}; "
                    "raise it or pass sequence_length=None")
    return ex
  return ds.map(_plain(check), num_parallel_calls=tf.data.AUTOTUNE)


def rank_target(target: str, example: Mapping[str, Any] | None = None,
                is_target: bool = False) -> Any:
  """Postprocessor: the target becomes the row's id, choice, gold label and length."""
  if not is_target:
    return target
  flag = example["flag"]
  return {
      "idx": int(example["idx"]), "choice": int(example["choice"]),
      "label": int(example["label"]), "num_choices": int(example["num_choices"]),
      "length": int(example["length"]),
      "flag": flag.decode("utf-8") if isinstance(flag, bytes) else str(flag),
  }


@dataclasses.dataclass
class _Grouped:
  idx: int
  label: int
  scores: np.ndarray   # [num_choices] summed log-likelihoods
  lengths: np.ndarray  # [num_choices] continuation characters
  flag: str


def group_by_example(targets: Sequence[Mapping[str, Any]], scores: Sequence[float]) -> list[_Grouped]:
  """Regroups per-choice rows by example id; every example needs all its choices."""
  if len(targets) != len(scores):
    raise ValueError(f"{len(targets)} targets but {len(scores)} scores")
  rows = collections.defaultdict(dict)
  meta = {}
  for t, s in zip(targets, scores):
    if t["choice"] in rows[t["idx"]]:
      raise ValueError(f"example {t['idx']} choice {t['choice']} scored twice")
    rows[t["idx"]][t["choice"]] = (float(s), t["length"])
    meta[t["idx"]] = t
  grouped = []
  for idx in sorted(rows):
    t, by_choice = meta[idx], rows[idx]
    if sorted(by_choice) != list(range(t["num_choices"])):
      raise ValueError(f"example {idx}: choices {sorted(by_choice)} scored, expected "
                       f"{t['num_choices']} (was the eval set truncated mid-example?)")
    s, length = zip(*(by_choice[c] for c in range(t["num_choices"])))
    grouped.append(_Grouped(idx, t["label"], np.array(s), np.array(length, float), t["flag"]))
  return grouped


Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def mean_stderr(values: Sequence[float]) -> float:
  """lm-eval's `mean_stderr`: sample standard deviation (n - 1) / sqrt(n); 0 for n < 2."""
  values = np.asarray(values, float)
  if len(values) < 2:
    return 0.0
  return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def with_uncertainty(name: str, values: Sequence[float]) -> dict[str, float]:
  """`name` (percent), `name_stderr` and the normal 95% interval `name_ci_low/high`."""
  mean, se = 100.0 * float(np.mean(values)), 100.0 * mean_stderr(values)
  return {name: mean, f"{name}_stderr": se,
          f"{name}_ci_low": max(0.0, mean - Z_95 * se), f"{name}_ci_high": min(100.0, mean + Z_95 * se)}


def predictions(g: _Grouped) -> tuple[int, int]:
  """lm-eval's (acc, acc_norm) picks: argmax of the log-likelihoods, and of them divided
  by each choice's length in characters; ties go to the first choice (np.argmax)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return int(np.argmax(g.scores)), int(np.argmax(g.scores / g.lengths))


def rank_accuracy(targets: Sequence[Mapping[str, Any]], scores: Sequence[float]) -> dict[str, float]:
  """`acc` and `acc_norm` in percent with standard errors and 95% intervals; counts."""
  grouped = group_by_example(targets, scores)
  picks = [predictions(g) for g in grouped]
  return {
      **with_uncertainty("acc", [p == g.label for (p, _), g in zip(picks, grouped)]),
      **with_uncertainty("acc_norm", [p == g.label for (_, p), g in zip(picks, grouped)]),
      "num_examples": len(grouped),
      "num_flagged": sum(bool(g.flag) for g in grouped),
      # what guessing scores (percent): the mean of 1 / number of choices
      "chance": 100.0 * float(np.mean([1.0 / len(g.scores) for g in grouped])),
  }


def binary_f1(targets: Sequence[Mapping[str, Any]], scores: Sequence[float]) -> dict[str, float]:
  """F1 of the positive class (choice 1) for two-way tasks (PAWS-X: paraphrase), percent."""
  grouped = group_by_example(targets, scores)
  gold = [g.label for g in grouped]
  pred = [int(np.argmax(g.scores)) for g in grouped]
  return {"f1": 100.0 * float(sk_metrics.f1_score(gold, pred, pos_label=1, zero_division=0))}
