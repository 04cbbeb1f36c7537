"""Building blocks shared by the encoder-decoder and decoder-only models.

Tensor names carry their shapes: B batch, T query length, S key length, L length,
D model width, N query heads, K key/value heads, G = N // K, H head width, V vocab.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from linguamix.models import attention_kernels

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


# How attention is computed (`MT5Config.attention` / `DecoderConfig.attention`):
# "materialised" forms the [B, N, T, S] probabilities (the reference, and the CPU path);
# "fused" runs Pallas' splash kernel on TPU where the model hands over a `KernelMask`, and
# otherwise `jax.nn.dot_product_attention`: cuDNN's flash attention on NVIDIA GPUs
# (bf16/fp16), XLA's own composition elsewhere (see attention_kernels.attention_impl_for).
ATTENTION_IMPLEMENTATIONS = ("materialised", "fused")
_MASKED = float(jnp.finfo(jnp.float32).min) / 2  # finite: a fully masked row stays NaN-free


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def broadcast_batch(x_1xF: Array, batch: int) -> Array:
  """`x` [1, ...] broadcast to [batch, ...]; its gradient sums over the batch as a matvec.

  A bias shared by the batch (T5's relative positions) gets its gradient through this
  sum. As a reduction over the leading axis XLA:CPU ran it at ~90M elements/s (YNNPACK's
  reduce, ~12 ms a stack in the tiny mT5 step); ones[B] @ g[B, F] reads the same memory
  at the speed of a dot (~2 ms), on every backend and sharded batches alike.
  """
  return jnp.broadcast_to(x_1xF, (batch, *x_1xF.shape[1:]))


def _broadcast_batch_fwd(x_1xF, batch):
  return broadcast_batch(x_1xF, batch), None


def _broadcast_batch_bwd(batch, _, g_BxF):
  ones_B = jnp.ones((batch,), g_BxF.dtype)
  g_F = jnp.dot(ones_B, g_BxF.reshape(batch, -1), precision=jax.lax.Precision.HIGHEST,
                preferred_element_type=jnp.float32)
  return (g_F.reshape(1, *g_BxF.shape[1:]).astype(g_BxF.dtype),)


broadcast_batch.defvjp(_broadcast_batch_fwd, _broadcast_batch_bwd)


def mask_bias(mask_Bx1xTxS: Array, bias_BxNxTxS: Array | None = None) -> Array:
  """The boolean mask folded into one additive float32 bias (0 or a large negative).

  Built once per stack and shared by its layers (T5X does the same), so no layer repeats
  the select in the forward or the backward pass, and the gradient of a shared relative
  position bias is reduced over the batch once, not once per layer.
  """
  additive = jnp.where(mask_Bx1xTxS, 0.0, _MASKED).astype(jnp.float32)
  if bias_BxNxTxS is None:
    return additive
  bias = bias_BxNxTxS.astype(jnp.float32)
  if bias.shape[0] == 1:  # shared by the batch: see broadcast_batch
    bias = broadcast_batch(bias, additive.shape[0])
  return additive + bias


@jax.custom_vjp
def masked_softmax(logits: Array, mask: Array | None = None) -> Array:
  """Softmax over the last axis; where `mask` is False the weight is 0, and so is every
  weight of a fully masked row.

  Its own VJP keeps only the weights p and forms p * (g - sum(g * p)) in one pass, where
  autodiff of exp / sum kept exp, the sum and its square (the tiny mT5 step went from 1.20x
  to 1.32x transformers' speed, interleaved, 2-core EPYC).
  """
  return _masked_softmax_fwd(logits, mask)[0]


def _masked_softmax_fwd(logits, mask):
  x = logits if mask is None else jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
  if mask is not None:
    e = jnp.where(mask, e, 0.0)
  # A row with any unmasked entry sums to >= 1 (its maximum contributes exp(0)); a fully
  # masked row sums to 0 and keeps its zeros.
  p = e * (1.0 / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), jnp.finfo(logits.dtype).tiny))
  return p, p


def _masked_softmax_bwd(p, g):
  return p * (g - jnp.sum(g * p, axis=-1, keepdims=True)), None


masked_softmax.defvjp(_masked_softmax_fwd, _masked_softmax_bwd)


def _use_cudnn(q_BxTxNxH: Array) -> bool:
  return jax.default_backend() == "gpu" and q_BxTxNxH.dtype in (jnp.bfloat16, jnp.float16)


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
    implementation: str = "materialised",
    logit_softcap: float | None = None,
    kernel_mask: attention_kernels.KernelMask | None = None,
) -> Array:
  """Softmax attention with grouped-query heads (N = K * G), an additive bias and a mask.

  No scaling inside: callers scale the queries (T5 folds the scale into the init).
  `logit_softcap` (Gemma 2) maps the logits to cap * tanh(logits / cap) before the bias
  and mask are added; the fused kernels have no such step, so it takes the materialised path.
  The softmax runs in float32 whatever the compute dtype. With `mask_Bx1xTxS`, fully
  masked rows (padding queries) give zeros; with the mask folded into the bias
  (`mask_bias`) they give finite values that only padding positions see.
  `implementation="fused"` takes the kernel path (see ATTENTION_IMPLEMENTATIONS); with
  attention dropout active it falls back to the materialised path, which has dropout.
  With `kernel_mask` (the same mask as ids; the bias must then be that mask alone),
  "fused" runs the splash kernel in a program lowered for TPU and this path elsewhere.
  """
  if implementation not in ATTENTION_IMPLEMENTATIONS:
    raise ValueError(f"attention implementation {implementation!r}; expected one of "
                     f"{ATTENTION_IMPLEMENTATIONS}")
  if implementation == "fused" and kernel_mask is not None:
    xla = functools.partial(
        dot_product_attention, mask_Bx1xTxS=mask_Bx1xTxS, bias_BxNxTxS=bias_BxNxTxS,
        dropout_rate=dropout_rate, dropout_rng=dropout_rng, dtype=dtype,
        implementation=implementation, logit_softcap=logit_softcap)
    tpu = functools.partial(attention_kernels.splash_attention, mask=kernel_mask,
                            logit_softcap=logit_softcap, dtype=dtype)
    # decided when lowering, for the target's platform (not the host's)
    return jax.lax.platform_dependent(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, tpu=tpu, default=xla)
  dropout = dropout_rate > 0.0 and dropout_rng is not None
  if implementation == "fused" and not dropout and logit_softcap is None:
    return _fused_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_Bx1xTxS, bias_BxNxTxS, dtype)
  b, t, n, h = q_BxTxNxH.shape
  kv_heads = k_BxSxKxH.shape[2]
  g = n // kv_heads
  s = k_BxSxKxH.shape[1]
  # The scores are [B, K, G, T, S] for grouped queries and [B, N, T, S] when G = 1: a
  # size-1 axis made XLA:CPU's YNNPACK fusion of the softmax gradient 10x slower (3.6 vs
  # 0.36 ms on the tiny mT5 step's [16, 4, (1,) 128, 128], 2-core EPYC).
  heads = (n,) if g == 1 else (kv_heads, g)
  ones = (1,) * len(heads)
  q_BxTxHeadsxH = q_BxTxNxH.reshape(b, t, *heads, h)
  scores_spec = "btnh,bsnh->bnts" if g == 1 else "btkgh,bskh->bkgts"
  logits = jnp.einsum(scores_spec, q_BxTxHeadsxH, k_BxSxKxH, preferred_element_type=jnp.float32)
  logits = softcap(logits, logit_softcap)
  if bias_BxNxTxS is not None:
    bias = bias_BxNxTxS.astype(jnp.float32)
    logits = logits + bias.reshape(bias.shape[0], *(ones if bias.shape[1] == 1 else heads), t, s)
  mask = None if mask_Bx1xTxS is None else mask_Bx1xTxS.reshape(mask_Bx1xTxS.shape[0], *ones, t, s)
  weights = masked_softmax(logits, mask)
  if dropout:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  out_spec = "bnts,bsnh->btnh" if g == 1 else "bkgts,bskh->btkgh"
  out_BxTxHeadsxH = jnp.einsum(out_spec, weights.astype(dtype), v_BxSxKxH.astype(dtype))
  return out_BxTxHeadsxH.reshape(b, t, n, h)


def _fused_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_Bx1xTxS, bias_BxNxTxS, dtype):
  """`jax.nn.dot_product_attention`: cuDNN flash attention on NVIDIA GPUs, else XLA.

  cuDNN takes the additive bias (relative positions, ALiBi, and the mask folded in by
  `mask_bias`, which carries packing's segment ids, causality, sliding windows and
  prefix-LM structure alike); jax folds a boolean mask into that bias itself.
  """
  q, k, v = (x.astype(dtype) for x in (q_BxTxNxH, k_BxSxKxH, v_BxSxKxH))
  impl = "cudnn" if _use_cudnn(q) else "xla"
  bias = None
  if bias_BxNxTxS is not None and impl == "cudnn":
    # the large negative jax's cuDNN path uses itself: cuDNN mishandles two near -max values
    bias = jnp.maximum(bias_BxNxTxS, -float(2 << 40)).astype(dtype)
  elif bias_BxNxTxS is not None:
    bias = bias_BxNxTxS.astype(jnp.float32)
  out_BxTxNxH = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask_Bx1xTxS, scale=1.0,
                                             implementation=impl)
  if mask_Bx1xTxS is not None:  # the reference's zeros for fully masked (padding) rows
    valid_BxTx1x1 = jnp.any(mask_Bx1xTxS, axis=-1)[:, 0, :, None, None]
    out_BxTxNxH = jnp.where(valid_BxTx1x1, out_BxTxNxH, 0.0).astype(out_BxTxNxH.dtype)
  return out_BxTxNxH


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def project(x: Array, kernel: Array, in_dims: int = 1) -> Array:
  """`x` contracted over its last `in_dims` axes with the kernel's first ones (a Dense layer).

  The backward pass is written out as two plain tensordots: from autodiff's, XLA:CPU
  computed the kernel gradient from a transposed copy of the output gradient with both
  dot operands transposed, several times slower than the same product laid out plainly
  (the tiny mT5 step spent ~2-4 ms per projection in such copies and dots).
  """
  return jnp.tensordot(x, kernel, axes=in_dims)


def _project_fwd(x, kernel, in_dims):
  return jnp.tensordot(x, kernel, axes=in_dims), (x, kernel)


def _project_bwd(in_dims, residuals, g):
  x, kernel = residuals
  batch = x.ndim - in_dims
  out = kernel.ndim - in_dims
  g_x = jnp.tensordot(g, kernel, axes=(tuple(range(batch, batch + out)), tuple(range(in_dims, kernel.ndim))))
  g_kernel = jnp.tensordot(x, g, axes=(tuple(range(batch)), tuple(range(batch))))
  return g_x.astype(x.dtype), g_kernel.astype(kernel.dtype)


project.defvjp(_project_fwd, _project_bwd)


def softcap(logits: Array, cap: float | None) -> Array:
  """cap * tanh(logits / cap) (Gemma 2's soft capping); the logits unchanged when cap is None."""
  if cap is None:
    return logits
  return jnp.tanh(logits / cap) * cap


# The logit of a row that holds no token: exp() of it is 0 in float32, and finite, so a
# padding target's (unweighted) loss and the soft cap's derivative stay finite.
MASKED_LOGIT = -1e9


def mask_row_zero(logits: Array, masked: bool) -> Array:
  """Logits with id 0's set to MASKED_LOGIT when `masked`: id 0 is padding, not a token."""
  if not masked:
    return logits
  return jnp.where(jnp.arange(logits.shape[-1]) == 0, MASKED_LOGIT, logits)


def _logit_stats_fwd(h_BxCxD: Array, kernel_DxV: Array, targets_BxC: Array, logit_softcap: float | None,
                     masked_zero: bool = False):
  logits_BxCxV = jnp.einsum("bcd,dv->bcv", h_BxCxD, kernel_DxV, preferred_element_type=jnp.float32)
  logits_BxCxV = mask_row_zero(softcap(logits_BxCxV, logit_softcap), masked_zero)
  # One max over V serves the log-sum-exp and the accuracy: an argmax is a variadic
  # (value, index) reduction, which XLA:CPU ran at ~9 ms of a 160 ms tiny mT5 step.
  max_BxC = jnp.max(logits_BxCxV, axis=-1)
  lse_BxC = max_BxC + jnp.log(jnp.sum(jnp.exp(logits_BxCxV - max_BxC[..., None]), axis=-1))
  target_logit_BxC = jnp.take_along_axis(logits_BxCxV, targets_BxC[..., None], axis=-1)[..., 0]
  # Correct = the target's logit is the maximum (a tie for the maximum counts as correct).
  correct_BxC = (target_logit_BxC >= max_BxC).astype(jnp.float32)
  return (lse_BxC, target_logit_BxC, correct_BxC), (h_BxCxD, kernel_DxV, targets_BxC, logits_BxCxV, lse_BxC)


def _logit_stats_bwd(logit_softcap, masked_zero, residuals, cotangents):
  """d logits = softmax * g_lse + one_hot(target) * g_target (accuracy: zero almost everywhere),
  times the soft cap's derivative 1 - (logits / cap)**2 when the logits are capped.

  Written out because autodiff's version scatters the target-logit gradient and XLA:CPU
  then multiplies the output kernel's gradient with both operands transposed (~10 ms of
  the tiny mT5 step, against ~1.5 ms for the same dot in a plain layout).
  """
  h_BxCxD, kernel_DxV, targets_BxC, logits_BxCxV, lse_BxC = residuals
  g_lse_BxC, g_target_BxC, _ = cotangents
  vocab_V = jnp.arange(logits_BxCxV.shape[-1])
  g_BxCxV = (jnp.exp(logits_BxCxV - lse_BxC[..., None]) * g_lse_BxC[..., None]
             + jnp.where(vocab_V == targets_BxC[..., None], g_target_BxC[..., None], 0.0))
  if logit_softcap is not None:
    g_BxCxV = g_BxCxV * (1.0 - jnp.square(logits_BxCxV / logit_softcap))
  if masked_zero:  # a constant logit: no gradient reaches row 0
    g_BxCxV = jnp.where(vocab_V == 0, 0.0, g_BxCxV)
  g_BxCxV = g_BxCxV.astype(kernel_DxV.dtype)
  g_h = jnp.einsum("bcv,dv->bcd", g_BxCxV, kernel_DxV, preferred_element_type=jnp.float32)
  g_kernel = jnp.einsum("bcd,bcv->dv", h_BxCxD.astype(kernel_DxV.dtype), g_BxCxV,
                        preferred_element_type=jnp.float32)
  return g_h.astype(h_BxCxD.dtype), g_kernel.astype(kernel_DxV.dtype), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _logit_stats(h_BxCxD: Array, kernel_DxV: Array, targets_BxC: Array, logit_softcap: float | None = None,
                 masked_zero: bool = False):
  return _logit_stats_fwd(h_BxCxD, kernel_DxV, targets_BxC, logit_softcap, masked_zero)[0]


_logit_stats.defvjp(_logit_stats_fwd, _logit_stats_bwd)


def output_logit_stats(
    hidden_BxLxD: Array,
    kernel_DxV: Array,
    targets_BxL: Array,
    *,
    chunk_length: int | None = None,
    logit_softcap: float | None = None,
    masked_zero: bool = False,
) -> tuple[Array, Array, Array]:
  """log-sum-exp, target logit and argmax==target per position, in float32.

  `logit_softcap` soft-caps the logits first (`softcap`; Gemma 2's final_logit_softcapping);
  `masked_zero` leaves id 0 out of the softmax (`mask_row_zero`).

  The cross-entropy is `lse - target_logit` (+ z_loss * lse**2), the target
  log-probability `target_logit - lse`. With `chunk_length`, positions are processed
  in chunks under `jax.checkpoint`, so full [B, L, V] logits never exist at once, in
  the forward or the backward pass (250k-token vocabularies). Chunks run along the
  length axis so a batch sharded over devices stays sharded.
  """
  b, length, d = hidden_BxLxD.shape
  if chunk_length is None or chunk_length >= length:
    lse, target_logit, correct = _logit_stats(hidden_BxLxD, kernel_DxV, targets_BxL, logit_softcap,
                                              masked_zero)
    return lse, target_logit, correct > 0
  num_chunks = -(-length // chunk_length)
  pad = num_chunks * chunk_length - length
  h = jnp.pad(hidden_BxLxD, ((0, 0), (0, pad), (0, 0)))
  t = jnp.pad(targets_BxL, ((0, 0), (0, pad)))
  h_ZxBxCxD = h.reshape(b, num_chunks, chunk_length, d).swapaxes(0, 1)
  t_ZxBxC = t.reshape(b, num_chunks, chunk_length).swapaxes(0, 1)

  @jax.checkpoint
  def body(carry, chunk):
    return carry, _logit_stats(chunk[0], kernel_DxV, chunk[1], logit_softcap, masked_zero)

  _, stats = jax.lax.scan(body, None, (h_ZxBxCxD, t_ZxBxC))
  lse, target_logit, correct = (x.swapaxes(0, 1).reshape(b, -1)[:, :length] for x in stats)
  return lse, target_logit, correct > 0
