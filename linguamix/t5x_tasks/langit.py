"""LANGIT (sPhinX): prefix each example with N in {0..6} same-language exemplars.

Two halves, so the draw is exact and the fit uses the real tokenizer:
* `draw_exemplars` (run by the data source, which knows the pool) draws N per example
  from a seeded distribution and N other examples, never the example itself; seeded by
  (seed, language, example id), so the draw does not depend on order or sharding. The
  pool is the same language's *training selection of the same recipe*
  (`InstructionSource.langit_pool`): never a validation item, never an item outside
  the recipe's budget, for training and validation examples alike;
* `langit_fit` (a SeqIO preprocessor, which knows `sequence_length`) joins them in
  FLAN's format, `input\\n\\ntarget\\n\\n\\ninput...`, dropping the farthest exemplars
  until the tokenized inputs fit `sequence_length['inputs']`.

Both take a `LangitConfig`. A recipe built with `mixtures.build` resolves it once and
passes it down; only tasks registered at import without one (`sphinx_langit.*`, for
upstream T5X gin files, which bind `LangitConfig` after the import) read gin's when
their data is made (`resolved`).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

import gin
import seqio
import tensorflow as tf


@gin.configurable(module="linguamix.t5x_tasks")
@dataclasses.dataclass(frozen=True)
class LangitConfig:
  max_shots: int = 6
  shot_weights: Sequence[float] | None = None  # P(N = 0..max_shots); None: uniform
  seed: int = 0
  input_target_sep: str = "\n\n"
  exemplar_sep: str = "\n\n\n"

  def __post_init__(self):
    if self.shot_weights is not None and (len(self.shot_weights) != self.max_shots + 1
                                          or sum(self.shot_weights) <= 0):
      raise ValueError(f"LangitConfig.shot_weights={self.shot_weights!r}: need "
                       f"{self.max_shots + 1} weights (N = 0..{self.max_shots}) with a positive sum")


def resolved(config: LangitConfig | None) -> LangitConfig:
  """`config`, or gin's `LangitConfig` now (for tasks registered before gin parsed)."""
  return config if config is not None else LangitConfig()


def draw_exemplars(example_id: str, lang: str, pool_size: int, self_index: int | None,
                   cfg: LangitConfig) -> list[int]:
  """Indices into the pool of the exemplars of one example (never `self_index`)."""
  rng = random.Random(f"langit:{cfg.seed}:{lang}:{example_id}")
  weights = cfg.shot_weights or [1.0] * (cfg.max_shots + 1)
  n = rng.choices(range(cfg.max_shots + 1), weights=weights)[0]
  others = pool_size - (self_index is not None)
  picks = rng.sample(range(others), min(n, others))
  if self_index is None:
    return picks
  return [p + (p >= self_index) for p in picks]


def langit_fit(dataset: tf.data.Dataset, sequence_length=None, output_features=None, *,
               config: LangitConfig | None = None):
  """Joins the drawn exemplars before `inputs`, keeping as many as fit the length.
  `config`: the task's (None: gin's, read now; see `resolved`)."""
  cfg = resolved(config)
  vocab = output_features["inputs"].vocabulary
  limit = (sequence_length or {}).get("inputs")
  eos = int(output_features["inputs"].add_eos)

  def fit(ex):
    n = ex.pop("langit_n")
    blocks = (ex.pop("langit_inputs") + cfg.input_target_sep + ex.pop("langit_targets")
              + cfg.exemplar_sep)
    ks = tf.range(n, -1, -1)  # candidates keep the last k exemplars, k = n .. 0
    cands = tf.map_fn(lambda k: tf.strings.reduce_join(blocks[n - k:n]) + ex["inputs"],
                      ks, fn_output_signature=tf.string)
    if limit is None:
      pick = 0
    else:
      fits = vocab.encode_tf(cands).row_lengths() + eos <= limit
      pick = tf.where(tf.reduce_any(fits), tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32), n)
    ex["inputs"] = cands[pick]
    ex["langit_shots"] = tf.cast(ks[pick], tf.int32)
    return ex

  return dataset.map(fit, num_parallel_calls=tf.data.AUTOTUNE)
