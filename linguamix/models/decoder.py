"""Decoder-only transformer: one Flax module whose switches cover the families we tune.

Llama 2/3, Mistral, Qwen2 (RMSNorm, RoPE, SwiGLU, grouped-query attention, sliding
window, q/k/v bias), Gemma ((1+scale) RMSNorm, sqrt(d) embedding scale, GELU-tanh gate,
tied embeddings, free head width), Gemma 2 (norms after attention and MLP too, attention
and final logit soft-capping, sliding-window and global layers alternating), Gemma 3
(Gemma 2 without soft-capping, per-head q/k RMSNorm, a RoPE base per layer kind), BLOOM
(ALiBi, LayerNorm with bias, embedding LayerNorm, GELU MLP), GPT-2/mGPT (learned
positions), GPT-NeoX/Pythia (parallel residual, partial rotary) and Qwen3 (per-head q/k
RMSNorm). Fused HF projections (BLOOM's and GPT-NeoX's `query_key_value`, GPT-2's
`c_attn`) are split on import (`linguamix.models.hf`), so every family shares one
parameter tree:

  token_embedder/embedding [V, D]      pos_embedder/embedding [P, D] (learned)
  embed_norm (BLOOM)                   final_norm          logits_dense/kernel [D, V]
  layers/{pre_attention_norm, attention/{query,key,value,out, query_norm,key_norm (qk_norm)},
          post_attention_norm (post_norms), pre_mlp_norm, mlp/{wi_0 (gate), wi_1 (up) | wi, wo},
          post_mlp_norm (post_norms)}                   (stacked on `layers` under scan)

Layers that differ (`layer_types`: sliding-window vs global attention, their RoPE bases)
share one parameter structure; a per-layer flag, scanned with the layers, picks the
mask and RoPE frequencies, so `scan_layers=True` covers them too.

`DecoderOnlyModel` implements the T5X contract over SeqIO's DecoderFeatureConverter (as
`feature_converters`' subclass, which packs the same rows faster).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import seqio

from linguamix.models import attention_kernels, base, decoding, feature_converters, layers, losses
from linguamix.models import lora as lora_lib

Array = jax.Array
_ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Shape and switches of a decoder; defaults are Llama's."""

  vocab_size: int = 32000
  # Id 0 is SeqIO's padding and no row of the checkpoint: its logit is left out of every
  # softmax. Import sets it where the tokenizer's own id 0 (a real token: Llama 3's and
  # GPT-2's `!`) had to move to a row appended past the checkpoint's last
  # (`hf_vocabulary.moved_zero_id`); then vocab_size is the checkpoint's + 1.
  mask_row_zero: bool = False
  d_model: int = 4096
  num_layers: int = 32
  num_heads: int = 32
  num_kv_heads: int | None = None  # None: = num_heads (no grouping)
  head_dim: int | None = None  # None: d_model // num_heads (Gemma sets it freely)
  mlp_dim: int = 11008
  norm: str = "rms"  # "rms" | "layer" (LayerNorm with bias)
  norm_eps: float = 1e-6
  norm_scale_offset: float = 0.0  # Gemma: RMSNorm multiplies by (1 + scale)
  position: str = "rope"  # "rope" | "alibi" | "learned"
  max_positions: int = 2048  # size of the learned position table
  rope_base: float = 10000.0
  rope_type: str = "default"  # "default" | "linear" | "llama3"
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_positions: int = 8192
  rope_fraction: float = 1.0  # share of each head's width that rotates (GPT-NeoX/Pythia: 0.25)
  sliding_window: int | None = None
  query_scale: float | None = None  # attention logits q.k * query_scale; None: head_width ** -0.5
  # (`sliding_window` windows every layer.) Per-layer attention kinds, "full_attention" |
  # "sliding_attention" (Gemma 2/3); a pattern shorter than num_layers repeats (Gemma 2:
  # sliding, full). The sliding layers attend to the last `local_window` positions and use
  # `rope_local_base` (None: the global RoPE).
  layer_types: tuple[str, ...] | None = None
  local_window: int | None = None
  rope_local_base: float | None = None
  attn_logit_softcap: float | None = None  # Gemma 2: attention logits -> cap * tanh(logits / cap)
  final_logit_softcap: float | None = None  # Gemma 2: output logits -> cap * tanh(logits / cap)
  post_norms: bool = False  # Gemma 2/3: also normalise the attention and MLP outputs before the residual
  qk_norm: bool = False  # per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3)
  mlp_gated: bool = True  # SwiGLU/GeGLU (wi_0 gate, wi_1 up) vs. plain wi -> act -> wo
  activation: str = "silu"
  qkv_bias: bool = False
  out_bias: bool = False  # attention output projection
  mlp_bias: bool = False
  embed_scale: bool = False  # Gemma: embeddings times sqrt(d_model)
  embed_norm: bool = False  # BLOOM: LayerNorm right after the embedding
  parallel_residual: bool = False  # GPT-NeoX: x + attention(norm1(x)) + mlp(norm2(x))
  tie_embeddings: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32  # compute dtype (bf16 for training)
  param_dtype: Any = jnp.float32
  scan_layers: bool = False
  remat_policy: str = "none"  # "none" | "full" | "dots" | "dots_with_no_batch_dims"
  lora: lora_lib.LoraConfig | None = None  # adapters on the projections it selects
  attention: str = "materialised"  # one of layers.ATTENTION_IMPLEMENTATIONS
  # Mixture of experts (Mixtral): num_experts > 0 replaces every MLP by `num_experts`
  # gated MLPs of width mlp_dim and a router picking `experts_per_token` of them per token.
  num_experts: int = 0
  experts_per_token: int = 2
  moe_dispatch: str = "dense"  # one of MOE_DISPATCHES (see `MoeMlp`)
  # Weight of the router's load-balancing loss in the training loss (0: reported only).
  router_aux_loss_coef: float = 0.0
  # Training only (with a dropout rng), as in transformers: the MoE input is multiplied by
  # uniform noise in [1 - j, 1 + j] before the router and the experts see it.
  router_jitter_noise: float = 0.0

  def __post_init__(self):
    if self.attention not in layers.ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"DecoderConfig.attention={self.attention!r}; expected one of "
                       f"{layers.ATTENTION_IMPLEMENTATIONS}")
    if not 0.0 < self.rope_fraction <= 1.0:
      raise ValueError(f"DecoderConfig.rope_fraction={self.rope_fraction}; expected 0 < rope_fraction <= 1")
    if self.num_experts:
      if self.moe_dispatch not in MOE_DISPATCHES:
        raise ValueError(f"DecoderConfig.moe_dispatch={self.moe_dispatch!r}; expected one of "
                         f"{MOE_DISPATCHES}")
      if not 0 < self.experts_per_token <= self.num_experts:
        raise ValueError(f"DecoderConfig.experts_per_token={self.experts_per_token} must be in "
                         f"1..num_experts={self.num_experts}")
      if not self.mlp_gated or self.mlp_bias:
        raise ValueError("DecoderConfig.num_experts > 0 needs mlp_gated=True and mlp_bias=False "
                         "(Mixtral's experts); other expert MLPs are not implemented")
    # gin binds dtypes as strings ('bfloat16')
    object.__setattr__(self, "dtype", jnp.dtype(self.dtype))
    object.__setattr__(self, "param_dtype", jnp.dtype(self.param_dtype))
    if self.layer_types is not None:
      object.__setattr__(self, "layer_types", tuple(self.layer_types))  # gin binds lists
      unknown = set(self.layer_types) - set(LAYER_TYPES)
      if unknown or not self.layer_types:
        raise ValueError(f"DecoderConfig.layer_types={self.layer_types!r}; expected entries of {LAYER_TYPES}")
      if self.sliding_window is not None:
        raise ValueError("DecoderConfig.sliding_window windows every layer; with layer_types "
                         "set local_window (the window of the 'sliding_attention' layers)")
      if "sliding_attention" in self.layer_types and self.local_window is None:
        raise ValueError("DecoderConfig.layer_types has 'sliding_attention' layers but local_window is None")
    elif self.local_window is not None or self.rope_local_base is not None:
      raise ValueError("DecoderConfig.local_window and rope_local_base apply to the 'sliding_attention' "
                       "layers of layer_types, which is None")

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def head_width(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @property
  def local_layers(self) -> np.ndarray | None:
    """[num_layers] bool: True for the 'sliding_attention' layers; None without layer_types."""
    if self.layer_types is None:
      return None
    pattern = self.layer_types
    return np.asarray([pattern[i % len(pattern)] == "sliding_attention" for i in range(self.num_layers)])

  def attention_needs(self) -> dict[str, str]:
    """What the attention of this architecture asks a kernel to express (feature -> why);
    see `attention_kernels.attention_impl_for`."""
    needs = {"causal": "decoder", "segment_ids": "packing and padding"}
    if self.kv_heads < self.num_heads:
      needs["grouped_query"] = f"{self.kv_heads} key/value heads for {self.num_heads} query heads"
    if self.sliding_window is not None:
      needs["sliding_window"] = f"sliding_window={self.sliding_window}"
    if self.local_window is not None:
      needs["sliding_window"] = f"local_window={self.local_window} on the sliding layers"
    if self.attn_logit_softcap is not None:
      needs["logit_softcap"] = f"attn_logit_softcap={self.attn_logit_softcap}"
    if self.position == "alibi":
      needs["additive_bias"] = "ALiBi"
    if self.dropout_rate > 0:
      needs["dropout"] = f"dropout_rate={self.dropout_rate}"
    if jnp.dtype(self.dtype) == jnp.float32:
      needs["float32"] = "dtype float32"
    return needs


_init = nn.initializers.normal(stddev=0.02)


class Dense(nn.Module):
  """Projection contracting the last `in_dims` axes; the kernel carries logical axis names."""

  features: tuple[int, ...]
  axes: tuple[str, ...]  # names of the kernel: contracted input axes, then output axes
  in_dims: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  lora: lora_lib.LoraConfig | None = None
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(_init, self.axes),
        tuple(x.shape[-self.in_dims:]) + tuple(self.features), self.param_dtype)
    y = layers.project(x.astype(self.dtype), kernel.astype(self.dtype), self.in_dims)
    if self.lora is not None and self.lora.applies_to(self.path):
      y = y + lora_lib.LoraAdapter(self.lora, self.features, self.axes, self.in_dims, self.dtype,
                                   self.param_dtype, self.deterministic, name="lora")(x)
    if self.use_bias:
      bias = self.param(
          "bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[self.in_dims:]),
          tuple(self.features), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def _norm(cfg: DecoderConfig, name: str) -> nn.Module:
  if cfg.norm == "rms":
    return layers.RMSNorm(epsilon=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                          scale_offset=cfg.norm_scale_offset, name=name)
  if cfg.norm == "layer":
    return nn.LayerNorm(
        epsilon=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=name,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))
  raise ValueError(f"DecoderConfig.norm must be 'rms' or 'layer', got {cfg.norm!r}")


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


class Mlp(nn.Module):
  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    act = _ACTIVATIONS[cfg.activation]
    dense = functools.partial(Dense, use_bias=cfg.mlp_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                              lora=cfg.lora, deterministic=self.deterministic)
    if cfg.mlp_gated:
      h_BxTxF = (act(dense((cfg.mlp_dim,), ("embed", "mlp"), name="wi_0")(x_BxTxD))
                 * dense((cfg.mlp_dim,), ("embed", "mlp"), name="wi_1")(x_BxTxD))
    else:
      h_BxTxF = act(dense((cfg.mlp_dim,), ("embed", "mlp"), name="wi")(x_BxTxD))
    h_BxTxF = nn.with_logical_constraint(h_BxTxF, ("batch", "length", "mlp"))
    return dense((cfg.d_model,), ("mlp", "embed"), name="wo")(h_BxTxF)


# How `MoeMlp` computes its experts; both are exact (no capacity, no token dropped):
# "dense": every expert runs over every token and the outputs are summed with the routing
#   weights (zero for the experts not chosen). E / k times the expert FLOPs and an
#   [B, T, E, F] activation, but plain einsums: the `expert` axis shards over a mesh axis
#   (expert parallelism, one all-reduce of the [B, T, D] output per layer).
# "grouped": the B*T*k (token, expert) pairs sorted by expert and run as grouped matmuls
#   (`jax.lax.ragged_dot`). Only the chosen experts' FLOPs where the backend lowers the
#   ragged dot to a grouped kernel (unmeasured here: no accelerator); XLA:CPU expands it
#   densely over the groups (its cost analysis: 2x the "dense" FLOPs). XLA's partitioner
#   does not split a ragged dot along its groups, so it is for unsharded experts.
MOE_DISPATCHES = ("dense", "grouped")


def route(logits_NxE: Array, k: int) -> tuple[Array, Array]:
  """Mixtral's router (transformers' MixtralTopKRouter): softmax over all experts in float32,
  the top k, their weights renormalised to sum to one. -> (weights [N, k] f32, experts [N, k])."""
  probs_NxE = jax.nn.softmax(logits_NxE.astype(jnp.float32), axis=-1)
  top_NxK, experts_NxK = jax.lax.top_k(probs_NxE, k)
  return top_NxK / jnp.sum(top_NxK, axis=-1, keepdims=True), experts_NxK


def load_balancing_loss(router_logits: list[Array], mask_BxT: Array, k: int) -> Array:
  """transformers' `load_balancing_loss_func` (Switch Transformer eqs. 4-6) with its attention mask.

  `router_logits`: per-layer [B, T, E] arrays, or [layers, B, T, E] stacks (nn.scan); the
  order of layers does not matter. As transformers does, the counts of top-k assignments and
  the router probabilities are pooled over all layers and non-padding tokens first, then
  multiplied: E * sum_e (fraction of assignments to e) * (mean probability of e).
  """
  b, t = mask_BxT.shape
  e = router_logits[0].shape[-1]
  logits_LxBxTxE = jnp.concatenate([x.reshape(-1, b, t, e) for x in router_logits])
  probs_LxBxTxE = jax.nn.softmax(logits_LxBxTxE.astype(jnp.float32), axis=-1)
  _, experts_LxBxTxK = jax.lax.top_k(probs_LxBxTxE, k)
  chosen_LxBxTxE = jnp.sum(jax.nn.one_hot(experts_LxBxTxK, e, dtype=jnp.float32), axis=-2)
  m_BxTx1 = mask_BxT.astype(jnp.float32)[..., None]
  rows = logits_LxBxTxE.shape[0] * jnp.maximum(jnp.sum(m_BxTx1), 1.0)
  tokens_per_expert_E = jnp.sum(chosen_LxBxTxE * m_BxTx1, axis=(0, 1, 2)) / rows
  prob_per_expert_E = jnp.sum(probs_LxBxTxE * m_BxTx1, axis=(0, 1, 2)) / rows
  return e * jnp.sum(tokens_per_expert_E * prob_per_expert_E)


class MoeMlp(nn.Module):
  """Mixtral's sparse MLP: a router [D, E] and E SwiGLU experts with kernels stacked on `expert`.

  Parameters: router/kernel [D, E], wi_0 (gate) / wi_1 (up) [E, D, F], wo [E, F, D]. The
  router logits are sown as intermediates `router_logits` for the load-balancing loss.
  """

  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    e, d, f = cfg.num_experts, cfg.d_model, cfg.mlp_dim
    if cfg.lora is not None and cfg.lora.applies_to(self.path + ("wi_0",)):
      raise ValueError(f"LoRA targets {cfg.lora.targets!r} select mixture-of-experts MLPs; "
                       "adapters on experts are not implemented (target attention/ only)")
    if cfg.router_jitter_noise and not self.deterministic:
      j = cfg.router_jitter_noise
      x_BxTxD = x_BxTxD * jax.random.uniform(self.make_rng("dropout"), x_BxTxD.shape, x_BxTxD.dtype,
                                             1.0 - j, 1.0 + j)
    logits_BxTxE = Dense((e,), ("embed", None), dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                         name="router")(x_BxTxD)
    if not self.is_initializing():
      self.sow("intermediates", "router_logits", logits_BxTxE)
    weights_BxTxK, experts_BxTxK = route(logits_BxTxE, cfg.experts_per_token)
    wi_0_ExDxF, wi_1_ExDxF, wo_ExFxD = (
        self.param(name, nn.with_logical_partitioning(_init, axes), shape, cfg.param_dtype).astype(cfg.dtype)
        for name, axes, shape in (("wi_0", ("expert", "embed", "mlp"), (e, d, f)),
                                  ("wi_1", ("expert", "embed", "mlp"), (e, d, f)),
                                  ("wo", ("expert", "mlp", "embed"), (e, f, d))))
    act = _ACTIVATIONS[cfg.activation]
    x_BxTxD = x_BxTxD.astype(cfg.dtype)
    if cfg.moe_dispatch == "dense":
      # routing weights of all E experts, zero where not chosen
      weights_BxTxE = jnp.sum(jax.nn.one_hot(experts_BxTxK, e, dtype=jnp.float32)
                              * weights_BxTxK[..., None], axis=-2)
      h_BxTxExF = (act(jnp.einsum("btd,edf->btef", x_BxTxD, wi_0_ExDxF))
                   * jnp.einsum("btd,edf->btef", x_BxTxD, wi_1_ExDxF))
      h_BxTxExF = nn.with_logical_constraint(h_BxTxExF, ("batch", "length", "expert", "mlp"))
      # the weights scale each expert's hidden state before wo, so one contraction over
      # (expert, mlp) sums the experts (down_proj is linear: the same as weighting outputs)
      h_BxTxExF = (h_BxTxExF.astype(jnp.float32) * weights_BxTxE[..., None]).astype(cfg.dtype)
      return jnp.einsum("btef,efd->btd", h_BxTxExF, wo_ExFxD)
    b, t, k = experts_BxTxK.shape
    experts_P = experts_BxTxK.reshape(-1)  # P = B*T*k (token, expert) pairs
    order_P = jnp.argsort(experts_P, stable=True)
    token_P = order_P // k
    sizes_E = jnp.bincount(experts_P, length=e).astype(jnp.int32)
    x_PxD = x_BxTxD.reshape(b * t, d)[token_P]
    h_PxF = (act(jax.lax.ragged_dot(x_PxD, wi_0_ExDxF, sizes_E))
             * jax.lax.ragged_dot(x_PxD, wi_1_ExDxF, sizes_E))
    y_PxD = jax.lax.ragged_dot(h_PxF, wo_ExFxD, sizes_E)
    y_PxD = y_PxD.astype(jnp.float32) * weights_BxTxK.reshape(-1)[order_P][:, None]
    y_NxD = jnp.zeros((b * t, d), jnp.float32).at[token_P].add(y_PxD)
    return y_NxD.reshape(b, t, d).astype(cfg.dtype)


class DecoderLayer(nn.Module):
  """Pre-norm block (with `post_norms`, also normed after). `aux` = (additive mask bias, positions,
  key positions, cache index, the sliding layers' mask bias or None, the mask as a
  `KernelMask` or None) is shared by all layers;
  `local` (a bool scalar, scanned per layer) picks the sliding layers' mask and RoPE."""

  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD, aux, cache, local=None):
    cfg = self.config
    mask, positions, key_positions, cache_index, local_mask, kernel_mask = aux
    if local_mask is not None:
      mask = jnp.where(local, local_mask, mask)
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(1,))
    y = _norm(cfg, "pre_attention_norm")(x_BxTxD)
    y, new_cache = Attention(cfg, self.deterministic, name="attention")(
        y, mask, positions, key_positions, cache, cache_index, local,
        None if cache is not None else kernel_mask)
    if cfg.post_norms:
      y = _norm(cfg, "post_attention_norm")(y)
    mlp_cls = MoeMlp if cfg.num_experts else Mlp
    if cfg.parallel_residual:  # the MLP reads the layer input, not the attention's output
      mlp_BxTxD = mlp_cls(cfg, self.deterministic, name="mlp")(_norm(cfg, "pre_mlp_norm")(x_BxTxD))
      x_BxTxD = (x_BxTxD + dropout(y, deterministic=self.deterministic)
                 + dropout(mlp_BxTxD, deterministic=self.deterministic))
    else:
      x_BxTxD = x_BxTxD + dropout(y, deterministic=self.deterministic)
      y = mlp_cls(cfg, self.deterministic, name="mlp")(_norm(cfg, "pre_mlp_norm")(x_BxTxD))
      if cfg.post_norms:
        y = _norm(cfg, "post_mlp_norm")(y)
      x_BxTxD = x_BxTxD + dropout(y, deterministic=self.deterministic)
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ("batch", "length", "embed"))
    return x_BxTxD, new_cache


class Decoder(nn.Module):
  """Token ids -> final hidden states, the output kernel [D, V] and the updated KV cache.

  `cache` is a (keys, values) pair of [layers, B, S, K, H] arrays or None; with a cache
  the T new steps are written at slots cache_index_B .. + T - 1 and attend over all S
  slots as `mask_Bx1xTxS` allows. `kernel_mask` is the same mask as ids
  (`attention_kernels.KernelMask`), which the TPU kernel takes instead of the bias.
  """

  config: DecoderConfig

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT, mask_Bx1xTxS, key_positions_BxS,
               cache=None, cache_index_B=None, deterministic: bool = True, kernel_mask=None):
    cfg = self.config
    embedder = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
        name="token_embedder")
    x_BxTxD = embedder(tokens_BxT)
    if cfg.embed_scale:
      x_BxTxD = x_BxTxD * jnp.asarray(cfg.d_model ** 0.5, cfg.dtype)
    if cfg.position == "learned":
      x_BxTxD = x_BxTxD + nn.Embed(
          cfg.max_positions, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          embedding_init=nn.with_logical_partitioning(_init, (None, "embed")),
          name="pos_embedder")(positions_BxT)
    if cfg.embed_norm:
      x_BxTxD = _norm(cfg, "embed_norm")(x_BxTxD)
    x_BxTxD = nn.Dropout(cfg.dropout_rate, broadcast_dims=(1,))(x_BxTxD, deterministic=deterministic)
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ("batch", "length", "embed"))

    layer_cls = DecoderLayer
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(layer_cls, policy=layers.REMAT_POLICIES[cfg.remat_policy],
                           prevent_cse=not cfg.scan_layers)
    # The mask folded into an additive bias once for all layers; the sliding layers of
    # layer_types also see only keys less than local_window positions back.
    local_mask = None
    if cfg.local_window is not None:
      near_BxTxS = positions_BxT[:, :, None] - key_positions_BxS[:, None, :] < cfg.local_window
      local_mask = layers.mask_bias(mask_Bx1xTxS & near_BxTxS[:, None])
    aux = (layers.mask_bias(mask_Bx1xTxS), positions_BxT, key_positions_BxS, cache_index_B, local_mask,
           kernel_mask)
    local_L = None if cfg.local_layers is None else jnp.asarray(cfg.local_layers)
    if cfg.scan_layers:
      stack = nn.scan(
          layer_cls, variable_axes={"params": 0, "intermediates": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, 0, 0), length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x_BxTxD, cache = stack(cfg, deterministic, name="layers")(x_BxTxD, aux, cache, local_L)
    else:
      new_layers = []
      for i in range(cfg.num_layers):
        layer_cache = None if cache is None else (cache[0][i], cache[1][i])
        local = None if local_L is None else local_L[i]
        x_BxTxD, layer_cache = layer_cls(cfg, deterministic, name=f"layers_{i}")(
            x_BxTxD, aux, layer_cache, local)
        new_layers.append(layer_cache)
      if cache is not None:
        cache = tuple(jnp.stack([c[j] for c in new_layers]) for j in range(2))
    x_BxTxD = _norm(cfg, "final_norm")(x_BxTxD)
    if cfg.tie_embeddings:
      kernel_DxV = embedder.embedding.T
    else:
      kernel_DxV = self.param(
          "logits_dense", nn.with_logical_partitioning(_init, ("embed", "vocab")),
          (cfg.d_model, cfg.vocab_size), cfg.param_dtype)
    return x_BxTxD, kernel_DxV.astype(cfg.dtype), cache


START_TOKENS = ("zero", "bos", "none")


class DecoderOnlyModel(base.BaseModel):
  """T5X `DecoderOnlyModel` contract for `Decoder` over SeqIO's DecoderFeatureConverter.

  Plain LM batches have `decoder_input_tokens/target_tokens/loss_weights`; prefix-LM
  batches add `decoder_causal_attention` (1 on the prompt and one position more).
  Causal HF checkpoints were trained with a causal prefix, so the prefix attends
  bidirectionally only with `inputs_bidirectional_attention=True`. Packed batches add
  `decoder_segment_ids` and `decoder_positions`.

  `start_token` says what the converter's start token (id 0 before each sequence) is:
  `zero` keeps it (T5X); `bos` replaces it by the vocabulary's BOS, else EOS (for
  tokenizers that start every text with BOS: Llama, Mistral, Gemma); `none` hides it
  from attention and shifts positions by one, so the model sees the text's first token
  first (BLOOM, Qwen2, GPT-2). Model gins set the one their tokenizer implies, and
  evaluation derives the same from the tokenizer (`linguamix.evals.requests`).
  """

  feature_converter_cls = feature_converters.DecoderFeatureConverter

  def __init__(self, config: DecoderConfig, vocabulary: seqio.Vocabulary, *,
               z_loss: float = 0.0, inputs_bidirectional_attention: bool = False,
               logits_chunk_length: int | None = None, module: nn.Module | None = None,
               start_token: str = "zero", decode_method: str = "greedy", beam_size: int = 4,
               alpha: float = 0.6, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               eos_id: int | None = None):
    if start_token not in START_TOKENS:
      raise ValueError(f"DecoderOnlyModel.start_token={start_token!r}; expected one of {START_TOKENS}")
    if vocabulary is not None and vocabulary.vocab_size > config.vocab_size:
      moved = getattr(vocabulary, "moved_zero_id", None)
      raise ValueError(
          f"vocabulary has {vocabulary.vocab_size} ids but the model's embedding has "
          f"vocab_size={config.vocab_size}: the tokenizer does not match the checkpoint" + (
              f" (the tokenizer's id 0 is a token and moved to id {moved}: a checkpoint without a "
              f"row for it takes vocab_size={moved + 1} and mask_row_zero=True, as "
              "`linguamix convert import-hf` writes it)" if moved is not None else ""))
    self.config = config
    self._vocabulary = vocabulary
    self.z_loss = z_loss
    self.inputs_bidirectional_attention = inputs_bidirectional_attention
    self.logits_chunk_length = logits_chunk_length
    self.start_token = start_token
    self.module = module if module is not None else Decoder(config)
    self.decode_defaults = decoding.decode_options(
        decode_method=decode_method, beam_size=beam_size, alpha=alpha, temperature=temperature,
        top_k=top_k, top_p=top_p, eos_id=eos_id)

  def tied_output_params(self) -> int:
    return self.config.vocab_size * self.config.d_model if self.config.tie_embeddings else 0

  @property
  def vocabulary(self) -> seqio.Vocabulary:
    return self._vocabulary

  def _variables(self, params):
    return params if "params" in params else {"params": params}

  def init_variables(self, rng: Array, input_shapes: Mapping[str, tuple[int, ...]]):
    shape = tuple(input_shapes["decoder_input_tokens"])
    tokens = jnp.ones(shape, jnp.int32)
    mask = layers.attention_mask(tokens, tokens, causal=True)
    positions = jnp.broadcast_to(jnp.arange(shape[1]), shape)
    return self.module.init({"params": rng, "dropout": rng}, tokens, positions, mask, positions)

  def _prefix_token_id(self) -> int:
    try:
      bos = self.vocabulary.bos_id
    except (AttributeError, NotImplementedError):  # seqio's base Vocabulary raises
      bos = None
    return bos if bos is not None and bos >= 0 else self.vocabulary.eos_id

  def _apply_start_token(self, tokens_BxL, positions_BxL, mask_Bx1xTxS):
    """Tokens, positions and mask after the `start_token` policy (positions == 0 mark starts)."""
    start_BxL = positions_BxL == 0
    if self.start_token == "bos":
      tokens_BxL = jnp.where(start_BxL, self._prefix_token_id(), tokens_BxL)
    elif self.start_token == "none":
      # a start is visible only to its own query, so no other position depends on it
      hidden_Bx1xTxS = start_BxL[:, None, None, :] & ~start_BxL[:, None, :, None]
      mask_Bx1xTxS = mask_Bx1xTxS & ~hidden_Bx1xTxS
      positions_BxL = jnp.maximum(positions_BxL - 1, 0)
    return tokens_BxL, positions_BxL, mask_Bx1xTxS

  def attention_flops(self, lengths):
    c, length = self.config, lengths["decoder_target_tokens"]
    return 12.0 * c.num_layers * c.num_heads * c.head_width * length * length

  def attention_needs(self) -> dict[str, str]:
    """The architecture's attention needs (`DecoderConfig.attention_needs`) and this model's."""
    needs = self.config.attention_needs()
    if self.inputs_bidirectional_attention:
      needs["prefix_lm"] = "inputs_bidirectional_attention=True"
    if self.start_token == "none":
      needs["hidden_start"] = "start_token='none'"
    return needs

  def trainable_mask(self, params):
    """With LoRA, only the adapters train (the trainer's optimizer hook); else None: all train."""
    return lora_lib.trainable_mask(params) if self.config.lora is not None else None

  def with_start_token(self, start_token: str) -> "DecoderOnlyModel":
    if start_token not in START_TOKENS:
      raise ValueError(f"DecoderOnlyModel.start_token={start_token!r}; expected one of {START_TOKENS}")
    model = copy.copy(self)
    model.start_token = start_token
    return model

  def _forward(self, params, batch, dropout_rng=None, with_router: bool = False):
    """Final hidden states [B, L, D] and the output kernel for a feature-converter batch;
    `with_router` adds the router's load-balancing loss (mixture of experts)."""
    tokens_BxL = batch["decoder_input_tokens"]
    b, length = tokens_BxL.shape
    segment_ids_BxL = batch.get("decoder_segment_ids")
    if segment_ids_BxL is None:
      segment_ids_BxL = (batch["decoder_target_tokens"] > 0).astype(jnp.int32)
    positions_BxL = batch.get("decoder_positions")
    if positions_BxL is None:
      positions_BxL = jnp.broadcast_to(jnp.arange(length), (b, length))
    prefix_BxL = batch.get("decoder_causal_attention") if self.inputs_bidirectional_attention else None
    branch_BxL = batch.get("decoder_branch_ids")
    window = self.config.sliding_window
    mask = layers.attention_mask(
        segment_ids_BxL, segment_ids_BxL, causal=True,
        sliding_window=window if branch_BxL is None else None, bidirectional_prefix_BxT=prefix_BxL)
    if branch_BxL is not None:
      # A shared prefix (branch 0) then branches that each continue it: a branch attends
      # to the prefix and to itself, never to another branch; its positions continue the
      # prefix's, so the window is measured in positions, not row indices.
      q_Bx1xTx1, k_Bx1x1xS = branch_BxL[:, None, :, None], branch_BxL[:, None, None, :]
      mask = mask & ((k_Bx1x1xS == 0) | (k_Bx1x1xS == q_Bx1xTx1))
      if window is not None:
        mask = mask & (positions_BxL[:, None, :, None] - positions_BxL[:, None, None, :] < window)
    start_BxL = positions_BxL == 0
    tokens_BxL, positions_BxL, mask = self._apply_start_token(tokens_BxL, positions_BxL, mask)
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
    kwargs = {}
    if attention_kernels.attention_impl_for(self, "tpu")[0] == "splash":
      kwargs["kernel_mask"] = attention_kernels.KernelMask.for_decoder(
          segment_ids_BxL, prefix_BxL=prefix_BxL,
          hidden_start_BxL=start_BxL if self.start_token == "none" else None,
          window=self.config.sliding_window, local_window=self.config.local_window)
    if not with_router:
      hidden_BxLxD, kernel_DxV, _ = self.module.apply(
          self._variables(params), tokens_BxL, positions_BxL, mask, positions_BxL,
          deterministic=dropout_rng is None, rngs=rngs, **kwargs)
      return hidden_BxLxD, kernel_DxV
    (hidden_BxLxD, kernel_DxV, _), state = self.module.apply(
        self._variables(params), tokens_BxL, positions_BxL, mask, positions_BxL,
        deterministic=dropout_rng is None, rngs=rngs, mutable=["intermediates"], **kwargs)
    # the tokens transformers' load-balancing loss counts: not padding, and not the
    # start slot that `start_token="none"` hides (that text has no such token)
    real_BxL = segment_ids_BxL > 0
    if self.start_token == "none":
      real_BxL &= ~start_BxL
    router_logits = jax.tree.leaves(state["intermediates"])
    return hidden_BxLxD, kernel_DxV, load_balancing_loss(
        router_logits, real_BxL, self.config.experts_per_token)

  def logits(self, params, batch) -> Array:
    """Full fp32 logits [B, L, V] (tests, small vocabularies; training uses chunked stats)."""
    hidden_BxLxD, kernel_DxV = self._forward(params, batch)
    logits_BxLxV = jnp.einsum("bld,dv->blv", hidden_BxLxD, kernel_DxV, preferred_element_type=jnp.float32)
    return layers.mask_row_zero(layers.softcap(logits_BxLxV, self.config.final_logit_softcap),
                                self.config.mask_row_zero)

  def _stats(self, params, batch, dropout_rng=None):
    hidden_BxLxD, kernel_DxV = self._forward(params, batch, dropout_rng)
    return layers.output_logit_stats(hidden_BxLxD, kernel_DxV, batch["decoder_target_tokens"],
                                     chunk_length=self.logits_chunk_length,
                                     logit_softcap=self.config.final_logit_softcap,
                                     masked_zero=self.config.mask_row_zero)

  def router_aux_loss(self, params, batch) -> Array:
    """transformers' MixtralForCausalLM `aux_loss` for this batch (mixture of experts only)."""
    return self._forward(params, batch, with_router=True)[2]

  def loss_fn(self, params, batch, dropout_rng):
    if not self.config.num_experts:
      lse_BxL, target_logit_BxL, correct_BxL = self._stats(params, batch, dropout_rng)
      return losses.cross_entropy(lse_BxL, target_logit_BxL, correct_BxL, losses.loss_weights(batch),
                                  z_loss=self.z_loss)
    hidden_BxLxD, kernel_DxV, aux = self._forward(params, batch, dropout_rng, with_router=True)
    lse_BxL, target_logit_BxL, correct_BxL = layers.output_logit_stats(
        hidden_BxLxD, kernel_DxV, batch["decoder_target_tokens"], chunk_length=self.logits_chunk_length,
        masked_zero=self.config.mask_row_zero)
    # the loss carries coef x aux (transformers' `loss += router_aux_loss_coef * aux_loss`);
    # router_aux_loss reports aux itself, comparable to transformers' `aux_loss`
    loss, metrics = losses.cross_entropy(
        lse_BxL, target_logit_BxL, correct_BxL, losses.loss_weights(batch), z_loss=self.z_loss,
        extra_losses={"weighted_router_aux_loss": self.config.router_aux_loss_coef * aux})
    return loss, {**metrics, "router_aux_loss": aux}

  def score_batch(self, params, batch) -> Array:
    lse_BxL, target_logit_BxL, _ = self._stats(params, batch)
    return losses.sequence_log_likelihood(lse_BxL, target_logit_BxL, losses.loss_weights(batch))

  @property
  def shares_prefixes(self) -> bool:
    """Whether requests may share a scored prefix (`decoder_branch_ids`): not when the
    prefix attends bidirectionally, as its states then depend on each request's inputs."""
    return not self.inputs_bidirectional_attention

  def token_log_likelihood(self, params, batch) -> Array:
    """log p(target token) per position [B, L], weighted by loss weights, float32. With
    `decoder_branch_ids` (and `decoder_positions`), a row holds a prefix (branch 0) and
    branches 1, 2, ... that each continue it: several requests scored in one row."""
    lse_BxL, target_logit_BxL, _ = self._stats(params, batch)
    return (target_logit_BxL - lse_BxL) * losses.loss_weights(batch)

  def predict_batch_with_aux(self, params, batch, rng=None, *, return_all_beams: bool = False,
                             **decode_kwargs):
    """Decodes the targets after each prompt with a KV cache: [B, L] ids (0 after EOS) and
    {'scores': [B]} (their log-likelihood; beam search: length-normalised).

    The prompt is the `decoder_causal_attention` part of `decoder_input_tokens` (only
    position 0 for a plain LM); it prefills the cache in one pass, then `decoding.decode`
    steps each row from its own prompt length. decode_kwargs override the constructor's
    (`decoding.decode_options`): decode_method ('greedy', 'sample', 'beam'), beam_size,
    alpha, temperature, top_k, top_p, eos_id (default the vocabulary's). A row stops at
    EOS or when the sequence length is reached; `return_all_beams=True` gives beam
    search's [B, K, L] tokens and [B, K] scores.
    """
    opts = decoding.resolve_options(self.decode_defaults, decode_kwargs)
    k = decoding.num_beams(opts)
    cfg = self.config
    tokens_BxL = batch["decoder_input_tokens"]
    b, length = tokens_BxL.shape
    causal = batch.get("decoder_causal_attention")
    prompt_len_B = (jnp.ones((b,), jnp.int32) if causal is None
                    else jnp.maximum(jnp.sum(causal, axis=1).astype(jnp.int32), 1))
    arange_L = jnp.arange(length)
    in_prompt_BxL = arange_L[None, :] < prompt_len_B[:, None]
    prompt_BxL = jnp.where(in_prompt_BxL, tokens_BxL, 0)
    positions_BxL = jnp.broadcast_to(arange_L, (b, length))
    prefix = causal if (causal is not None and self.inputs_bidirectional_attention) else None
    seg_BxL = in_prompt_BxL.astype(jnp.int32)
    mask = layers.attention_mask(seg_BxL, seg_BxL, causal=True, sliding_window=cfg.sliding_window,
                                 bidirectional_prefix_BxT=prefix)
    prompt_BxL, positions_BxL, mask = self._apply_start_token(prompt_BxL, positions_BxL, mask)
    cache_shape = (cfg.num_layers, b, length, cfg.kv_heads, cfg.head_width)
    cache = (jnp.zeros(cache_shape, cfg.dtype), jnp.zeros(cache_shape, cfg.dtype))
    variables = self._variables(params)
    hidden_BxLxD, kernel_DxV, cache = self.module.apply(
        variables, prompt_BxL, positions_BxL, mask, positions_BxL, cache, jnp.zeros((b,), jnp.int32))
    last_BxD = jnp.take_along_axis(hidden_BxLxD, (prompt_len_B - 1)[:, None, None], axis=1)[:, 0]
    first_logits_BxV = self._output_logits(last_BxD, kernel_DxV)
    # beams: every row's cache and per-row state k times (rows b*k .. b*k + k - 1)
    cache = decoding.repeat_beams(cache, k, axis=1)
    first_logits_BxV, prompt_len_kB, positions_kBxL = decoding.repeat_beams(
        (first_logits_BxV, prompt_len_B, positions_BxL), k)
    eos_id = self.vocabulary.eos_id if opts["eos_id"] is None else opts["eos_id"]
    # the first target sits at prompt position prompt_len - 1; the last at length - 1
    return decoding.decode(
        self._step_fn(variables, prompt_len_kB, positions_kBxL), cache, opts, batch_size=b,
        max_length=length, eos_id=eos_id, rng=rng, cache_batch_axis=1, first_logits_BxV=first_logits_BxV,
        max_steps_B=length - prompt_len_B + 1, return_all_beams=return_all_beams)

  def _step_fn(self, variables, prompt_len_B, key_positions_BxL):
    """`decoding`'s step function over the prefilled cache; rows keep their own offsets.

    Output step s feeds the token emitted at step s - 1, which sits at sequence position
    prompt_len_B + s - 1 (clipped: rows that are done only rewrite their last slot).
    """
    cfg = self.config
    length = key_positions_BxL.shape[1]
    arange_L = jnp.arange(length)

    def step(tokens_Bx1, cache, step_index):
      index_B = jnp.minimum(prompt_len_B + step_index - 1, length - 1)
      order_BxS = arange_L[None, :] <= index_B[:, None]
      if cfg.sliding_window is not None:
        order_BxS &= index_B[:, None] - arange_L[None, :] < cfg.sliding_window
      if self.start_token == "none":
        order_BxS &= arange_L[None, :] > 0
      step_positions_Bx1 = index_B[:, None] - (self.start_token == "none")
      hidden_Bx1xD, kernel_DxV, cache = self.module.apply(
          variables, tokens_Bx1, step_positions_Bx1, order_BxS[:, None, None, :], key_positions_BxL,
          cache, index_B)
      return self._output_logits(hidden_Bx1xD[:, 0], kernel_DxV), cache

    return step

  def _output_logits(self, hidden_BxD, kernel_DxV):
    logits_BxV = jnp.einsum("bd,dv->bv", hidden_BxD, kernel_DxV, preferred_element_type=jnp.float32)
    return layers.mask_row_zero(layers.softcap(logits_BxV, self.config.final_logit_softcap),
                                self.config.mask_row_zero)
