"""`DecoderConfig`: the shape and switches of the decoder, and the family presets over it.

Fields fall in three groups: the size of a checkpoint (`SHAPE_FIELDS`), how a run computes
(`RUN_FIELDS`: dtypes, scan, remat, attention kernel, LoRA, dropout, MoE dispatch) and the
architecture: the switches a family sets. Each family's switches are one entry of
`decoder_families.FAMILIES`, reachable as a preset: `DecoderConfig.gemma2(d_model=2304, ...)`
(the entry's traits, then the given fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from linguamix.models import decoder_families, layers
from linguamix.models import lora as lora_lib

LAYER_TYPES = ("full_attention", "sliding_attention")
# How `decoder_mlp.MoeMlp` computes its experts (see there).
MOE_DISPATCHES = ("dense", "grouped")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Shape and switches of a decoder; defaults are Llama 2's. `DecoderConfig.<family>(...)`
  presets set a family's switches (`decoder_families.FAMILIES`)."""

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

  @classmethod
  def preset(cls, family: str, **fields) -> "DecoderConfig":
    """The config of `family` (a key of `decoder_families.FAMILIES`): its traits, then `fields`."""
    if family not in decoder_families.FAMILIES:
      raise ValueError(f"unknown decoder family {family!r}; expected one of "
                       f"{sorted(decoder_families.FAMILIES)}")
    return cls(**{**decoder_families.FAMILIES[family].traits, **fields})

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



# The size of a checkpoint: what differs between the sizes of one family.
SHAPE_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "head_dim", "mlp_dim",
                "max_positions")
# How a run computes and what it trains; no family sets them. `mask_row_zero` follows the
# tokenizer and the converted checkpoint (`linguamix convert import-hf` sets it).
RUN_FIELDS = ("mask_row_zero", "dropout_rate", "dtype", "param_dtype", "scan_layers", "remat_policy", "lora",
              "attention", "moe_dispatch", "router_aux_loss_coef", "router_jitter_noise")


def _preset_method(family: decoder_families.Family) -> classmethod:
  def make(cls, **fields) -> DecoderConfig:
    return cls.preset(family.name, **fields)
  make.__name__ = make.__qualname__ = family.name
  traits = ", ".join(f"{k}={v!r}" for k, v in family.traits.items()) or "DecoderConfig's defaults"
  make.__doc__ = (f"{family.title} (model_type {family.hf_model_type!r}): {family.description}\n\n"
                  f"Traits: {traits}. Pass the size ({', '.join(SHAPE_FIELDS)}) and run fields; "
                  "a field given here overrides a trait.")
  return classmethod(make)


def _install_presets() -> None:
  """`DecoderConfig.<family>` for every family, once every trait is known to be an
  architecture field (not a size or run field) and no family name hides an attribute."""
  names = {f.name for f in dataclasses.fields(DecoderConfig)}
  architecture = names - set(SHAPE_FIELDS) - set(RUN_FIELDS)
  for family in decoder_families.FAMILIES.values():
    wrong = set(family.traits) - architecture
    if wrong:
      raise ValueError(f"decoder family {family.name!r}: {sorted(wrong)} are not architecture fields "
                       "of DecoderConfig")
    if family.name in names or hasattr(DecoderConfig, family.name):
      raise ValueError(f"decoder family {family.name!r} would hide DecoderConfig.{family.name}")
  for family in decoder_families.FAMILIES.values():
    setattr(DecoderConfig, family.name, _preset_method(family))


_install_presets()
