"""Llama-style decoders: Llama 2/3, Mistral, Qwen2, Gemma (RMSNorm, RoPE, gated MLP).

They share one tensor table (`layer_entries`); each record's config translation adds
what its family changes: biases, sliding windows, Gemma's norm offset and embedding scale.
"""

from __future__ import annotations

from linguamix.models.hf import architectures
from linguamix.models.hf.families import common
from linguamix.models.hf.tensors import bias, entry, linear, norm_entries, out_kernel, same


def layer_entries(cfg) -> list:
  n, k, h, d = cfg.num_heads, cfg.kv_heads, cfg.head_width, cfg.d_model
  entries = norm_entries("input_layernorm", "pre_attention_norm", cfg)
  entries += norm_entries("post_attention_layernorm", "pre_mlp_norm", cfg)
  for proj, ours, heads in (("q_proj", "query", n), ("k_proj", "key", k), ("v_proj", "value", k)):
    entries.append(entry(f"self_attn.{proj}.weight", ("attention", ours, "kernel"), linear(heads, h)))
    if cfg.qkv_bias:
      entries.append(entry(f"self_attn.{proj}.bias", ("attention", ours, "bias"), bias(heads, h)))
  entries.append(entry("self_attn.o_proj.weight", ("attention", "out", "kernel"), out_kernel(n, h, d)))
  if cfg.out_bias:
    entries.append(entry("self_attn.o_proj.bias", ("attention", "out", "bias"), same()))
  for proj, ours in (("gate_proj", "wi_0"), ("up_proj", "wi_1"), ("down_proj", "wo")):
    entries.append(entry(f"mlp.{proj}.weight", ("mlp", ours, "kernel"), linear()))
    if cfg.mlp_bias:
      entries.append(entry(f"mlp.{proj}.bias", ("mlp", ours, "bias"), same()))
  return entries


def top_entries(cfg) -> list:
  return [entry("embed_tokens.weight", ("token_embedder", "embedding"), same()),
          *norm_entries("norm", "final_norm", cfg)]


def base_fields(hf: architectures.HFConfig) -> dict:
  """What every Llama-style config says the same way."""
  return dict(
      vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
      num_heads=hf["num_attention_heads"],
      num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
      head_dim=hf.get("head_dim"), mlp_dim=hf["intermediate_size"], norm="rms",
      norm_eps=hf.get("rms_norm_eps", 1e-6), position="rope",
      max_positions=hf.get("max_position_embeddings", 2048),
      activation=common.activation(hf, hf.get("hidden_act") or "silu"),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)), **common.rope_fields(hf))


def base_to_hf(cfg) -> dict:
  return dict(
      vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_width,
      intermediate_size=cfg.mlp_dim, rms_norm_eps=cfg.norm_eps,
      hidden_act=common.HF_ACTIVATION[cfg.activation], max_position_embeddings=cfg.max_positions,
      tie_word_embeddings=cfg.tie_embeddings, **common.rope_to_hf(cfg))


def _full_attention_only(hf: architectures.HFConfig) -> None:
  """transformers 5 writes per-layer `layer_types`; only all-global attention is implemented here."""
  kinds = set(hf.get("layer_types") or ["full_attention"])
  if kinds != {"full_attention"}:
    raise hf.refuse("layer_types", sorted(kinds), "per-layer sliding windows are not implemented")


def _llama(hf):
  attention_bias = bool(hf.get("attention_bias", False))
  return dict(base_fields(hf), qkv_bias=attention_bias, out_bias=attention_bias,
              mlp_bias=bool(hf.get("mlp_bias", False)))


def _llama_to_hf(cfg):
  return dict(base_to_hf(cfg), attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)


def _mistral(hf):
  return dict(base_fields(hf), sliding_window=hf.get("sliding_window"))


def _mistral_to_hf(cfg):
  return dict(base_to_hf(cfg), sliding_window=cfg.sliding_window)


def _qwen2(hf):
  _full_attention_only(hf)
  return dict(base_fields(hf), qkv_bias=True)


def _gemma(hf):
  attention_bias = bool(hf.get("attention_bias", False))
  # transformers reads hidden_act and, like Gemma's reference code, takes "gelu" as the tanh approximation
  act = hf.get("hidden_act") or "gelu_pytorch_tanh"
  return dict(base_fields(hf), qkv_bias=attention_bias, out_bias=attention_bias,
              activation="gelu_tanh" if act == "gelu" else common.activation(hf, act),
              norm_scale_offset=1.0, embed_scale=True,
              tie_embeddings=bool(hf.get("tie_word_embeddings", True)))


def _gemma_to_hf(cfg):
  return dict(base_to_hf(cfg), attention_bias=cfg.qkv_bias)


_TABLE = dict(layer_entries=layer_entries, top_entries=top_entries, peft=True)

architectures.register(architectures.Architecture(
    "LlamaForCausalLM", "llama", "LlamaConfig", _llama, _llama_to_hf, **_TABLE))
architectures.register(architectures.Architecture(
    "MistralForCausalLM", "mistral", "MistralConfig", _mistral, _mistral_to_hf, **_TABLE))
architectures.register(architectures.Architecture(
    "Qwen2ForCausalLM", "qwen2", "Qwen2Config", _qwen2, base_to_hf,
    refused={"use_sliding_window": False},
    inert=frozenset({"sliding_window", "max_window_layers"}),  # read only with use_sliding_window
    **_TABLE))
architectures.register(architectures.Architecture(
    "GemmaForCausalLM", "gemma", "GemmaConfig", _gemma, _gemma_to_hf,
    refused={"use_bidirectional_attention": False}, **_TABLE))
