"""Building blocks shared by the encoder-decoder and decoder-only models.

Tensor names carry their shapes: B batch, T query length, S key length, L length,
D model width, N query heads, K key/value heads, G = N // K, H head width, V vocab.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# Remat policies by config name; "none" means no rematerialisation at all.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class RMSNorm(nn.Module):
  """RMS layer norm without bias or mean subtraction (T5, Llama; Gemma with scale_offset=1)."""

  epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  scale_offset: float = 0.0  # Gemma stores scale - 1

  @nn.compact
  def __call__(self, x_BxLxD: Array) -> Array:
    x32 = x_BxLxD.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = (x32 * jax.lax.rsqrt(mean_square + self.epsilon)).astype(self.dtype)
    init = nn.initializers.zeros if self.scale_offset else nn.initializers.ones
    scale_D = self.param(
        "scale", nn.with_logical_partitioning(init, ("embed",)),
        (x_BxLxD.shape[-1],), self.param_dtype)
    return y * (scale_D.astype(self.dtype) + self.scale_offset)


def attention_mask(
    query_segment_ids_BxT: Array,
    key_segment_ids_BxS: Array,
    *,
    causal: bool,
    sliding_window: int | None = None,
    bidirectional_prefix_BxT: Array | None = None,
) -> Array:
  """Boolean mask [B, 1, T, S]: True where a query may attend to a key.

  Segment id 0 is padding; other ids separate packed examples. Causality and the
  sliding window are by index in the row, which within one packed segment equals the
  position difference. `bidirectional_prefix_BxT` (T == S) marks prefix-LM inputs
  that attend to each other in both directions (T5X's `decoder_causal_attention`).
  """
  q_BxTx1 = query_segment_ids_BxT[:, :, None]
  k_Bx1xS = key_segment_ids_BxS[:, None, :]
  mask_BxTxS = (q_BxTx1 == k_Bx1xS) & (q_BxTx1 > 0) & (k_Bx1xS > 0)
  if causal or sliding_window is not None:
    t_Tx1 = jnp.arange(query_segment_ids_BxT.shape[1])[:, None]
    s_1xS = jnp.arange(key_segment_ids_BxS.shape[1])[None, :]
    order_TxS = jnp.ones_like(t_Tx1 >= s_1xS)
    if causal:
      order_TxS = t_Tx1 >= s_1xS
    if sliding_window is not None:
      order_TxS = order_TxS & (t_Tx1 - s_1xS < sliding_window)
    order_BxTxS = jnp.broadcast_to(order_TxS, mask_BxTxS.shape)
    if bidirectional_prefix_BxT is not None:
      prefix = bidirectional_prefix_BxT.astype(bool)
      order_BxTxS = order_BxTxS | (prefix[:, :, None] & prefix[:, None, :])
    mask_BxTxS = mask_BxTxS & order_BxTxS
  return mask_BxTxS[:, None, :, :]


def dot_product_attention(
    q_BxTxNxH: Array,
    k_BxSxKxH: Array,
    v_BxSxKxH: Array,
    *,
    mask_Bx1xTxS: Array | None = None,
    bias_BxNxTxS: Array | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: Array | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Array:
  """Softmax attention with grouped-query heads (N = K * G), an additive bias and a mask.

  No scaling inside: callers scale the queries (T5 folds the scale into the init).
  The softmax runs in float32 whatever the compute dtype. Fully masked rows (padding
  queries) give zeros, not NaN.
  """
  b, t, n, h = q_BxTxNxH.shape
  kv_heads = k_BxSxKxH.shape[2]
  g = n // kv_heads
  q_BxTxKxGxH = q_BxTxNxH.reshape(b, t, kv_heads, g, h)
  logits_BxKxGxTxS = jnp.einsum(
      "btkgh,bskh->bkgts", q_BxTxKxGxH, k_BxSxKxH,
      preferred_element_type=jnp.float32)
  s = logits_BxKxGxTxS.shape[-1]
  if bias_BxNxTxS is not None:
    bias = jnp.broadcast_to(bias_BxNxTxS, (bias_BxNxTxS.shape[0], n, t, s))
    logits_BxKxGxTxS = logits_BxKxGxTxS + bias.reshape(-1, kv_heads, g, t, s).astype(jnp.float32)
  if mask_Bx1xTxS is not None:
    mask_Bx1x1xTxS = mask_Bx1xTxS[:, :, None, :, :]
    logits_BxKxGxTxS = jnp.where(mask_Bx1x1xTxS, logits_BxKxGxTxS, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits_BxKxGxTxS, axis=-1)
  if mask_Bx1xTxS is not None:
    weights = jnp.where(mask_Bx1x1xTxS, weights, 0.0)
  if dropout_rate > 0.0 and dropout_rng is not None:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  out_BxTxKxGxH = jnp.einsum("bkgts,bskh->btkgh", weights.astype(dtype), v_BxSxKxH.astype(dtype))
  return out_BxTxKxGxH.reshape(b, t, n, h)


def _logit_stats(h_BxCxD: Array, kernel_DxV: Array, targets_BxC: Array):
  logits_BxCxV = jnp.einsum("bcd,dv->bcv", h_BxCxD, kernel_DxV, preferred_element_type=jnp.float32)
  lse_BxC = jax.nn.logsumexp(logits_BxCxV, axis=-1)
  target_logit_BxC = jnp.take_along_axis(logits_BxCxV, targets_BxC[..., None], axis=-1)[..., 0]
  correct_BxC = jnp.argmax(logits_BxCxV, axis=-1) == targets_BxC
  return lse_BxC, target_logit_BxC, correct_BxC


def output_logit_stats(
    hidden_BxLxD: Array,
    kernel_DxV: Array,
    targets_BxL: Array,
    *,
    chunk_length: int | None = None,
) -> tuple[Array, Array, Array]:
  """log-sum-exp, target logit and argmax==target per position, in float32.

  The cross-entropy is `lse - target_logit` (+ z_loss * lse**2), the target
  log-probability `target_logit - lse`. With `chunk_length`, positions are processed
  in chunks under `jax.checkpoint`, so full [B, L, V] logits never exist at once, in
  the forward or the backward pass (250k-token vocabularies). Chunks run along the
  length axis so a batch sharded over devices stays sharded.
  """
  b, length, d = hidden_BxLxD.shape
  if chunk_length is None or chunk_length >= length:
    return _logit_stats(hidden_BxLxD, kernel_DxV, targets_BxL)
  num_chunks = -(-length // chunk_length)
  pad = num_chunks * chunk_length - length
  h = jnp.pad(hidden_BxLxD, ((0, 0), (0, pad), (0, 0)))
  t = jnp.pad(targets_BxL, ((0, 0), (0, pad)))
  h_ZxBxCxD = h.reshape(b, num_chunks, chunk_length, d).swapaxes(0, 1)
  t_ZxBxC = t.reshape(b, num_chunks, chunk_length).swapaxes(0, 1)

  @jax.checkpoint
  def body(carry, chunk):
    return carry, _logit_stats(chunk[0], kernel_DxV, chunk[1])

  _, stats = jax.lax.scan(body, None, (h_ZxBxCxD, t_ZxBxC))
  return tuple(x.swapaxes(0, 1).reshape(b, -1)[:, :length] for x in stats)


def token_cross_entropy(lse_BxL: Array, target_logit_BxL: Array, z_loss: float = 0.0) -> Array:
  """Per-token cross-entropy with T5X's z-loss term (z_loss * log(Z)**2)."""
  return lse_BxL - target_logit_BxL + z_loss * jnp.square(lse_BxL)
