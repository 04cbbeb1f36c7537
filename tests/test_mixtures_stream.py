"""linguamix.mixtures.stream and linguamix.mixtures.epochs on their own, over tiny SeqIO
tasks built here: every epoch visits every row once in a seeded order, hosts split one
stream by position, the in-memory path streams the same examples as the streaming one;
an epoch's packed rows and the steps TRAIN_EPOCHS asks for."""

from __future__ import annotations

import numpy as np
import pytest
import seqio
import tensorflow as tf

from linguamix.mixtures import epochs
from linguamix.mixtures import stream


def _ids(ds) -> list[str]:
  return [ex["id"].decode() for ex in ds.as_numpy_iterator()]


class _Columns(seqio.DataSource):
  """A split's rows as columns: what the recipe stream reads from its tasks' sources."""

  def __init__(self, ids):
    super().__init__(splits=("train",))
    self.ids = list(ids)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split):
    return ["memory"]

  def num_input_examples(self, split):
    return len(self.ids)

  def columns(self, split, shard_info=None):
    return {"id": self.ids, "inputs": [f"in {i}" for i in self.ids],
            "targets": [f"out {i}" for i in self.ids]}

  def specs(self):
    return {k: tf.TensorSpec([], tf.string) for k in ("id", "inputs", "targets")}

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, *,
                  sequence_length=None, use_cached=False, num_epochs=1):
    return tf.data.Dataset.from_tensor_slices(self.columns(split))


def _tasks():
  features = {k: seqio.Feature(seqio.PassThroughVocabulary(10), dtype=tf.string)
              for k in ("inputs", "targets")}
  return [seqio.Task(f"stream_test_{lang}", _Columns([f"{lang}{i}" for i in range(n)]),
                     output_features=features, preprocessors=[])
          for lang, n in (("a", 3), ("b", 4))]


ALL = ["a0", "a1", "a2", "b0", "b1", "b2", "b3"]


def _stream(**kw):
  args = dict(shuffle=True, seed=5, shard_info=None, num_epochs=3, trim_output_features=False)
  return stream.dataset(_tasks(), {"id", "inputs", "targets"}, None, "train", **{**args, **kw})


def test_positions_are_one_seeded_permutation_per_epoch():
  assert list(stream.positions(4, shuffle=False, seed=0, num_epochs=2).as_numpy_iterator()) == [
      0, 1, 2, 3, 0, 1, 2, 3]
  rows = list(stream.positions(50, shuffle=True, seed=3, num_epochs=3).as_numpy_iterator())
  epoch = [rows[i * 50:(i + 1) * 50] for i in range(3)]
  assert all(sorted(e) == list(range(50)) for e in epoch)
  assert epoch[0] != epoch[1] != epoch[2] and epoch[0] != list(range(50))
  again = list(stream.positions(50, shuffle=True, seed=3, num_epochs=None).take(150)
               .as_numpy_iterator())
  assert again == rows  # a pure function of the seed and the position
  other = list(stream.positions(50, shuffle=True, seed=4, num_epochs=1).as_numpy_iterator())
  assert other != epoch[0]


def test_each_epoch_holds_every_selected_example_once_in_the_tasks_order_unshuffled():
  ids = _ids(_stream(shuffle=False, num_epochs=2))
  assert ids == ALL + ALL
  shuffled = _ids(_stream())
  assert [sorted(shuffled[i * 7:(i + 1) * 7]) for i in range(3)] == [ALL] * 3
  assert shuffled[:7] != ALL and shuffled[:7] != shuffled[7:14]


def test_hosts_split_one_stream_by_position_and_memory_equals_streaming():
  whole = _ids(_stream())
  hosts = [_ids(_stream(shard_info=seqio.ShardInfo(h, 2))) for h in range(2)]
  assert hosts[0] == whole[0::2] and hosts[1] == whole[1::2]
  streamed = list(_stream(try_in_mem_cache=False).as_numpy_iterator())
  in_memory = list(_stream().as_numpy_iterator())
  assert streamed == in_memory
  assert in_memory[0]["inputs"].decode() == f"in {whole[0]}"


def test_an_empty_split_is_a_clear_error():
  features = {"inputs": seqio.Feature(seqio.PassThroughVocabulary(10), dtype=tf.string)}
  empty = seqio.Task("stream_test_empty", _Columns([]), output_features=features, preprocessors=[])
  with pytest.raises(ValueError, match="stream_test_empty: no 'train' examples"):
    stream.dataset([empty], {"id"}, None, "train", shuffle=False, seed=0, shard_info=None,
                   num_epochs=1)


def test_epoch_steps_round_up_without_float_error():
  count = epochs.EpochCount("m", examples=40, packed_rows=30, batch_size=4,
                            lengths={"inputs": 8}, converter="C", seed=0)
  assert count.batches == 7.5
  assert count.steps(1) == 8 and count.steps(2) == 15 and count.steps(0.5) == 4
  # 0.1 x 30 rows is 3.0000000000000004 in floating point: 3 batches of 1, not 4.
  one = epochs.EpochCount("m", 30, 30, 1, {"inputs": 8}, "C", 0)
  assert one.steps(0.1) == 3
  assert "one epoch of m (seed 0) = 40 examples -> 30 packed rows" in count.describe()


def test_count_epoch_packs_one_epoch_of_a_task():
  """Six examples of 3 input and 2 target tokens at lengths 8/8: two fit a packed row
  (a third would need 9 input positions), so 3 rows; unpacked, one row each."""
  vocab = seqio.PassThroughVocabulary(100)

  def source(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(
        {"inputs": np.arange(1, 19, dtype=np.int32).reshape(6, 3),
         "targets": np.arange(21, 33, dtype=np.int32).reshape(6, 2)})

  name = "epochs_test_task"
  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(source, splits=["train"],
                                              num_input_examples={"train": 6}),
        preprocessors=[],
        output_features={k: seqio.Feature(vocab, add_eos=False) for k in ("inputs", "targets")})
  lengths = {"inputs": 8, "targets": 8}
  packed = epochs.count_epoch(name, lengths, 2, seqio.EncDecFeatureConverter(pack=True), seed=1)
  assert (packed.examples, packed.packed_rows, packed.steps(2.0)) == (6, 3, 3)
  plain = epochs.count_epoch(name, lengths, 2, seqio.EncDecFeatureConverter(pack=False), seed=1)
  assert plain.packed_rows == 6 and plain.converter == "EncDecFeatureConverter(pack=False)"
  assert epochs.count_epoch(name, lengths, 2, seqio.EncDecFeatureConverter(pack=True), seed=1) is packed
