"""Packing efficiency of a mixture at given feature lengths, and lengths to suggest.

Efficiency is the share of non-pad positions in the batches training's feature
converter builds with `pack=True` (SeqIO's converter with linguamix's faster packer:
SeqIO's greedy next-fit rows, in blocks of max(lengths) examples) from examples drawn
from the mixture as training draws them (rate-sampled, shuffled). Nothing here is a
model of the packer: the packer runs. SeqIO and TensorFlow only (no JAX), like the rest
of `linguamix.mixtures`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from linguamix.models import feature_converters

FEATURES = ("inputs", "targets")
CONVERTERS = {"encoder-decoder": feature_converters.EncDecFeatureConverter,
              "decoder": feature_converters.DecoderFeatureConverter}


def sample_examples(name: str, num_examples: int = 2000, seed: int = 0) -> list[dict]:
  """`num_examples` tokenized examples (inputs, targets as int32 arrays) from the mixture or
  task `name`, drawn as training draws them (untrimmed: lengths are the data's)."""
  mt = seqio.get_mixture_or_task(name)
  # A sample, not epochs: preprocessing the whole selection first would not pay.
  ds = mt.get_dataset(None, split="train", shuffle=True, seed=seed, num_epochs=None,
                      use_cached=False, try_in_mem_cache=False)
  out = []
  for ex in ds.take(num_examples).as_numpy_iterator():
    out.append({k: np.asarray(ex[k], np.int32) for k in FEATURES})
  return out


def length_stats(examples: Sequence[Mapping[str, np.ndarray]]) -> dict:
  """Per feature: mean, median, p90, p99 and max length in tokens."""
  stats = {}
  for k in FEATURES:
    n = np.array([len(e[k]) for e in examples])
    stats[k] = {"mean": float(n.mean()), "p50": float(np.percentile(n, 50)),
                "p90": float(np.percentile(n, 90)), "p99": float(np.percentile(n, 99)),
                "max": int(n.max())}
  return stats


def _dataset(examples, lengths):
  """The examples trimmed to `lengths`, as a Task's get_dataset(sequence_length) trims them."""
  return tf.data.Dataset.from_generator(
      lambda: ({k: e[k][:lengths[k]] for k in FEATURES} for e in examples),
      output_signature={k: tf.TensorSpec([None], tf.int32) for k in FEATURES})


def efficiency(examples: Sequence[Mapping[str, np.ndarray]], lengths: Mapping[str, int],
               model: str = "encoder-decoder", pack: bool = True) -> dict:
  """Non-pad share of the converter's batches, and the share of tokens lost to truncation.

  The last packed row is left out: in training the stream goes on and fills it.
  """
  converter = CONVERTERS[model](pack=pack)
  rows = list(converter(_dataset(examples, lengths), dict(lengths)).as_numpy_iterator())
  if pack and len(rows) > 1:
    rows = rows[:-1]
  keys = [k for k in ("encoder_input_tokens", "decoder_target_tokens") if k in rows[0]]
  used = sum(int(np.sum(r[k] != 0)) for r in rows for k in keys)
  slots = sum(r[k].size for r in rows for k in keys)
  kept = {k: sum(min(len(e[k]), lengths[k]) for e in examples) for k in FEATURES}
  total = {k: sum(len(e[k]) for e in examples) for k in FEATURES}
  return {"efficiency": used / max(slots, 1), "rows": len(rows),
          "truncated": 1 - sum(kept.values()) / max(sum(total.values()), 1)}


def _round(x: float, multiple: int, floor: float) -> int:
  """The multiple of `multiple` nearest to x, but never below `floor`."""
  return int(multiple * max(round(x / multiple), math.ceil(floor / multiple), 1))


def suggest_lengths(examples: Sequence[Mapping[str, np.ndarray]], model: str = "encoder-decoder",
                    target: float = 0.9, multiple: int = 16, max_tries: int = 10) -> dict:
  """Small lengths (multiples of `multiple`) that keep 99% of examples whole in each
  feature, split inputs : targets as their mean lengths are, and pack to `target`.

  Starts at about 8 examples per row (next-fit then wastes ~1/16 of a row), grows by
  1.25x and measures each candidate with the packer (a decoder packs inputs + targets
  into one row, each trimmed to its own length first); returns the first that reaches
  `target` (else the best tried) with its efficiency.
  """
  st = length_stats(examples)
  mean = {k: max(st[k]["mean"], 1.0) for k in FEATURES}
  floor = {k: st[k]["p99"] for k in FEATURES}
  share = mean["inputs"] / (mean["inputs"] + mean["targets"])
  total = max(floor["inputs"] / share, floor["targets"] / (1 - share),
              8 * (mean["inputs"] + mean["targets"]))
  best = None
  for _ in range(max_tries):
    lengths = {"inputs": _round(total * share, multiple, floor["inputs"]),
               "targets": _round(total * (1 - share), multiple, floor["targets"])}
    result = {"lengths": lengths, **efficiency(examples, lengths, model)}
    if best is None or result["efficiency"] > best["efficiency"]:
      best = result
    if result["efficiency"] >= target:
      return result
    total *= 1.25
  return best


# Suggestions aim at 92% on the sample so the training pipeline, drawing other examples,
# stays above 90% (one sample of 1,000 read 90.6% where the pipeline then packed 88.7%).
SUGGEST_TARGET = 0.92


def report(name: str, lengths: Mapping[str, int] | None = None, model: str = "encoder-decoder",
           num_examples: int = 2000, target: float = SUGGEST_TARGET) -> dict:
  """Length distribution, packing efficiency at `lengths` (if given) and suggested lengths."""
  examples = sample_examples(name, num_examples)
  out = {"mixture": name, "model": model, "examples": len(examples),
         "length_stats": length_stats(examples),
         "suggested": suggest_lengths(examples, model, target)}
  if lengths is not None:
    out["at_lengths"] = {"lengths": dict(lengths), **efficiency(examples, lengths, model)}
  return out


def format_report(r: dict) -> str:
  st = r["length_stats"]
  dist = "; ".join(f"{k} mean {v['mean']:.0f}, p99 {v['p99']:.0f}, max {v['max']}" for k, v in st.items())
  s = r["suggested"]
  lines = [f"lengths ({r['examples']:,} examples drawn as training draws them): {dist}"]
  if "at_lengths" in r:
    a = r["at_lengths"]
    lines.append(f"packing ({r['model']}, SeqIO pack=True) at inputs {a['lengths']['inputs']} / "
                 f"targets {a['lengths']['targets']}: {a['efficiency']:.1%} non-pad, "
                 f"{a['truncated']:.1%} of tokens truncated")
  lines.append(f"suggested TASK_FEATURE_LENGTHS = {{'inputs': {s['lengths']['inputs']}, "
               f"'targets': {s['lengths']['targets']}}}: {s['efficiency']:.1%} non-pad packed "
               f"({r['model']}), {s['truncated']:.1%} of tokens truncated")
  return "\n".join(lines)
