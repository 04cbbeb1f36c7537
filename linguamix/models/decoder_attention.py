"""The decoder's attention: projections, RoPE (also partial and per layer kind), ALiBi, KV cache."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from linguamix.models import layers
from linguamix.models.decoder_config import DecoderConfig
from linguamix.models.decoder_layers import Dense

Array = jax.Array


def rope_inverse_frequencies(cfg: DecoderConfig) -> np.ndarray:
  """[R/2] inverse frequencies over the R = head_width * rope_fraction rotating features,
  with linear or Llama 3 ("llama3") scaling."""
  h = int(cfg.head_width * cfg.rope_fraction)
  inv_freq = 1.0 / (cfg.rope_base ** (np.arange(0, h, 2, dtype=np.float64) / h))
  if cfg.rope_type == "default":
    return inv_freq
  if cfg.rope_type == "linear":
    return inv_freq / cfg.rope_factor
  if cfg.rope_type == "llama3":
    old_len = cfg.rope_original_max_positions
    low_wavelen = old_len / cfg.rope_low_freq_factor
    high_wavelen = old_len / cfg.rope_high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / cfg.rope_factor, inv_freq)
    smooth = ((old_len / wavelen - cfg.rope_low_freq_factor)
              / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor))
    smoothed = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)
  raise ValueError(f"DecoderConfig.rope_type must be default, linear or llama3, got {cfg.rope_type!r}")


def rope_local_inverse_frequencies(cfg: DecoderConfig) -> np.ndarray:
  """[H/2] inverse frequencies of the 'sliding_attention' layers: plain RoPE at rope_local_base."""
  if cfg.rope_local_base is None:
    return rope_inverse_frequencies(cfg)
  h = cfg.head_width
  return 1.0 / (cfg.rope_local_base ** (np.arange(0, h, 2, dtype=np.float64) / h))


def apply_rope(x_BxTxNxH: Array, positions_BxT: Array, inv_freq: np.ndarray) -> Array:
  """Rotary embedding, half-split layout (the Hugging Face convention), on the first
  2 * len(inv_freq) features of each head; the others pass unchanged (partial rotary)."""
  angles_BxTxF = positions_BxT[..., None].astype(jnp.float32) * jnp.asarray(inv_freq, jnp.float32)
  cos = jnp.cos(angles_BxTxF)[:, :, None, :]
  sin = jnp.sin(angles_BxTxF)[:, :, None, :]
  x32 = x_BxTxNxH.astype(jnp.float32)
  rotating = 2 * inv_freq.shape[0]
  x1, x2 = jnp.split(x32[..., :rotating], 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x32[..., rotating:]], axis=-1)
  return out.astype(x_BxTxNxH.dtype)


def _qk_norm(cfg: DecoderConfig, name: str) -> nn.Module:
  """RMSNorm over the head width of each query/key head (scale [head_width])."""
  return layers.RMSNorm(epsilon=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                        scale_offset=cfg.norm_scale_offset, name=name)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """ALiBi head slopes (Press et al.), with BLOOM's rule for non-power-of-two head counts."""
  closest = 2 ** math.floor(math.log2(num_heads))
  slopes = [2.0 ** (-8.0 * i / closest) for i in range(1, closest + 1)]
  extra = [2.0 ** (-4.0 * i / closest) for i in range(1, 2 * (num_heads - closest), 2)]
  return np.asarray(slopes + extra, np.float32)


def _write_cache(cache_BxSxKxH: Array, new_BxTxKxH: Array, index_B: Array) -> Array:
  """Writes T new steps at per-example slots index_B .. index_B + T - 1."""
  t, s = new_BxTxKxH.shape[1], cache_BxSxKxH.shape[1]
  if t == s:  # prefill of the whole cache
    return new_BxTxKxH.astype(cache_BxSxKxH.dtype)
  slots_BxT = index_B[:, None] + jnp.arange(t)
  onehot_BxTxS = (slots_BxT[:, :, None] == jnp.arange(s)).astype(cache_BxSxKxH.dtype)
  written_BxS = onehot_BxTxS.sum(1)
  new = jnp.einsum("bts,btkh->bskh", onehot_BxTxS, new_BxTxKxH.astype(cache_BxSxKxH.dtype))
  return cache_BxSxKxH * (1 - written_BxS)[:, :, None, None] + new


class Attention(nn.Module):
  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD, mask_bias_Bx1xTxS, positions_BxT, key_positions_BxS, cache, cache_index_B,
               local=None, kernel_mask=None):
    """`local`: a bool scalar, True in a 'sliding_attention' layer (None without layer_types).
    `kernel_mask`: the same mask as ids, for the TPU kernel (None: the bias path only)."""
    cfg = self.config
    n, k, h = cfg.num_heads, cfg.kv_heads, cfg.head_width
    dense = functools.partial(Dense, use_bias=cfg.qkv_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                              lora=cfg.lora, deterministic=self.deterministic)
    q_BxTxNxH = dense((n, h), ("embed", "heads", "kv"), name="query")(x_BxTxD)
    k_BxTxKxH = dense((k, h), ("embed", "kv_heads", "kv"), name="key")(x_BxTxD)
    v_BxTxKxH = dense((k, h), ("embed", "kv_heads", "kv"), name="value")(x_BxTxD)
    if cfg.qk_norm:
      q_BxTxNxH = _qk_norm(cfg, "query_norm")(q_BxTxNxH)
      k_BxTxKxH = _qk_norm(cfg, "key_norm")(k_BxTxKxH)
    if cfg.position == "rope":
      inv_freq = rope_inverse_frequencies(cfg)
      if local is not None and cfg.rope_local_base is not None:
        inv_freq = jnp.where(local, rope_local_inverse_frequencies(cfg), inv_freq)
      q_BxTxNxH = apply_rope(q_BxTxNxH, positions_BxT, inv_freq)
      k_BxTxKxH = apply_rope(k_BxTxKxH, positions_BxT, inv_freq)
    scale = h ** -0.5 if cfg.query_scale is None else cfg.query_scale
    q_BxTxNxH = q_BxTxNxH * jnp.asarray(scale, cfg.dtype)
    new_cache = None
    if cache is not None:
      k_BxTxKxH = _write_cache(cache[0], k_BxTxKxH, cache_index_B)
      v_BxTxKxH = _write_cache(cache[1], v_BxTxKxH, cache_index_B)
      new_cache = (k_BxTxKxH, v_BxTxKxH)
    bias_BxNxTxS = mask_bias_Bx1xTxS
    if cfg.position == "alibi":
      distance_BxTxS = (key_positions_BxS[:, None, :] - positions_BxT[:, :, None]).astype(jnp.float32)
      bias_BxNxTxS = bias_BxNxTxS + jnp.asarray(alibi_slopes(n))[None, :, None, None] * distance_BxTxS[:, None]
    dropout_rng = None if self.deterministic or cfg.dropout_rate == 0 else self.make_rng("dropout")
    out_BxTxNxH = layers.dot_product_attention(
        q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, bias_BxNxTxS=bias_BxNxTxS,
        dropout_rate=cfg.dropout_rate, dropout_rng=dropout_rng, dtype=cfg.dtype,
        implementation=cfg.attention, logit_softcap=cfg.attn_logit_softcap,
        kernel_mask=None if kernel_mask is None else kernel_mask.replace(local=local))
    out_BxTxD = Dense((cfg.d_model,), ("heads", "kv", "embed"), in_dims=2, use_bias=cfg.out_bias,
                      dtype=cfg.dtype, param_dtype=cfg.param_dtype, lora=cfg.lora,
                      deterministic=self.deterministic, name="out")(out_BxTxNxH)
    return out_BxTxD, new_cache
