"""Decoder-only model contract: KV-cache decoding, packing, prefix-LM, scan, SeqIO batches."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import tensorflow as tf

from linguamix.models import decoder

VOCAB, EOS = 64, 1
TINY = dict(vocab_size=VOCAB, d_model=32, num_layers=2, num_heads=4, mlp_dim=64)
FAMILIES = {
    "llama_gqa_window": decoder.DecoderConfig(**TINY, num_kv_heads=2, sliding_window=3),
    "bloom_alibi": decoder.DecoderConfig(**TINY, norm="layer", position="alibi", mlp_gated=False,
                                         activation="gelu_tanh", qkv_bias=True, out_bias=True,
                                         mlp_bias=True, embed_norm=True, tie_embeddings=True),
    "gpt2_learned": decoder.DecoderConfig(**TINY, norm="layer", position="learned", max_positions=32,
                                          mlp_gated=False, activation="gelu_tanh", qkv_bias=True,
                                          out_bias=True, mlp_bias=True, tie_embeddings=True),
}


pytestmark = pytest.mark.usefixtures("fast_init_compile")


def _model(cfg, **kwargs):
  return decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=EOS), **kwargs)


def _params(model, length=16, seed=0):
  variables = jax.jit(lambda r: model.init_variables(r, {"decoder_input_tokens": (1, length)}))(
      jax.random.PRNGKey(seed))
  # larger than init scale, so decoding does not collapse onto one token
  return jax.tree.map(lambda x: x * 3.0, nn.meta.unbox(variables))["params"]


def _lm_batch(tokens, num_prompt, length):
  """Padded to `length` so one compiled reference serves every step."""
  pad = [0] * (length - len(tokens))
  return {"decoder_input_tokens": jnp.asarray([list(tokens) + pad]),
          "decoder_target_tokens": jnp.asarray([[1] * len(tokens) + pad]),
          "decoder_causal_attention": jnp.asarray([[1] * num_prompt + [0] * (length - num_prompt)])}


@pytest.mark.parametrize("name,bidirectional", [
    ("llama_gqa_window", False), ("bloom_alibi", True), ("gpt2_learned", False)])
def test_kv_cache_greedy_decoding_equals_decoding_without_cache(name, bidirectional):
  model = _model(FAMILIES[name], inputs_bidirectional_attention=bidirectional)
  params = _params(model)
  length = 12
  prompts = [[0, 5, 9, 33], [0, 7, 3, 3, 21, 40, 11]]  # different lengths: per-example positions
  tokens = np.zeros((2, length), np.int32)
  causal = np.zeros((2, length), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, :len(p)] = p
    causal[i, :len(p)] = 1
  batch = {"decoder_input_tokens": jnp.asarray(tokens), "decoder_causal_attention": jnp.asarray(causal)}
  got = np.asarray(jax.jit(model.predict_batch)(params, batch))
  no_cache_logits = jax.jit(model.logits)
  for i, prompt in enumerate(prompts):
    seq, want = list(prompt), []
    while len(seq) <= length:
      logits = no_cache_logits(params, _lm_batch(seq, len(prompt), length + 1))
      token = int(jnp.argmax(logits[0, len(seq) - 1]))
      want.append(token)
      seq.append(token)
      if token == EOS:
        break
    want = want[:length - len(prompt) + 1]
    np.testing.assert_array_equal(got[i, :len(want)], want)
    assert not got[i, len(want):].any()


def test_sampling_top_k_one_is_greedy_and_temperature_varies():
  model = _model(FAMILIES["llama_gqa_window"])
  params = _params(model)
  batch = {"decoder_input_tokens": jnp.asarray([[0, 4, 5, 6, 0, 0, 0, 0, 0, 0]]),
           "decoder_causal_attention": jnp.asarray([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]])}
  greedy = jax.jit(model.predict_batch)(params, batch)
  top1 = jax.jit(functools.partial(model.predict_batch, decode_method="sample", temperature=1.0, top_k=1))(
      params, batch, jax.random.PRNGKey(3))
  np.testing.assert_array_equal(greedy, top1)
  sample = jax.jit(functools.partial(model.predict_batch, decode_method="sample", temperature=5.0, top_p=0.99))
  samples = {tuple(np.asarray(sample(params, batch, jax.random.PRNGKey(s)))[0]) for s in range(4)}
  assert len(samples) > 1


@pytest.mark.parametrize("name", ["llama_gqa_window", "bloom_alibi", "gpt2_learned"])
def test_packed_row_equals_examples_alone(name):
  model = _model(FAMILIES[name])
  params = _params(model)
  a, b = [7, 8, 9, 10, 11], [12, 13, 14, 15]
  packed = {
      "decoder_input_tokens": jnp.asarray([[0] + a[:-1] + [0] + b[:-1] + [0]]),
      "decoder_target_tokens": jnp.asarray([a + b + [0]]),
      "decoder_segment_ids": jnp.asarray([[1] * 5 + [2] * 4 + [0]]),
      "decoder_positions": jnp.asarray([list(range(5)) + list(range(4)) + [0]]),
  }
  logits_fn = jax.jit(model.logits)
  logits = logits_fn(params, packed)[0]
  for seq, span in ((a, slice(0, 5)), (b, slice(5, 9))):
    alone = logits_fn(params, {"decoder_input_tokens": jnp.asarray([[0] + seq[:-1]]),
                                  "decoder_target_tokens": jnp.asarray([seq])})[0]
    np.testing.assert_allclose(logits[span], alone, rtol=1e-5, atol=1e-4)


def test_scan_and_remat_match_unrolled_layers_and_chunked_loss_matches():
  cfg = FAMILIES["llama_gqa_window"]
  flat = _model(cfg)
  scanned = _model(dataclasses.replace(cfg, scan_layers=True, remat_policy="dots"), logits_chunk_length=3)
  params = _params(flat)
  stacked = {k: v for k, v in params.items() if not k.startswith("layers_")}
  stacked["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), params["layers_0"], params["layers_1"])
  batch = {"decoder_input_tokens": jnp.asarray([[0, 3, 4, 5, 6, 7, 8, 9]]),
           "decoder_target_tokens": jnp.asarray([[3, 4, 5, 6, 7, 8, 9, 10]]),
           "decoder_loss_weights": jnp.asarray([[0, 0, 1, 1, 1, 1, 1, 1]])}
  (loss_a, _), grads_a = jax.jit(jax.value_and_grad(flat.loss_fn, has_aux=True))(params, batch, None)
  (loss_b, _), grads_b = jax.jit(jax.value_and_grad(scanned.loss_fn, has_aux=True))(stacked, batch, None)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  np.testing.assert_allclose(grads_a["layers_1"]["attention"]["query"]["kernel"],
                             grads_b["layers"]["attention"]["query"]["kernel"][1], rtol=1e-4, atol=1e-6)


def _examples():
  return [{"inputs": [5, 6, 7], "targets": [8, 9, EOS]}, {"inputs": [10, 11], "targets": [12, 13, 14, EOS]},
          {"inputs": [15, 16, 17, 18], "targets": [19, EOS]}]


def _converted(pack, lengths):
  ds = tf.data.Dataset.from_generator(
      _examples, output_signature={k: tf.TensorSpec([None], tf.int32) for k in ("inputs", "targets")})
  ds = seqio.DecoderFeatureConverter(pack=pack)(ds, lengths)
  return [{k: jnp.asarray(v)[None] for k, v in ex.items()} for ex in ds.as_numpy_iterator()]


def test_seqio_prefix_lm_batches_train_on_targets_only_packed_or_not():
  model = _model(FAMILIES["bloom_alibi"])
  params = _params(model)
  lengths = {"inputs": 5, "targets": 5}
  unpacked = _converted(False, lengths)
  packed = _converted(True, lengths)
  assert "decoder_causal_attention" in unpacked[0] and "decoder_segment_ids" in packed[0]
  first = unpacked[0]
  # loss on targets only: weights sit exactly on the 3 target tokens
  np.testing.assert_array_equal(first["decoder_loss_weights"][0], [0, 0, 0, 1, 1, 1] + [0] * 4)
  score = jax.jit(model.score_batch)
  scores = [float(score(params, ex)[0]) for ex in unpacked]
  packed_total = sum(float(score(params, ex)[0]) for ex in packed)
  np.testing.assert_allclose(packed_total, sum(scores), rtol=1e-5)
  loss, metrics = jax.jit(model.loss_fn)(params, first, None)
  np.testing.assert_allclose(loss, -scores[0] / 3, rtol=1e-5)
  assert metrics["num_target_tokens"] == 3 and metrics["num_tokens"] == first["decoder_target_tokens"].size
