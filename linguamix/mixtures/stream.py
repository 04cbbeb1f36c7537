"""The epoch-exact stream of a recipe mixture: each epoch every selected example once.

The rows: every language's selected examples of the split, concatenated in the recipe's
language order -- one global list of N rows. Epoch e = 0, 1, ... visits position
i = 0 .. N-1 as row `index_shuffle(i, seed=[seed, e], max_index=N-1)`: a seeded
permutation per epoch, computed position by position (stateless, no shuffle buffer),
so the stream is a pure function of the selection, the seed and the position.
`shuffle=False` gives the rows in that fixed order, every epoch; `num_epochs=None`
repeats forever, a fresh permutation each epoch.

Hosts: with `shard_info` (how upstream T5X calls it), host h of H keeps the global
positions p = h, h + H, h + 2H, ... of that one stream, so the union of the hosts'
k-th batches of B/H rows is exactly the 1-host k-th batch of B examples. linguamix's
trainer reads the whole stream on every host instead and keeps its rows of each
packed global batch (`DatasetConfig.shard_by='rows'`), so any host count trains the
same packed batches bit for bit.

Preprocessing (tokenize, LANGIT fit, EOS) is the member tasks' own, applied to the
gathered rows: all tasks of a recipe share it.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf


def positions(n: int, *, shuffle: bool, seed, num_epochs: Optional[int]) -> tf.data.Dataset:
  """Row indices (int64) of the stream: epoch after epoch, each a permutation of 0..n-1."""
  epochs = (tf.data.Dataset.counter() if num_epochs is None
            else tf.data.Dataset.range(num_epochs))
  n64 = tf.constant(n, tf.int64)

  def epoch(e):
    rows = tf.data.Dataset.range(n64)
    if not shuffle:
      return rows
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(e, tf.int64)])
    return rows.map(lambda i: tf.random.experimental.index_shuffle(i, key, n64 - 1))

  return epochs.flat_map(epoch)


def dataset(tasks: Sequence[seqio.Task], keys: set[str], sequence_length, split: str, *,
            shuffle: bool, seed, shard_info: Optional[seqio.ShardInfo],
            num_epochs: Optional[int], trim_output_features: bool = True) -> tf.data.Dataset:
  """The epoch-exact stream over `tasks` (in order), features limited to `keys`."""
  tasks = [t for t in tasks if split in t.splits]
  cols: dict[str, list] = {}
  for task in tasks:
    for k, v in task.source.columns(split).items():
      cols.setdefault(k, []).extend(v)
  n = len(cols.get("id", ()))
  if not n:
    raise ValueError(f"mixture over {', '.join(t.name for t in tasks)}: no {split!r} examples")
  if shuffle and seed is None:  # SeqIO's meaning of seed=None: a fresh order each call
    seed = int(np.random.SeedSequence().entropy % 2**31)
    logging.warning("recipe stream: shuffle without a seed; drew seed %d", seed)
  specs = tasks[0].source.specs()
  table = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in cols.items()}
  index = positions(n, shuffle=shuffle, seed=seed, num_epochs=num_epochs)
  if shard_info and shard_info.num_shards > 1:
    index = index.shard(shard_info.num_shards, shard_info.index)
  ds = index.map(lambda i: {k: tf.gather(v, i) for k, v in table.items()})
  first = tasks[0]  # a recipe's tasks share preprocessors and output features
  ds = first.preprocess_precache(ds, seed=seed)
  ds = first.preprocess_postcache(ds, sequence_length=sequence_length, seed=seed)
  if trim_output_features:
    ds = first._trim_output_features(ds, sequence_length)  # pylint: disable=protected-access
  ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k in keys})
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)
