"""SeqIO's feature converters with a faster packer that builds the same rows.

SeqIO's `trim_and_pack_dataset` packs each block of max(lengths) examples in a
`tf.while_loop` that concatenates tensors example by example, which caps the input
pipeline below what training consumes. `trim_and_pack_dataset` here keeps SeqIO's
blocks, trim and greedy next-fit rule but finds every example's row with vectorised
ops and builds the rows with gathers, so its output is SeqIO's, row for row.

Unpacked, `convert_unpacked` builds in NumPy the rows SeqIO's converter gives for
lists of ids (the scorer's requests): no tf.data pipeline to trace, which costs seconds
per evaluation, more than scoring a small task.

SeqIO and TensorFlow only, no model code: `linguamix.mixtures` packs with these too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

AUTOTUNE = tf.data.experimental.AUTOTUNE


def _row_of_example(counts: tf.Tensor, lengths: tf.Tensor, block_size: int) -> tf.Tensor:
  """Each example's row in its block, as SeqIO's next-fit fills rows.

  An example joins the open row if every key still fits, else it opens the next one. So
  a row starting at example s ends before the first example whose running sum from s
  overflows some key: next[s], found by binary search (counts are >= 0, each <= its
  length, so next[s] > s). Rows start at 0, next[0], next[next[0]], ...; an example's
  row is the number of those starts at or before it, minus one, found by jumping 2^j
  rows at a time for j = log2(block_size) .. 0 (jump tables by composing `next` with
  itself), not by a loop over rows. `counts` [examples, keys]; `block_size` bounds the
  examples.
  """
  num_examples = tf.shape(counts)[0]
  running = tf.transpose(tf.cumsum(tf.pad(counts, [[1, 0], [0, 0]]), axis=0))  # [keys, n + 1]
  ends = tf.searchsorted(running, running + lengths[:, None], side="right") - 1
  jumps = [tf.reduce_min(ends, axis=0)]  # next[s]; next[n] = n
  while 2 ** len(jumps) <= block_size:
    jumps.append(tf.gather(jumps[-1], jumps[-1]))
  example = tf.range(num_examples)
  start, row = tf.zeros_like(example), tf.zeros_like(example)
  for level in reversed(range(len(jumps))):
    ahead = tf.gather(jumps[level], start)
    take = ahead <= example
    start = tf.where(take, ahead, start)
    row += tf.where(take, 2 ** level, 0)
  return row


def _pack_block(block: Mapping[str, tf.Tensor], feature_lengths: Mapping[str, int]):
  """The packed rows of one padded block, SeqIO's `pack_batch` without its per-example loop.

  Like SeqIO, an example's sequence is the first count_nonzero(ids) of its ids trimmed
  to the key's length; rows are padded with 0 and segment ids are
  cumsum(position == 0) * (id != 0).
  """
  keys = list(feature_lengths)
  ids = {k: tf.cast(block[k][:, :length], tf.int32) for k, length in feature_lengths.items()}
  counts = tf.stack([tf.math.count_nonzero(ids[k], axis=1, dtype=tf.int32) for k in keys], 1)
  lengths = tf.constant([feature_lengths[k] for k in keys], tf.int32)
  row_of_example = _row_of_example(counts, lengths, max(feature_lengths.values()))
  packed = {}
  for i, k in enumerate(keys):
    count = counts[:, i]
    row_tokens = tf.math.segment_sum(count, row_of_example)
    starts = tf.cumsum(row_tokens, exclusive=True)
    # Every example's sequence, back to back; a trailing 0 is what padding slots read.
    flat_ids = tf.RaggedTensor.from_tensor(ids[k], lengths=count).flat_values
    flat_positions = tf.ragged.range(count).flat_values
    pad = tf.size(flat_ids)
    slot = tf.range(feature_lengths[k])[None, :]
    source = tf.where(slot < row_tokens[:, None], starts[:, None] + slot, pad)
    tokens = tf.gather(tf.concat([flat_ids, [0]], 0), source)
    positions = tf.gather(tf.concat([flat_positions, [0]], 0), source)
    packed[k] = tokens
    packed[k + "_positions"] = positions
    packed[k + "_segment_ids"] = tf.cumsum(
        tf.cast(tf.equal(positions, 0), tf.int32), axis=1) * tf.cast(tf.not_equal(tokens, 0), tf.int32)
  return packed


def trim_and_pack_dataset(dataset: tf.data.Dataset,
                          feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
  """`seqio.utils.trim_and_pack_dataset(dataset, feature_lengths)`'s rows, faster.

  Same trim (features not in `feature_lengths` are dropped), same blocks of
  max(lengths) examples (rows never span blocks; each block's last row is written),
  same rows in the same order, int32 like SeqIO's.
  """
  for k in feature_lengths:
    if k not in dataset.element_spec:
      raise ValueError(f"Feature '{k}' not found in dataset. Available keys are "
                       f"{list(dataset.element_spec.keys())}")
    if not dataset.element_spec[k].shape.is_compatible_with(tf.TensorShape([None])):
      raise ValueError(f"Features to be packed must be one-dimensional. '{k}' is not.")
  # Trimming the padded block, not each example, gives the same block: a per-example
  # slice costs more than all of the packing (a key-selecting map costs ~nothing). The
  # block is as wide as its longest untrimmed example; Tasks trim theirs already.
  ds = dataset.map(lambda x: {k: x[k] for k in feature_lengths}, num_parallel_calls=AUTOTUNE)
  ds = ds.padded_batch(max(feature_lengths.values()),
                       padded_shapes={k: [-1] for k in feature_lengths})
  ds = ds.map(lambda block: _pack_block(block, feature_lengths), num_parallel_calls=AUTOTUNE)
  return ds.unbatch()


class _FastPacking:
  """Packs with `trim_and_pack_dataset` above; SeqIO's own path for pad or custom ops."""

  def _pack_or_pad(self, ds: tf.data.Dataset, packed_lengths: Mapping[str, int]) -> tf.data.Dataset:
    if self.pack and not self._use_custom_packing_ops:
      return trim_and_pack_dataset(ds, packed_lengths)
    return super()._pack_or_pad(ds, packed_lengths)


def _padded(ids: Sequence[np.ndarray], width: int) -> np.ndarray:
  out = np.zeros((len(ids), width), np.int32)
  for i, row in enumerate(ids):
    out[i, :len(row)] = row
  return out


def _shifted(tokens_NxL: np.ndarray, bos_id: int) -> np.ndarray:
  """`seqio.utils.make_autoregressive_inputs` of padded, unpacked rows: shifted right
  after padding, so the slot after a row's last token reads that token."""
  return np.concatenate([np.full((len(tokens_NxL), 1), bos_id, np.int32), tokens_NxL[:, :-1]], 1)


def _unpacked_only(converter: seqio.FeatureConverter) -> None:
  if converter.pack or converter._passthrough_features:  # pylint: disable=protected-access
    raise ValueError("convert_unpacked: an unpacked converter without passthrough features")


class EncDecFeatureConverter(_FastPacking, seqio.EncDecFeatureConverter):
  """`seqio.EncDecFeatureConverter` with the fast packer."""

  def convert_unpacked(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]
                       ) -> dict[str, np.ndarray]:
    """The unpacked model features of each (inputs, targets), [N, longest], as the
    converter gives them at lengths {inputs: longest inputs, targets: longest targets}."""
    _unpacked_only(self)
    target_NxL = _padded(targets, max(1, max(map(len, targets))))
    return {"encoder_input_tokens": _padded(inputs, max(1, max(map(len, inputs)))),
            "decoder_target_tokens": target_NxL,
            "decoder_input_tokens": _shifted(target_NxL, self.bos_id),
            "decoder_loss_weights": (target_NxL != 0).astype(np.int32)}


class DecoderFeatureConverter(_FastPacking, seqio.DecoderFeatureConverter):
  """`seqio.DecoderFeatureConverter` with the fast packer."""

  def convert_unpacked(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]
                       ) -> dict[str, np.ndarray]:
    """The unpacked model features of each (inputs, targets), [N, longest inputs +
    longest targets], as SeqIO's prefix-LM converter gives them at those lengths: the
    two concatenated (an empty target reads as one padding id), then padded."""
    _unpacked_only(self)
    targets = [t if len(t) else np.zeros(1, np.int32) for t in targets]
    width = max(1, max(map(len, inputs))) + max(1, max(map(len, targets)))
    target_NxL = _padded([np.concatenate([i, t]) for i, t in zip(inputs, targets)], width)
    position_1xL = np.arange(width)[None, :]
    inputs_Nx1 = np.array([len(i) for i in inputs])[:, None]
    real_Nx1 = inputs_Nx1 + np.array([len(t) for t in targets])[:, None]
    in_inputs_NxL = position_1xL < inputs_Nx1
    weights_NxL = target_NxL != 0
    if self._loss_on_targets_only:
      weights_NxL = weights_NxL ^ in_inputs_NxL
    return {"decoder_target_tokens": target_NxL,
            "decoder_input_tokens": _shifted(target_NxL, self.bos_id),
            "decoder_loss_weights": weights_NxL.astype(np.int32),
            "decoder_causal_attention": ((position_1xL < inputs_Nx1 + 1)
                                         & (position_1xL < real_Nx1)).astype(np.int32)}
