"""Packing, KV-cache decoding, beam search and sampling of the mT5 model."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import tensorflow as tf

from linguamix.models import mt5
from linguamix.models.encoder_decoder import EncoderDecoderModel


def _model(vocab_size=64, seed=0):
  # Scanned layers: the decoding loop and its cache over a stacked layer axis (the gin
  # test decodes with unscanned layers). Random params without an init compile.
  cfg = mt5.MT5Config(vocab_size=vocab_size, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                      num_encoder_layers=2, num_decoder_layers=2, relative_attention_num_buckets=8,
                      relative_attention_max_distance=16, dtype="float32", scan_layers=True)
  model = EncoderDecoderModel(cfg, seqio.PassThroughVocabulary(vocab_size, eos_id=1))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.5).astype(np.float32), mt5.param_shapes(cfg))
  return model, params


@pytest.fixture(scope="module")
def model_params():
  return _model()


EXAMPLES = [
    {"inputs": [7, 12, 5, 9, 1], "targets": [20, 21, 1]},
    {"inputs": [33, 4, 1], "targets": [8, 45, 17, 60, 1]},
    {"inputs": [11, 11, 30, 2, 50, 61, 1], "targets": [9, 1]},
]


def _convert(examples, pack, lengths):
  ds = tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature={k: tf.TensorSpec([None], tf.int32) for k in ("inputs", "targets")})
  converted = seqio.EncDecFeatureConverter(pack=pack)(ds, lengths)
  return [{k: np.asarray(v) for k, v in ex.items()} for ex in converted.as_numpy_iterator()]


def test_packed_batch_gives_each_example_its_unpacked_loss(model_params):
  model, params = model_params
  packed = _convert(EXAMPLES, pack=True, lengths={"inputs": 16, "targets": 12})
  assert len(packed) == 1 and packed[0]["decoder_segment_ids"].max() == 3  # all three in one row
  packed = {k: v[None] for k, v in packed[0].items()}
  run = jax.jit(lambda p, b: (model.loss_fn(p, b, None)[0], model.token_log_likelihood(p, b)))
  packed_loss, token_ll = run(params, packed)
  per_segment = [np.asarray(token_ll)[0][packed["decoder_segment_ids"][0] == s].sum() for s in (1, 2, 3)]

  alone = _convert(EXAMPLES, pack=False, lengths={"inputs": 8, "targets": 6})
  batch = {k: np.stack([ex[k] for ex in alone]) for k in alone[0]}
  alone_loss, alone_ll = run(params, batch)
  np.testing.assert_allclose(per_segment, np.asarray(alone_ll).sum(-1), rtol=1e-5, atol=1e-5)
  # Mean-per-token loss (with z-loss) of the packed row equals that of the three rows alone.
  np.testing.assert_allclose(packed_loss, alone_loss, rtol=1e-5)


def test_cached_decoding_equals_recomputing_the_whole_prefix(model_params):
  model, params = model_params
  enc = np.array([[7, 12, 5, 9, 1, 0], [33, 4, 50, 1, 0, 0]])
  length = 6
  batch = dict(encoder_input_tokens=enc, decoder_target_tokens=np.zeros((2, length), np.int32))
  cached = np.asarray(jax.jit(model.predict_batch)(params, batch))

  @jax.jit
  def full_logits(dec_in):  # no cache: the whole decoder over the prefix every step
    ones = jnp.ones_like(dec_in)
    hidden, kernel = model.module.apply({"params": params}, enc, (enc > 0).astype(jnp.int32), dec_in, ones)
    return mt5.logits(hidden, kernel)

  tokens = np.zeros((2, length), np.int32)
  done = np.zeros(2, bool)
  for i in range(length):
    dec_in = np.concatenate([np.zeros((2, 1), np.int32), tokens[:, :-1]], axis=1)
    nxt = np.where(done, 0, np.asarray(full_logits(dec_in))[:, i].argmax(-1))
    tokens[:, i] = nxt
    done |= nxt == 1
  np.testing.assert_array_equal(cached, tokens)

  # Step-by-step cache logits equal teacher-forced logits for a given sequence.
  target = np.array([[20, 21, 3, 40, 1, 0], [8, 45, 17, 60, 2, 1]])
  dec_in = np.concatenate([np.zeros((2, 1), np.int32), target[:, :-1]], axis=1)
  enc_seg = (enc > 0).astype(np.int32)

  @jax.jit
  def stepped(dec_in):
    encoded = model.module.apply({"params": params}, enc, enc_seg, method=mt5.Transformer.encode)
    cache = model._init_cache(params, encoded, enc_seg, length)
    step = model._step_fn(params, enc_seg)

    def body(cache, i):
      logits, cache = step(jax.lax.dynamic_slice_in_dim(dec_in, i, 1, axis=1), cache, i)
      return cache, logits
    return jax.lax.scan(body, cache, jnp.arange(length))[1].swapaxes(0, 1)

  np.testing.assert_allclose(stepped(dec_in), full_logits(dec_in), atol=1e-5, rtol=1e-5)


def test_beam_search_returns_the_best_sequences_of_an_enumerable_space():
  vocab, length, alpha = 4, 3, 0.6
  model, params = _model(vocab_size=vocab, seed=2)
  enc = np.array([[2, 3, 3, 1]])
  # Every output: EOS (1) after 0..2 other tokens, or 3 tokens without EOS.
  space = []
  for n in range(length + 1):
    for body in itertools.product([0, 2, 3], repeat=n):
      seq = list(body) + ([1] if n < length else [])
      if len(seq) <= length:
        space.append(seq + [0] * (length - len(seq)))
  space = np.array(space)
  lengths = np.array([list(s).index(1) + 1 if 1 in s else length for s in space])
  batch = dict(encoder_input_tokens=np.repeat(enc, len(space), 0), encoder_segment_ids=np.ones((len(space), 4)),
               decoder_target_tokens=space, decoder_segment_ids=np.ones_like(space),
               decoder_input_tokens=np.concatenate([np.zeros((len(space), 1), int), space[:, :-1]], 1),
               decoder_loss_weights=(np.arange(length)[None] < lengths[:, None]).astype(np.float32))
  log_likelihood = np.asarray(jax.jit(model.score_batch)(params, batch))
  normalised = log_likelihood / ((5.0 + lengths) / 6.0) ** alpha
  order = np.argsort(-normalised)

  k = 18  # 2k candidates cover all 9 * 4 continuations: the search is exhaustive
  predict = jax.jit(lambda p, b: model.predict_batch_with_aux(p, b, decode_method="beam", beam_size=k,
                                                              alpha=alpha, return_all_beams=True))
  tokens, aux = predict(params, dict(encoder_input_tokens=enc, decoder_target_tokens=np.zeros((1, length), int)))
  np.testing.assert_array_equal(np.asarray(tokens)[0, :5], space[order[:5]])
  np.testing.assert_allclose(np.asarray(aux["scores"])[0, :k], normalised[order[:k]], rtol=1e-5)


def test_temperature_sampling_is_seeded_and_scores_its_samples(model_params):
  model, params = model_params
  enc = np.array([[7, 12, 5, 9, 1], [33, 4, 50, 1, 0]])
  batch = dict(encoder_input_tokens=enc, decoder_target_tokens=np.zeros((2, 5), np.int32))
  sample = jax.jit(lambda p, b, r: model.predict_batch_with_aux(p, b, r, decode_method="sample", temperature=1.0))
  a, aux = sample(params, batch, jax.random.key(0))
  b, _ = sample(params, batch, jax.random.key(0))
  c, _ = sample(params, batch, jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  a = np.asarray(a)
  weights = np.cumsum(np.cumsum(a == 1, axis=1), axis=1) <= 1  # up to and including EOS
  scored = dict(encoder_input_tokens=enc, decoder_target_tokens=a, decoder_segment_ids=np.ones_like(a),
                decoder_input_tokens=np.concatenate([np.zeros((2, 1), int), a[:, :-1]], 1),
                decoder_loss_weights=weights.astype(np.float32))
  np.testing.assert_allclose(aux["scores"], jax.jit(model.score_batch)(params, scored), rtol=1e-5, atol=1e-5)
