"""One epoch in packed batches: what TRAIN_EPOCHS and `mixtures show` count.

An epoch is what the training stream holds for `num_epochs=1`: for a recipe in epoch
mode every selected example once; for a task, its train split; for a rate-sampled
mixture, its first N draws (N = its train examples). It is packed by the model's
feature converter at the given lengths, in the order of the given seed (packing
depends on the order), into rows; an epoch is `rows / batch_size` batches. Later
epochs are other permutations and pack within a row or two of the first, so
`TRAIN_EPOCHS = E` trains `ceil(E * rows / batch_size)` steps.

Counting runs the input pipeline over one epoch, so counts are cached in memory and,
for recipe mixtures, on disk (`LINGUAMIX_CACHE_DIR` or ~/.cache/linguamix, folder
`epoch_counts`), keyed by everything the count depends on: the mixture's selected ids
and gin values, lengths, converter, vocabulary, seed and data root.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Mapping

import seqio
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class EpochCount:
  mixture: str
  examples: int
  packed_rows: int
  batch_size: int
  lengths: Mapping[str, int]
  converter: str
  seed: int

  @property
  def batches(self) -> float:
    return self.packed_rows / self.batch_size

  def steps(self, epochs: float) -> int:
    return math.ceil(epochs * self.packed_rows / self.batch_size - 1e-9)

  def describe(self) -> str:
    lengths = " ".join(f"{k}={v}" for k, v in self.lengths.items())
    return (f"one epoch of {self.mixture} (seed {self.seed}) = {self.examples:,} examples -> "
            f"{self.packed_rows:,} packed rows ({self.converter}, {lengths}) = "
            f"{self.batches:,.2f} batches of {self.batch_size}")


_MEMORY: dict[str, EpochCount] = {}


def _vocab_key(mt) -> str:
  vocab = next(iter(mt.output_features.values())).vocabulary
  vocab = getattr(vocab, "resolved", vocab)
  if isinstance(vocab, seqio.SentencePieceVocabulary):
    return f"spm:{vocab.sentencepiece_model_file}:{vocab.extra_ids}"
  return f"{type(vocab).__name__}:{vocab.vocab_size}"


def _recipe_key(mt) -> str | None:
  """A digest of what a recipe mixture's epoch holds, or None for other providers."""
  from linguamix.mixtures import registry
  from linguamix.t5x_tasks import root
  if not isinstance(mt, registry.RecipeMixture):
    return None
  selection = mt.check()
  h = hashlib.sha256(repr((mt.epoch_key(), root.data_root())).encode())
  for lang in mt.recipe.langs:
    h.update(lang.encode())
    h.update("\0".join(selection[lang]["train"]).encode())
  return h.hexdigest()


def _cache_path(key: str) -> str:
  from linguamix.t5x_tasks import sample_data
  return os.path.join(sample_data.cache_dir(), "epoch_counts", f"{key}.json")


def count_epoch(name: str, task_feature_lengths: Mapping[str, int], batch_size: int,
                converter: seqio.FeatureConverter, seed: int) -> EpochCount:
  """Packed rows of one epoch of `name`'s train split (cached; see the module doc)."""
  from linguamix.mixtures import registry
  mt = seqio.get_mixture_or_task(name)
  lengths = dict(sorted(task_feature_lengths.items()))
  # By class name: linguamix's converters keep their SeqIO base's name, as they build
  # the same rows, so counts cached with either stay valid.
  conv = f"{type(converter).__name__}(pack={converter.pack})"
  recipe_key = _recipe_key(mt)
  key = hashlib.sha256(json.dumps([name, lengths, conv, _vocab_key(mt), seed, recipe_key,
                                   batch_size]).encode()).hexdigest()[:32]
  if key in _MEMORY:
    return _MEMORY[key]
  path = _cache_path(key) if recipe_key else None
  if path and os.path.exists(path):
    with open(path) as f:
      count = EpochCount(**json.load(f))
    _MEMORY[key] = count
    return count
  epoch_exact = isinstance(mt, seqio.Task) or (
      isinstance(mt, registry.RecipeMixture) and mt.recipe.sampling == "epoch")
  examples = mt.num_input_examples("train")
  if epoch_exact:
    ds = mt.get_dataset(lengths, split="train", shuffle=True, seed=seed, num_epochs=1)
  else:
    ds = mt.get_dataset(lengths, split="train", shuffle=True, seed=seed,
                        num_epochs=None).take(examples)
  if examples is None:  # a source that does not know its size
    examples = int(ds.reduce(tf.constant(0, tf.int64), lambda a, _: a + 1))
  rows = converter(ds, lengths).reduce(tf.constant(0, tf.int64), lambda a, _: a + 1)
  count = EpochCount(name, int(examples), int(rows), batch_size, lengths, conv, int(seed))
  _MEMORY[key] = count
  if path:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      json.dump(dataclasses.asdict(count), f)
    os.replace(tmp, path)
  return count
