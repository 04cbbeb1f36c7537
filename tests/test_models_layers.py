"""Shared model layers: chunked cross-entropy and grouped-query attention."""

import jax
import jax.numpy as jnp
import numpy as np

from linguamix.models import layers, losses


def test_chunked_logit_stats_match_full_logits_and_gradients():
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(size=(2, 7, 8)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(8, 50)), jnp.float32)
  t = jnp.asarray(rng.integers(0, 50, size=(2, 7)))
  logits = np.einsum("bld,dv->blv", np.asarray(h, np.float64), np.asarray(w, np.float64))
  lse_ref = np.log(np.exp(logits).sum(-1))
  tgt_ref = np.take_along_axis(logits, np.asarray(t)[..., None], -1)[..., 0]
  for chunk in (None, 3, 7):
    lse, tgt, correct = layers.output_logit_stats(h, w, t, chunk_length=chunk)
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-5)
    np.testing.assert_allclose(tgt, tgt_ref, rtol=1e-5)
    np.testing.assert_array_equal(correct, logits.argmax(-1) == np.asarray(t))

  def loss(h, w, chunk):
    lse, tgt, correct = layers.output_logit_stats(h, w, t, chunk_length=chunk)
    return losses.cross_entropy(lse, tgt, correct, jnp.ones(t.shape), z_loss=1e-4, normalizer=None)[0]

  # The hand-written backward pass against autodiff of the textbook formula.
  def loss_ref(h, w):
    logits = jnp.einsum("bld,dv->blv", h, w)
    lse = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
    return (lse - tgt + 1e-4 * lse ** 2).sum()

  g_ref = jax.grad(loss_ref, argnums=(0, 1))(h, w)
  g_full = jax.grad(loss, argnums=(0, 1))(h, w, None)
  g_chunk = jax.grad(loss, argnums=(0, 1))(h, w, 3)
  for a, b, r in zip(g_full, g_chunk, g_ref):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, r, rtol=1e-5, atol=1e-6)


def test_soft_capped_logit_stats_gradients_match_autodiff():
  rng = np.random.default_rng(2)
  h = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(8, 40)), jnp.float32)
  t = jnp.asarray(rng.integers(0, 40, size=(2, 5)))

  def loss(h, w):
    lse, tgt, _ = layers.output_logit_stats(h, w, t, logit_softcap=3.0)
    return (lse - tgt).sum()

  def loss_ref(h, w):
    logits = 3.0 * jnp.tanh(jnp.einsum("bld,dv->blv", h, w) / 3.0)
    return (jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, t[..., None], -1)[..., 0]).sum()

  for a, r in zip(jax.grad(loss, argnums=(0, 1))(h, w), jax.grad(loss_ref, argnums=(0, 1))(h, w)):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)


def test_grouped_query_attention_matches_repeated_heads_and_masks_segments():
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.normal(size=(1, 4, 6, 3)), jnp.float32)  # 6 query heads
  k = jnp.asarray(rng.normal(size=(1, 4, 2, 3)), jnp.float32)  # 2 kv heads
  v = jnp.asarray(rng.normal(size=(1, 4, 2, 3)), jnp.float32)
  seg = jnp.array([[1, 1, 2, 0]])
  mask = layers.attention_mask(seg, seg, causal=True)
  out = layers.dot_product_attention(q, k, v, mask_Bx1xTxS=mask)
  # Reference: plain multi-head attention with each kv head repeated for its 3 queries.
  k_rep, v_rep = np.repeat(k, 3, axis=2), np.repeat(v, 3, axis=2)
  allowed = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
  for n in range(6):
    for i in range(4):
      if not allowed[i].any():
        np.testing.assert_array_equal(out[0, i, n], 0.0)  # padding query: zeros, no NaN
        continue
      s = np.asarray(q[0, i, n]) @ np.asarray(k_rep[0, :, n]).T
      s = np.where(allowed[i], s, -np.inf)
      p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
      np.testing.assert_allclose(out[0, i, n], p @ np.asarray(v_rep[0, :, n]), rtol=1e-5, atol=1e-6)


def test_prefix_lm_mask_is_bidirectional_inside_the_prefix_only():
  seg = jnp.ones((1, 4), jnp.int32)
  prefix = jnp.array([[1, 1, 0, 0]])
  mask = np.asarray(layers.attention_mask(seg, seg, causal=True, bidirectional_prefix_BxT=prefix))[0, 0]
  expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(mask, expected)


def test_broadcast_batch_gradient_is_the_batch_sum_autodiff_gives():
  x_1xNxT = jax.random.normal(jax.random.key(0), (1, 3, 5))
  w_BxNxT = jax.random.normal(jax.random.key(1), (4, 3, 5))

  def loss(broadcast, x):
    return jnp.sum(jnp.sin(broadcast(x)) * w_BxNxT)

  ours = jax.grad(lambda x: loss(lambda v: layers.broadcast_batch(v, 4), x))(x_1xNxT)
  reference = jax.grad(lambda x: loss(lambda v: jnp.broadcast_to(v, (4, 3, 5)), x))(x_1xNxT)
  assert ours.shape == (1, 3, 5)
  np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(layers.broadcast_batch(x_1xNxT, 4), jnp.broadcast_to(x_1xNxT, (4, 3, 5)))


def test_masked_softmax_values_and_gradients_match_autodiff_of_jax_softmax():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 2, 5, 7)) * 4, jnp.float32)
  mask = jnp.asarray(rng.random((3, 1, 5, 7)) > 0.3)
  mask = mask.at[0, 0, 1].set(False)  # a fully masked row (a padding query)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

  def reference(x, mask):
    if mask is None:
      return jax.nn.softmax(x, axis=-1)
    return jnp.where(mask, jax.nn.softmax(jnp.where(mask, x, jnp.finfo(jnp.float32).min)), 0.0)

  for m in (None, mask):
    p = layers.masked_softmax(x, m)
    np.testing.assert_allclose(p, reference(x, m), rtol=1e-6, atol=1e-7)
    grad = jax.grad(lambda x: jnp.sum(g * layers.masked_softmax(x, m)))(x)
    grad_ref = jax.grad(lambda x: jnp.sum(g * reference(x, m)))(x)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(layers.masked_softmax(x, mask)[0, 0, 1], 0.0)
  assert np.abs(np.asarray(grad_ref)).max() > 0.1  # the comparison is not of zeros
