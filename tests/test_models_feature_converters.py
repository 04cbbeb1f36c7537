"""linguamix's packer against SeqIO's: the same rows, order, values, dtypes and shapes.

Every expectation is SeqIO's own output (`seqio.utils.trim_and_pack_dataset`, its
feature converters), so the tests fail whenever the two packers disagree.
"""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from linguamix.models import feature_converters


def _examples(rng, n, max_lengths, dtype=np.int32, zero_share=0.15):
  """`n` examples, each key 0..max_lengths[k] ids; some ids 0 (count_nonzero cuts
  before the last id), some examples all-zero or empty."""
  out = []
  for _ in range(n):
    ex = {}
    for k, m in max_lengths.items():
      ids = rng.integers(1, 100, rng.integers(0, m + 1)).astype(dtype)
      ids[rng.random(len(ids)) < zero_share] = 0
      ex[k] = ids
    out.append(ex)
  return out


def _dataset(examples, keys, dtype=tf.int32, extra=False):
  """The examples as a dataset; `extra` adds an index and a string feature (dropped)."""
  spec = {k: tf.TensorSpec([None], dtype) for k in keys}
  if extra:
    spec.update(idx=tf.TensorSpec([], tf.int64), text=tf.TensorSpec([], tf.string))
  def gen():
    for i, ex in enumerate(examples):
      yield dict(ex, idx=i, text=f"example {i}") if extra else ex
  return tf.data.Dataset.from_generator(gen, output_signature=spec)


def _assert_same(expected: tf.data.Dataset, actual: tf.data.Dataset):
  assert actual.element_spec == expected.element_spec
  want = list(expected.as_numpy_iterator())
  got = list(actual.as_numpy_iterator())
  assert len(got) == len(want)
  for i, (w, g) in enumerate(zip(want, got)):
    assert g.keys() == w.keys()
    for k in w:
      assert g[k].dtype == w[k].dtype and g[k].shape == w[k].shape, (i, k)
      np.testing.assert_array_equal(g[k], w[k], err_msg=f"row {i}, {k}")


LENGTHS = [
    {"targets": 1},
    {"targets": 5},
    {"targets": 64},
    {"inputs": 7, "targets": 3},
    {"inputs": 3, "targets": 12},  # inputs shorter than its blocks of 12
    {"inputs": 16, "targets": 16},
    {"inputs": 40, "targets": 6},
]


@pytest.mark.parametrize("lengths", LENGTHS, ids=lambda l: "-".join(f"{k}{v}" for k, v in l.items()))
def test_same_rows_as_seqio_on_random_examples(lengths):
  rng = np.random.default_rng(sum(lengths.values()))
  block = max(lengths.values())
  for n in (1, block - 1, block + 1, 3 * block + int(rng.integers(1, block + 1))):
    # Up to twice each length, so SeqIO's trim cuts many examples.
    examples = _examples(rng, n, {k: 2 * l for k, l in lengths.items()})
    ds = _dataset(examples, lengths)
    _assert_same(seqio.utils.trim_and_pack_dataset(ds, lengths),
                 feature_converters.trim_and_pack_dataset(ds, lengths))


@pytest.mark.parametrize("case", ["empty-block", "all-zero", "full-rows", "int64-extra-keys"])
def test_same_rows_as_seqio_on_edge_cases(case):
  rng = np.random.default_rng(7)
  lengths = {"inputs": 6, "targets": 4}
  keys, dtype, extra = lengths, tf.int32, False
  if case == "empty-block":  # a block of only empty examples still writes one (empty) row
    examples = [{k: np.zeros([0], np.int32) for k in keys}] * 8 + _examples(rng, 9, lengths)
  elif case == "all-zero":  # non-empty, but count_nonzero is 0
    examples = [{k: np.zeros([3], np.int32) for k in keys} for _ in range(10)]
  elif case == "full-rows":  # rows filled exactly, then empty examples, then one id
    full = {k: np.arange(1, l + 1, dtype=np.int32) for k, l in lengths.items()}
    empty = {k: np.zeros([0], np.int32) for k in keys}
    one = {k: np.ones([1], np.int32) for k in keys}
    examples = [full, empty, empty, one, full, one, empty] * 3
  else:
    examples, dtype, extra = _examples(rng, 30, {"inputs": 9, "targets": 7}, np.int64), tf.int64, True
  ds = _dataset(examples, keys, dtype, extra)
  _assert_same(seqio.utils.trim_and_pack_dataset(ds, lengths),
               feature_converters.trim_and_pack_dataset(ds, lengths))


def test_empty_dataset_gives_no_rows():
  ds = _dataset([], ["targets"])
  assert list(feature_converters.trim_and_pack_dataset(ds, {"targets": 4})) == []


def test_rejects_what_seqio_rejects():
  ds = _dataset([], ["targets"])
  with pytest.raises(ValueError, match="not found"):
    feature_converters.trim_and_pack_dataset(ds, {"inputs": 4})
  matrix = tf.data.Dataset.from_tensors({"targets": tf.ones([2, 3], tf.int32)})
  with pytest.raises(ValueError, match="one-dimensional"):
    feature_converters.trim_and_pack_dataset(matrix, {"targets": 4})


CONVERTERS = [
    (feature_converters.EncDecFeatureConverter, seqio.EncDecFeatureConverter, ("inputs", "targets")),
    (feature_converters.DecoderFeatureConverter, seqio.DecoderFeatureConverter, ("inputs", "targets")),
    (feature_converters.DecoderFeatureConverter, seqio.DecoderFeatureConverter, ("targets",)),
]


@pytest.mark.parametrize("ours, theirs, keys", CONVERTERS,
                         ids=["enc-dec", "decoder-prefix-lm", "decoder-lm"])
@pytest.mark.parametrize("pack", [True, False])
def test_converters_match_seqio(ours, theirs, keys, pack):
  rng = np.random.default_rng(3)
  lengths = {"inputs": 24, "targets": 10}
  lengths = {k: lengths[k] for k in keys}
  # Task-style examples: already trimmed, ending in EOS (1), no zeros inside.
  examples = _examples(rng, 100, {k: l - 1 for k, l in lengths.items()}, zero_share=0)
  examples = [{k: np.append(v, 1).astype(np.int32) for k, v in ex.items()} for ex in examples]
  ds = _dataset(examples, keys)
  assert issubclass(ours, theirs)
  _assert_same(theirs(pack=pack)(ds, lengths), ours(pack=pack)(ds, lengths))


@pytest.mark.parametrize("ours, theirs, options", [
    (feature_converters.EncDecFeatureConverter, seqio.EncDecFeatureConverter, {}),
    (feature_converters.DecoderFeatureConverter, seqio.DecoderFeatureConverter, {}),
    (feature_converters.DecoderFeatureConverter, seqio.DecoderFeatureConverter,
     {"loss_on_targets_only": False, "bos_id": 3}),
], ids=["enc-dec", "decoder-prefix-lm", "decoder-all-loss-bos3"])
def test_unpacked_numpy_rows_are_seqios(ours, theirs, options):
  """The scorer's NumPy conversion: SeqIO's unpacked rows for the longest lengths, with
  empty inputs and empty targets among them."""
  rng = np.random.default_rng(5)
  examples = _examples(rng, 60, {"inputs": 9, "targets": 5}, zero_share=0)
  inputs, targets = [ex["inputs"] for ex in examples], [ex["targets"] for ex in examples]
  assert min(map(len, inputs)) == 0 and min(map(len, targets)) == 0
  lengths = {"inputs": max(map(len, inputs)), "targets": max(map(len, targets))}
  want = next(theirs(pack=False, **options)(_dataset(examples, ("inputs", "targets")), lengths)
              .batch(len(examples)).as_numpy_iterator())
  got = ours(pack=False, **options).convert_unpacked(inputs, targets)
  assert got.keys() == want.keys()
  for key in want:
    assert got[key].dtype == want[key].dtype, key
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_unpacked_numpy_rows_refuse_a_packing_converter():
  with pytest.raises(ValueError, match="unpacked converter"):
    feature_converters.DecoderFeatureConverter(pack=True).convert_unpacked([np.ones(2, np.int32)],
                                                                          [np.ones(1, np.int32)])


def test_training_counting_and_inspection_share_the_packer():
  from linguamix.evals import requests
  from linguamix.mixtures import packing
  from linguamix.models import decoder, encoder_decoder
  assert encoder_decoder.EncoderDecoderModel.feature_converter_cls is feature_converters.EncDecFeatureConverter
  assert decoder.DecoderOnlyModel.feature_converter_cls is feature_converters.DecoderFeatureConverter
  assert set(packing.CONVERTERS.values()) == {feature_converters.EncDecFeatureConverter,
                                               feature_converters.DecoderFeatureConverter}
  # Looked up through the MRO, so the subclasses keep their SeqIO base's backend.
  assert requests.backend_of(feature_converters.DecoderFeatureConverter) == "causal"
  assert requests.backend_of(feature_converters.EncDecFeatureConverter) == "seq2seq"
  assert requests.backend_of(seqio.LMFeatureConverter) == "causal"


def test_mixtures_import_no_model_code():
  """`linguamix.mixtures` stays usable beside upstream T5X: of linguamix's models it
  imports only the converters (SeqIO and TensorFlow; SeqIO itself imports jax)."""
  import subprocess
  import sys
  code = ("import sys, linguamix.mixtures, linguamix.mixtures.packing, linguamix.mixtures.epochs; "
          "print(sorted(m for m in sys.modules if m.startswith('linguamix.models.')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "['linguamix.models.feature_converters']"
