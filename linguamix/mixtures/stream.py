"""The epoch-exact stream of a recipe mixture: each epoch every selected example once.

The rows: every language's selected examples of the split, concatenated in the recipe's
language order -- one global list of N rows. Epoch e = 0, 1, ... visits position
i = 0 .. N-1 as row `index_shuffle(i, seed=[seed, e], max_index=N-1)`: a seeded
permutation per epoch (stateless, no shuffle buffer), so the stream is a pure function
of the selection, the seed and the position. `shuffle=False` gives the rows in that
fixed order, every epoch; `num_epochs=None` repeats forever, a fresh permutation each
epoch.

Hosts: with `shard_info` (how upstream T5X calls it), host h of H keeps the global
positions p = h, h + H, h + 2H, ... of that one stream, so the union of the hosts'
k-th batches of B/H rows is exactly the 1-host k-th batch of B examples. linguamix's
trainer reads the whole stream on every host instead and keeps its rows of each
packed global batch (`DatasetConfig.shard_by='rows'`), so any host count trains the
same packed batches bit for bit.

Preprocessing (tokenize, LANGIT fit, EOS) is the member tasks' own: all tasks of a
recipe share it. It is a function of the row alone, so a selection of at most
`MAX_ROWS_IN_MEMORY` rows is preprocessed once, in row order, and the stream gathers
finished examples from memory: every tf.data element a per-example map touches costs
thread hand-offs that cost more than the map's work, and this way each epoch costs
none. Larger selections (or tasks with other preprocessors) are preprocessed as they
stream. Either way the examples are the same.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf

from linguamix.t5x_tasks import tasks as tasks_lib

# SeqIO keeps selections under 10,000 examples in memory (try_in_mem_cache); finished
# examples of the recipes here take ~2 KB each, so 100,000 is ~200 MB and ~10 s to build.
MAX_ROWS_IN_MEMORY = 100_000
_BLOCK = 256  # rows gathered per tf.data element


def positions(n: int, *, shuffle: bool, seed, num_epochs: Optional[int]) -> tf.data.Dataset:
  """Row indices (int64) of the stream: epoch after epoch, each a permutation of 0..n-1."""
  epochs = (tf.data.Dataset.counter() if num_epochs is None
            else tf.data.Dataset.range(num_epochs))
  n64 = tf.constant(n, tf.int64)

  def epoch(e):
    rows = tf.range(n64)
    if shuffle:  # one vectorised op per epoch, not a map over its positions
      key = tf.stack([tf.cast(seed, tf.int64), tf.cast(e, tf.int64)])
      rows = tf.random.experimental.index_shuffle(rows, key, n64 - 1)
    return tf.data.Dataset.from_tensor_slices(rows)

  return epochs.flat_map(epoch)


def _gather(table: dict, index: tf.data.Dataset) -> tf.data.Dataset:
  """The rows of `table` at the positions of `index`, one example per element."""
  ds = index.batch(_BLOCK).map(lambda i: {k: tf.gather(v, i) for k, v in table.items()})
  ds = ds.unbatch()
  if any(isinstance(v, tf.RaggedTensor) for v in table.values()):
    # Unbatched ragged rows arrive as tensors but are specced as rank-0 RaggedTensors;
    # a map re-specs them as the TensorSpecs converters and T5X expect.
    ds = ds.map(dict, num_parallel_calls=tf.data.AUTOTUNE)
  return ds


def _preprocess(first: seqio.Task, ds, keys, sequence_length, seed, trim_output_features):
  ds = first.preprocess_precache(ds, seed=seed)
  ds = first.preprocess_postcache(ds, sequence_length=sequence_length, seed=seed)
  if trim_output_features:
    ds = first._trim_output_features(ds, sequence_length)  # pylint: disable=protected-access
  return ds.map(lambda ex: {k: v for k, v in ex.items() if k in keys},
                num_parallel_calls=tf.data.AUTOTUNE)


def _in_memory(ds: tf.data.Dataset, n: int) -> dict:
  """All `n` examples of `ds` as one table: ragged for sequences, dense for scalars."""
  return next(iter(ds.ragged_batch(n)))


def dataset(tasks: Sequence[seqio.Task], keys: set[str], sequence_length, split: str, *,
            shuffle: bool, seed, shard_info: Optional[seqio.ShardInfo],
            num_epochs: Optional[int], trim_output_features: bool = True,
            try_in_mem_cache: bool = True) -> tf.data.Dataset:
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
  first = tasks[0]  # a recipe's tasks share preprocessors and output features
  preprocess = lambda ds: _preprocess(first, ds, keys, sequence_length, seed,  # noqa: E731
                                      trim_output_features)
  in_memory = (try_in_mem_cache and n <= MAX_ROWS_IN_MEMORY
               and all(tasks_lib.is_per_row(p) for p in first.preprocessors))
  if in_memory:
    table = _in_memory(preprocess(_gather(table, tf.data.Dataset.range(n))), n)
  index = positions(n, shuffle=shuffle, seed=seed, num_epochs=num_epochs)
  if shard_info and shard_info.num_shards > 1:
    index = index.shard(shard_info.num_shards, shard_info.index)
  ds = _gather(table, index)
  if not in_memory:
    ds = preprocess(ds)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)
