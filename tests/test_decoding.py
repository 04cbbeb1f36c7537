"""The shared decoding module: top-p's nucleus, option checks, and decoder-only scores that
are the model's own log-likelihood of what it decoded."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import tensorflow as tf
import torch
import transformers

from linguamix.models import decoder, decoding

pytestmark = pytest.mark.usefixtures("fast_init_compile")

# probabilities 0.2, 0.4, 0.1, 0.3: sorted 0.4 (id 1), 0.3 (id 3), 0.2 (id 0), 0.1 (id 2)
LOGITS_1xV = np.log(np.array([[0.2, 0.4, 0.1, 0.3]], np.float32))
NUCLEI = [(0.35, {1}), (0.65, {1, 3}), (0.85, {1, 3, 0}), (0.95, {0, 1, 2, 3})]


@pytest.mark.parametrize("top_p,nucleus", NUCLEI)
def test_top_p_keeps_exactly_the_nucleus_as_transformers_does(top_p, nucleus):
  kept = np.asarray(decoding.top_p_filter(jnp.asarray(LOGITS_1xV), top_p))[0] > decoding.NEG_INF / 2
  assert set(np.flatnonzero(kept)) == nucleus
  hf = transformers.TopPLogitsWarper(top_p)(None, torch.as_tensor(LOGITS_1xV)).numpy()[0]
  assert set(np.flatnonzero(np.isfinite(hf))) == nucleus


def test_top_p_sampling_draws_from_the_nucleus_in_proportion():
  logits_BxV = jnp.tile(jnp.asarray(LOGITS_1xV), (4000, 1))
  step = lambda tokens_Bx1, cache, i: (logits_BxV, cache)
  tokens_BxL, scores_B = jax.jit(lambda r: decoding.temperature_sample(
      step, (), batch_size=4000, max_length=1, eos_id=-1, rng=r, temperature=1.0, top_p=0.65))(
          jax.random.key(0))
  counts = np.bincount(np.asarray(tokens_BxL)[:, 0], minlength=4)
  assert counts[0] == counts[2] == 0
  np.testing.assert_allclose(counts[1] / counts[3], 0.4 / 0.3, rtol=0.1)
  # the score is the model's log-probability, not the renormalised nucleus one
  np.testing.assert_allclose(np.asarray(scores_B), LOGITS_1xV[0][np.asarray(tokens_BxL)[:, 0]], rtol=1e-5)


def test_sampling_options_without_sample_method_are_refused():
  defaults = decoding.decode_options()
  with pytest.raises(ValueError, match=r"\['temperature'\] apply to decode_method='sample'"):
    decoding.resolve_options(defaults, {"temperature": 0.7})
  with pytest.raises(TypeError, match="unknown decode options"):
    decoding.resolve_options(defaults, {"num_beams": 2})
  with pytest.raises(ValueError, match="top_p=0"):
    decoding.resolve_options(defaults, {"decode_method": "sample", "top_p": 0.0})


VOCAB, EOS = 64, 1


def _converted(contexts, continuations, lengths):
  ds = tf.data.Dataset.from_generator(
      lambda: ({"inputs": c, "targets": t} for c, t in zip(contexts, continuations)),
      output_signature={k: tf.TensorSpec([None], tf.int32) for k in ("inputs", "targets")})
  rows = list(seqio.DecoderFeatureConverter(pack=False)(ds, lengths).batch(len(contexts)).as_numpy_iterator())
  return {k: jnp.asarray(v) for k, v in rows[0].items()}


@pytest.mark.parametrize("start_token,bidirectional", [("none", False), ("bos", True)])
def test_decoder_scores_are_the_log_likelihood_of_the_decoded_continuation(start_token, bidirectional):
  cfg = decoder.DecoderConfig(vocab_size=VOCAB, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                              mlp_dim=64, sliding_window=4)
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=EOS),
                                   start_token=start_token, inputs_bidirectional_attention=bidirectional)
  variables = jax.jit(lambda r: model.init_variables(r, {"decoder_input_tokens": (1, 8)}))(jax.random.key(0))
  params = jax.tree.map(lambda x: x * 3.0, nn.meta.unbox(variables))["params"]
  contexts = [[5, 9, 33, 7, 2], [7, 3]]  # different prompt lengths: per-row positions
  batch = _converted(contexts, [[3], [3]], {"inputs": 6, "targets": 6})
  runs = {"greedy": {}, "sample": dict(temperature=2.0, top_k=20, top_p=0.9),
          "beam": dict(beam_size=3, alpha=0.0)}  # alpha 0: beam scores are plain log-likelihoods
  score = jax.jit(model.score_batch)
  for method, kwargs in runs.items():
    tokens, aux = jax.jit(lambda p, b, r: model.predict_batch_with_aux(
        p, b, r, decode_method=method, **kwargs))(params, batch, jax.random.key(1))
    tokens = np.asarray(tokens)
    continuations = []
    for row, ctx in zip(tokens, contexts):
      n = len(batch["decoder_input_tokens"][0]) - (len(ctx) + 1) + 1  # the row's token budget
      ends = np.flatnonzero(row == EOS)
      stop = ends[0] + 1 if len(ends) and ends[0] < n else n
      assert not row[stop:].any(), (method, row)
      continuations.append(row[:stop].tolist())
    assert any(len(c) > 1 for c in continuations)
    scored = _converted(contexts, continuations, {"inputs": 6, "targets": 12})
    np.testing.assert_allclose(aux["scores"], score(params, scored), rtol=1e-5, atol=1e-4, err_msg=method)
