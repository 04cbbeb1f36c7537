"""The fused attention path (jax.nn.dot_product_attention; XLA's on the CPU, cuDNN's on
NVIDIA GPUs) against the materialised reference: same outputs and gradients with packing
segment ids, causal and sliding-window masks, grouped heads and additive biases (T5
relative positions, ALiBi), for the layer and for whole mT5 and decoder models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio

from linguamix.models import decoder, layers, mt5
from linguamix.models.encoder_decoder import EncoderDecoderModel

RNG = np.random.default_rng(0)
SEG = jnp.array([[1, 1, 1, 2, 2, 3, 3, 3, 0, 0], [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]])  # packed rows


def _qkv(n=6, k=2, h=8):
  b, t = SEG.shape
  return tuple(jnp.asarray(RNG.normal(size=(b, t, m, h)), jnp.float32) for m in (n, k, k))


@pytest.mark.parametrize("causal,window,bias_kind", [
    (False, None, "relpos"), (True, None, "relpos"), (True, 3, None), (True, None, "alibi")])
def test_fused_matches_materialised_outputs_and_gradients(causal, window, bias_kind):
  q, k, v = _qkv()
  mask = layers.attention_mask(SEG, SEG, causal=causal, sliding_window=window)
  t = SEG.shape[1]
  bias = None
  if bias_kind == "relpos":  # one [1, N, T, S] table shared by the batch, like T5's
    bias = jnp.asarray(RNG.normal(size=(1, 6, t, t)), jnp.float32)
  elif bias_kind == "alibi":
    pos = jnp.arange(t)
    bias = jnp.asarray(decoder.alibi_slopes(6))[None, :, None, None] * (pos[None, :] - pos[:, None])[None, None]
  valid = np.asarray(SEG > 0)

  def run(impl, folded):
    def f(q, k, v, bias):
      if folded:
        out = layers.dot_product_attention(q, k, v, bias_BxNxTxS=layers.mask_bias(mask, bias),
                                           implementation=impl)
      else:
        out = layers.dot_product_attention(q, k, v, mask_Bx1xTxS=mask, bias_BxNxTxS=bias,
                                           implementation=impl)
      return jnp.sum(jnp.where(valid[:, :, None, None], out, 0.0) ** 2), out
    bias_arg = jnp.zeros((1, 6, t, t)) if bias is None else bias
    (_, out), grads = jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True)(q, k, v, bias_arg)
    return out, grads

  ref_out, ref_grads = run("materialised", folded=False)
  assert np.all(np.asarray(ref_out)[~valid] == 0.0)  # padding queries: zeros
  for impl, folded in (("fused", False), ("fused", True), ("materialised", True)):
    out, grads = run(impl, folded)
    assert np.all(np.isfinite(np.asarray(out)))
    if not folded:
      assert np.all(np.asarray(out)[~valid] == 0.0)
    np.testing.assert_allclose(np.asarray(out)[valid], np.asarray(ref_out)[valid], rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, ref_grads):
      np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)


def test_unknown_implementation_is_a_clear_error():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="attention implementation 'flash'"):
    layers.dot_product_attention(q, k, v, implementation="flash")
  with pytest.raises(ValueError, match="MT5Config.attention='flash'"):
    mt5.MT5Config(attention="flash")
  with pytest.raises(ValueError, match="DecoderConfig.attention='flash'"):
    decoder.DecoderConfig(attention="flash")


def _packed_mt5_batch():
  enc_seg = np.array([[1, 1, 1, 2, 2, 2, 0, 0]] * 2)
  dec_seg = np.array([[1, 1, 2, 2, 2, 0]] * 2)
  enc = np.where(enc_seg > 0, RNG.integers(2, 64, size=enc_seg.shape), 0)
  tgt = np.where(dec_seg > 0, RNG.integers(2, 64, size=dec_seg.shape), 0)
  dec_in = np.where(dec_seg > 0, np.roll(tgt, 1, axis=1), 0)
  dec_in[:, [0, 2]] = 0  # each packed target starts with the start token
  return dict(encoder_input_tokens=enc, encoder_segment_ids=enc_seg, decoder_input_tokens=dec_in,
              decoder_target_tokens=tgt, decoder_segment_ids=dec_seg,
              decoder_loss_weights=(dec_seg > 0).astype(np.int32))


def test_mt5_and_decoder_models_agree_across_implementations():
  batch = _packed_mt5_batch()
  base = dict(vocab_size=64, emb_dim=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
              head_dim=8, mlp_dim=32, dtype="float32")
  vocab = seqio.PassThroughVocabulary(64, eos_id=1)
  models = {impl: EncoderDecoderModel(mt5.MT5Config(**base, attention=impl), vocab)
            for impl in layers.ATTENTION_IMPLEMENTATIONS}
  shapes = {k: batch[k].shape for k in ("encoder_input_tokens", "decoder_input_tokens")}
  params = models["materialised"].init_variables(jax.random.PRNGKey(0), shapes)["params"]
  params = jax.tree.map(lambda x: x.value if hasattr(x, "value") else x, params,
                        is_leaf=lambda x: hasattr(x, "value"))
  results = {impl: jax.value_and_grad(lambda p: m.loss_fn(p, batch, None)[0])(params)
             for impl, m in models.items()}
  (loss_a, g_a), (loss_b, g_b) = results["materialised"], results["fused"]
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_b)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

  seg = np.array([[1, 1, 1, 2, 2, 2, 2, 0]])
  ids = np.where(seg > 0, RNG.integers(1, 64, size=seg.shape), 0)
  pos = np.array([[0, 1, 2, 0, 1, 2, 3, 0]])
  dbatch = dict(decoder_input_tokens=ids, decoder_target_tokens=np.roll(ids, -1, 1) * (seg > 0),
                decoder_segment_ids=seg, decoder_positions=pos)
  for extra in (dict(sliding_window=2), dict(position="alibi", norm="layer")):
    cfgs = {impl: decoder.DecoderConfig(vocab_size=64, d_model=16, num_layers=2, num_heads=4,
                                        num_kv_heads=2, mlp_dim=32, attention=impl, **extra)
            for impl in layers.ATTENTION_IMPLEMENTATIONS}
    dm = {impl: decoder.DecoderOnlyModel(c, None) for impl, c in cfgs.items()}
    variables = dm["materialised"].init_variables(jax.random.PRNGKey(1), {"decoder_input_tokens": ids.shape})
    logits = {impl: np.asarray(m.logits(variables, dbatch)) for impl, m in dm.items()}
    np.testing.assert_allclose(logits["fused"][seg > 0], logits["materialised"][seg > 0],
                               rtol=1e-5, atol=1e-5)
