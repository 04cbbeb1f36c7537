"""The decoder families: what each one switches on, one entry per family.

An entry's `traits` are the `DecoderConfig` fields that make the family, over the
defaults (which are Llama 2's: pre-norm RMSNorm, RoPE at base 10000, SwiGLU MLP,
grouped-query attention without biases, untied output head). Sizes
(`decoder_config.SHAPE_FIELDS`: widths, layer and head counts, vocabulary) and run
settings (`decoder_config.RUN_FIELDS`: dtypes, scan, remat, attention kernel, LoRA) are
never traits; `help(DecoderConfig.<name>)` prints an entry with its traits in full. `DecoderConfig.<name>(**fields)` builds
a family's config: its traits, then `fields`, which may also override a trait where one
size differs (Qwen2 0.5B ties its embeddings, 7B does not).

Conversion to and from Hugging Face checkpoints is the record of
`linguamix.models.hf.families` with the family's `hf_model_type`; the published sizes
are the model gins (`linguamix/gin/models/`), which bind the same fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Family:
  name: str  # the preset: DecoderConfig.<name>(...)
  title: str
  hf_model_type: str  # config.json `model_type` of its checkpoints (the HF record's)
  description: str  # what the traits do, in words
  traits: Mapping[str, Any]


def _table(*families: Family) -> dict[str, Family]:
  table = {}
  for family in families:
    if family.name in table:
      raise ValueError(f"decoder family {family.name!r} is listed twice")
    table[family.name] = family
  return table


_GEMMA = dict(norm_scale_offset=1.0, embed_scale=True, activation="gelu_tanh", tie_embeddings=True)
_GPT_LAYER = dict(norm="layer", norm_eps=1e-5, mlp_gated=False, qkv_bias=True, out_bias=True, mlp_bias=True)

FAMILIES: dict[str, Family] = _table(
    Family("llama", "Llama 2", "llama",
           "DecoderConfig's defaults with RMSNorm epsilon 1e-5.",
           dict(norm_eps=1e-5)),
    Family("llama3", "Llama 3", "llama",
           "Llama 2 with RoPE base 500000 (and a 128k vocabulary whose id 0 is a real token).",
           dict(norm_eps=1e-5, rope_base=500000.0)),
    Family("llama3_1", "Llama 3.1", "llama",
           "Llama 3 with Llama 3's RoPE scaling: low frequencies divided by 8, a smooth band "
           "between, over an original context of 8192.",
           dict(norm_eps=1e-5, rope_base=500000.0, rope_type="llama3", rope_factor=8.0,
                rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_original_max_positions=8192)),
    Family("mistral", "Mistral", "mistral",
           "Llama with every layer attending to the last 4096 positions only.",
           dict(norm_eps=1e-5, sliding_window=4096)),
    Family("mixtral", "Mixtral", "mixtral",
           "Mistral's attention without the window, RoPE base 1e6, and every MLP replaced by a "
           "router picking 2 of 8 SwiGLU experts per token.",
           dict(norm_eps=1e-5, rope_base=1_000_000.0, num_experts=8, experts_per_token=2)),
    Family("qwen2", "Qwen2", "qwen2",
           "Llama with biases on the query, key and value projections and RoPE base 1e6 "
           "(the small sizes tie their embeddings).",
           dict(rope_base=1_000_000.0, qkv_bias=True)),
    Family("qwen3", "Qwen3", "qwen3",
           "Llama with a per-head RMSNorm of queries and keys before RoPE, RoPE base 1e6 "
           "(the small sizes tie their embeddings).",
           dict(rope_base=1_000_000.0, qk_norm=True)),
    Family("gemma", "Gemma", "gemma",
           "Llama with RMSNorm scaling by (1 + scale), embeddings times sqrt(d_model), a GELU-tanh "
           "gate, tied embeddings (and a head width set freely).",
           dict(_GEMMA)),
    Family("gemma2", "Gemma 2", "gemma2",
           "Gemma with norms after attention and after the MLP too, sliding-window (4096) and "
           "global layers alternating (sliding first), queries scaled by 256 ** -0.5, attention "
           "logits soft-capped at 50 and output logits at 30.",
           dict(_GEMMA, post_norms=True, layer_types=("sliding_attention", "full_attention"),
                local_window=4096, query_scale=256 ** -0.5, attn_logit_softcap=50.0,
                final_logit_softcap=30.0)),
    Family("gemma3", "Gemma 3 (text)", "gemma3_text",
           "Gemma 2 without soft-capping, with a per-head RMSNorm of queries and keys, five "
           "sliding-window (1024; 1B: 512) layers per global one, RoPE base 1e6 on the global "
           "layers and 10000 on the sliding ones.",
           dict(_GEMMA, post_norms=True, qk_norm=True,
                layer_types=("sliding_attention",) * 5 + ("full_attention",), local_window=1024,
                query_scale=256 ** -0.5, rope_base=1_000_000.0, rope_local_base=10000.0)),
    Family("phi3", "Phi-3 (mini 4k)", "phi3",
           "Llama with a sliding window of 2047 positions; its fused q/k/v and gate/up projections "
           "are split on import.",
           dict(norm_eps=1e-5, sliding_window=2047)),
    Family("bloom", "BLOOM", "bloom",
           "ALiBi instead of RoPE, LayerNorm with bias (also right after the embedding), a plain "
           "GELU-tanh MLP, biases on every projection, tied embeddings.",
           dict(_GPT_LAYER, position="alibi", activation="gelu_tanh", embed_norm=True, tie_embeddings=True)),
    Family("gpt2", "GPT-2, mGPT", "gpt2",
           "Learned positions instead of RoPE, LayerNorm with bias, a plain GELU-tanh MLP, biases "
           "on every projection, tied embeddings.",
           dict(_GPT_LAYER, position="learned", activation="gelu_tanh", tie_embeddings=True)),
    Family("gpt_neox", "GPT-NeoX, Pythia", "gpt_neox",
           "Parallel residual (x + attention(norm1(x)) + mlp(norm2(x))), RoPE on the first quarter "
           "of each head, LayerNorm with bias, a plain exact-GELU MLP, biases on every projection.",
           dict(_GPT_LAYER, rope_fraction=0.25, activation="gelu", parallel_residual=True)),
)
