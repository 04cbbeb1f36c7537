"""Hugging Face checkpoints <-> `decoder.Decoder` parameters, for each decoder family.

A family is a table of `Entry`s: one HF tensor name <-> one or more of our parameter
paths, with the array transforms both ways (HF Linear weights are [out, in]; GPT-2's
Conv1D weights are [in, out]; BLOOM and GPT-2 fuse q/k/v into one tensor). Import
checks every tensor's shape against the one the config implies, and refuses unused
tensors, so a wrong config or checkpoint fails naming the tensor.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, Callable

import flax
import jax
import numpy as np
from safetensors import numpy as st_numpy
from safetensors import safe_open

from linguamix.models import decoder, lora

Path = tuple[str, ...]

# Architectures (config.json `architectures[0]`) and their family.
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
    "GemmaForCausalLM": "llama",
    "Phi3ForCausalLM": "phi3",
    "BloomForCausalLM": "bloom",
    "GPT2LMHeadModel": "gpt2",
    "GPTNeoXForCausalLM": "gpt_neox",
    "Qwen3ForCausalLM": "llama",
}
# Buffers some checkpoints carry that hold no parameters.
_IGNORED = re.compile(r"(\.(attn|attention)\.(masked_)?bias$|rotary_emb\.inv_freq$)")


@dataclasses.dataclass(frozen=True)
class Entry:
  hf_name: str
  paths: tuple[Path, ...]  # our parameter paths (under a layer: relative to it)
  to_ours: Callable[[np.ndarray], list[np.ndarray]]
  to_hf: Callable[[list[np.ndarray]], np.ndarray]


def _linear(*shape):
  """HF Linear weight [out, in] <-> kernel [in, *shape]."""
  return (lambda w: [w.T.reshape(w.shape[1], *(shape or (w.shape[0],)))],
          lambda ks: ks[0].reshape(ks[0].shape[0], -1).T)


def _same():
  return (lambda w: [w], lambda ks: ks[0])


def _bias(*shape):
  return (lambda b: [b.reshape(*shape)], lambda ks: ks[0].reshape(-1))


def _entry(hf_name, path, transforms):
  return Entry(hf_name, (path,), *transforms)


def _out_kernel(n, h, d):
  """HF [D, N*H] Linear (or GPT-2 Conv1D [N*H, D]) <-> out kernel [N, H, D]."""
  return (lambda w: [w.T.reshape(n, h, d)], lambda ks: ks[0].reshape(n * h, d).T)


def _conv1d(*shape):
  """GPT-2 Conv1D weight [in, out] <-> kernel [in, *shape]."""
  return (lambda w: [w.reshape(w.shape[0], *shape)], lambda ks: ks[0].reshape(ks[0].shape[0], -1))


def _norm_entries(hf_prefix: str, ours: str, cfg: decoder.DecoderConfig) -> list[Entry]:
  entries = [_entry(f"{hf_prefix}.weight", (ours, "scale"), _same())]
  if cfg.norm == "layer":
    entries.append(_entry(f"{hf_prefix}.bias", (ours, "bias"), _same()))
  return entries


def _llama_layer(cfg: decoder.DecoderConfig) -> list[Entry]:
  n, k, h, d = cfg.num_heads, cfg.kv_heads, cfg.head_width, cfg.d_model
  entries = _norm_entries("input_layernorm", "pre_attention_norm", cfg)
  entries += _norm_entries("post_attention_layernorm", "pre_mlp_norm", cfg)
  for proj, ours, heads in (("q_proj", "query", n), ("k_proj", "key", k), ("v_proj", "value", k)):
    entries.append(_entry(f"self_attn.{proj}.weight", ("attention", ours, "kernel"), _linear(heads, h)))
    if cfg.qkv_bias:
      entries.append(_entry(f"self_attn.{proj}.bias", ("attention", ours, "bias"), _bias(heads, h)))
  entries.append(_entry("self_attn.o_proj.weight", ("attention", "out", "kernel"), _out_kernel(n, h, d)))
  if cfg.out_bias:
    entries.append(_entry("self_attn.o_proj.bias", ("attention", "out", "bias"), _same()))
  if cfg.qk_norm:
    entries.append(_entry("self_attn.q_norm.weight", ("attention", "query_norm", "scale"), _same()))
    entries.append(_entry("self_attn.k_norm.weight", ("attention", "key_norm", "scale"), _same()))
  for proj, ours in (("gate_proj", "wi_0"), ("up_proj", "wi_1"), ("down_proj", "wo")):
    entries.append(_entry(f"mlp.{proj}.weight", ("mlp", ours, "kernel"), _linear()))
    if cfg.mlp_bias:
      entries.append(_entry(f"mlp.{proj}.bias", ("mlp", ours, "bias"), _same()))
  return entries


def _phi3_layer(cfg: decoder.DecoderConfig) -> list[Entry]:
  """Llama's layer with q|k|v fused in `qkv_proj` and gate|up in `gate_up_proj`."""
  n, k, h, d, f = cfg.num_heads, cfg.kv_heads, cfg.head_width, cfg.d_model, cfg.mlp_dim
  fused = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
           "mlp.gate_proj.weight", "mlp.up_proj.weight"}
  entries = [e for e in _llama_layer(cfg) if e.hf_name not in fused]
  qkv = [("attention", name, "kernel") for name in ("query", "key", "value")]
  entries.append(Entry(
      "self_attn.qkv_proj.weight", tuple(qkv),
      lambda w: [x.T.reshape(d, -1, h) for x in np.split(w, [n * h, (n + k) * h])],
      lambda ks: np.concatenate([x.reshape(d, -1).T for x in ks])))
  entries.append(Entry(
      "mlp.gate_up_proj.weight", (("mlp", "wi_0", "kernel"), ("mlp", "wi_1", "kernel")),
      lambda w: [x.T for x in np.split(w, [f])], lambda ks: np.concatenate([x.T for x in ks])))
  return entries


def _bloom_layer(cfg: decoder.DecoderConfig) -> list[Entry]:
  n, h, d = cfg.num_heads, cfg.head_width, cfg.d_model
  qkv = [("attention", name) for name in ("query", "key", "value")]
  # query_key_value is laid out [N, 3, H] along its output axis
  fused_w = Entry(
      "self_attention.query_key_value.weight", tuple(p + ("kernel",) for p in qkv),
      lambda w: [w.reshape(n, 3, h, d)[:, i].transpose(2, 0, 1) for i in range(3)],
      lambda ks: np.stack([k.transpose(1, 2, 0) for k in ks], axis=1).reshape(3 * n * h, d))
  fused_b = Entry(
      "self_attention.query_key_value.bias", tuple(p + ("bias",) for p in qkv),
      lambda b: [b.reshape(n, 3, h)[:, i] for i in range(3)],
      lambda bs: np.stack(bs, axis=1).reshape(-1))
  entries = _norm_entries("input_layernorm", "pre_attention_norm", cfg)
  entries += _norm_entries("post_attention_layernorm", "pre_mlp_norm", cfg)
  entries += [
      fused_w, fused_b,
      _entry("self_attention.dense.weight", ("attention", "out", "kernel"), _out_kernel(n, h, d)),
      _entry("self_attention.dense.bias", ("attention", "out", "bias"), _same()),
      _entry("mlp.dense_h_to_4h.weight", ("mlp", "wi", "kernel"), _linear()),
      _entry("mlp.dense_h_to_4h.bias", ("mlp", "wi", "bias"), _same()),
      _entry("mlp.dense_4h_to_h.weight", ("mlp", "wo", "kernel"), _linear()),
      _entry("mlp.dense_4h_to_h.bias", ("mlp", "wo", "bias"), _same()),
  ]
  return entries


def _gpt2_layer(cfg: decoder.DecoderConfig) -> list[Entry]:
  n, h, d = cfg.num_heads, cfg.head_width, cfg.d_model
  qkv = [("attention", name) for name in ("query", "key", "value")]
  # c_attn is a Conv1D [D, 3*N*H] with q | k | v along its output axis
  fused_w = Entry(
      "attn.c_attn.weight", tuple(p + ("kernel",) for p in qkv),
      lambda w: [x.reshape(d, n, h) for x in np.split(w, 3, axis=1)],
      lambda ks: np.concatenate([k.reshape(d, n * h) for k in ks], axis=1))
  fused_b = Entry(
      "attn.c_attn.bias", tuple(p + ("bias",) for p in qkv),
      lambda b: [x.reshape(n, h) for x in np.split(b, 3)],
      lambda bs: np.concatenate([b.reshape(-1) for b in bs]))
  entries = _norm_entries("ln_1", "pre_attention_norm", cfg)
  entries += _norm_entries("ln_2", "pre_mlp_norm", cfg)
  entries += [
      fused_w, fused_b,
      Entry("attn.c_proj.weight", (("attention", "out", "kernel"),),
            lambda w: [w.reshape(n, h, d)], lambda ks: ks[0].reshape(n * h, d)),
      _entry("attn.c_proj.bias", ("attention", "out", "bias"), _same()),
      _entry("mlp.c_fc.weight", ("mlp", "wi", "kernel"), _conv1d(cfg.mlp_dim)),
      _entry("mlp.c_fc.bias", ("mlp", "wi", "bias"), _same()),
      _entry("mlp.c_proj.weight", ("mlp", "wo", "kernel"), _same()),
      _entry("mlp.c_proj.bias", ("mlp", "wo", "bias"), _same()),
  ]
  return entries


def _gpt_neox_layer(cfg: decoder.DecoderConfig) -> list[Entry]:
  n, h, d = cfg.num_heads, cfg.head_width, cfg.d_model
  qkv = [("attention", name) for name in ("query", "key", "value")]
  # query_key_value is laid out [N, 3, H] along its output axis (per head: q, k, v)
  entries = [Entry(
      "attention.query_key_value.weight", tuple(p + ("kernel",) for p in qkv),
      lambda w: [w.reshape(n, 3, h, d)[:, i].transpose(2, 0, 1) for i in range(3)],
      lambda ks: np.stack([k.transpose(1, 2, 0) for k in ks], axis=1).reshape(3 * n * h, d))]
  if cfg.qkv_bias:
    entries.append(Entry(
        "attention.query_key_value.bias", tuple(p + ("bias",) for p in qkv),
        lambda b: [b.reshape(n, 3, h)[:, i] for i in range(3)],
        lambda bs: np.stack(bs, axis=1).reshape(-1)))
  entries.append(_entry("attention.dense.weight", ("attention", "out", "kernel"), _out_kernel(n, h, d)))
  if cfg.out_bias:
    entries.append(_entry("attention.dense.bias", ("attention", "out", "bias"), _same()))
  entries += _norm_entries("input_layernorm", "pre_attention_norm", cfg)
  entries += _norm_entries("post_attention_layernorm", "pre_mlp_norm", cfg)
  entries += [
      _entry("mlp.dense_h_to_4h.weight", ("mlp", "wi", "kernel"), _linear()),
      _entry("mlp.dense_h_to_4h.bias", ("mlp", "wi", "bias"), _same()),
      _entry("mlp.dense_4h_to_h.weight", ("mlp", "wo", "kernel"), _linear()),
      _entry("mlp.dense_4h_to_h.bias", ("mlp", "wo", "bias"), _same()),
  ]
  return entries


_LAYOUT = {
    # family: (prefix of the base model, layer prefix, layer entries, top-level entries)
    "llama": ("model.", "layers", _llama_layer, lambda cfg: [
        _entry("embed_tokens.weight", ("token_embedder", "embedding"), _same()),
        *_norm_entries("norm", "final_norm", cfg)]),
    "phi3": ("model.", "layers", _phi3_layer, lambda cfg: [
        _entry("embed_tokens.weight", ("token_embedder", "embedding"), _same()),
        *_norm_entries("norm", "final_norm", cfg)]),
    "bloom": ("transformer.", "h", _bloom_layer, lambda cfg: [
        _entry("word_embeddings.weight", ("token_embedder", "embedding"), _same()),
        *_norm_entries("word_embeddings_layernorm", "embed_norm", cfg),
        *_norm_entries("ln_f", "final_norm", cfg)]),
    "gpt2": ("transformer.", "h", _gpt2_layer, lambda cfg: [
        _entry("wte.weight", ("token_embedder", "embedding"), _same()),
        _entry("wpe.weight", ("pos_embedder", "embedding"), _same()),
        *_norm_entries("ln_f", "final_norm", cfg)]),
    "gpt_neox": ("gpt_neox.", "layers", _gpt_neox_layer, lambda cfg: [
        _entry("embed_in.weight", ("token_embedder", "embedding"), _same()),
        *_norm_entries("final_layer_norm", "final_norm", cfg)]),
}
_HEAD = {"gpt_neox": "embed_out.weight"}  # the untied output matrix; others: lm_head.weight


def entries(family: str, cfg: decoder.DecoderConfig) -> list[Entry]:
  """All tensors of a family's checkpoint, with full HF names and full parameter paths."""
  prefix, layer_prefix, layer_fn, top_fn = _LAYOUT[family]
  out = [dataclasses.replace(e, hf_name=prefix + e.hf_name) for e in top_fn(cfg)]
  for i in range(cfg.num_layers):
    out += [dataclasses.replace(e, hf_name=f"{prefix}{layer_prefix}.{i}.{e.hf_name}",
                                paths=tuple((f"layers_{i}",) + p for p in e.paths))
            for e in layer_fn(cfg)]
  if not cfg.tie_embeddings:
    out.append(_entry(_HEAD.get(family, "lm_head.weight"), ("logits_dense",), (lambda w: [w.T], lambda ks: ks[0].T)))
  return out


# ---------------------------------------------------------------------------- configs


def _rope_fields(hf: dict, default_fraction: float = 1.0) -> dict:
  """RoPE fields from rope_parameters / rope_scaling, or GPT-NeoX's rotary_emb_base / rotary_pct."""
  rope = dict(hf.get("rope_parameters") or {})
  legacy = hf.get("rope_scaling") or {}
  rope = {**legacy, **rope}
  theta = rope.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  fraction = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor",
                                                      hf.get("rotary_pct", default_fraction)))
  fields = {"rope_base": float(theta), "rope_type": rope_type, "rope_fraction": float(fraction)}
  if rope_type in ("linear", "llama3"):
    fields["rope_factor"] = float(rope["factor"])
  if rope_type == "llama3":
    fields.update(rope_low_freq_factor=float(rope["low_freq_factor"]),
                  rope_high_freq_factor=float(rope["high_freq_factor"]),
                  rope_original_max_positions=int(rope["original_max_position_embeddings"]))
  elif rope_type not in ("default", "linear"):
    raise ValueError(f"rope type {rope_type!r} is not supported (default, linear, llama3)")
  return fields


_HF_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "relu": "relu",
                   "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
                   "gelu_pytorch_tanh": "gelu_tanh"}


def _activation(name: str, where: str) -> str:
  if name not in _HF_ACTIVATIONS:
    raise ValueError(f"{where}: activation {name!r} is not supported ({sorted(_HF_ACTIVATIONS)})")
  return _HF_ACTIVATIONS[name]


def config_from_hf(hf: dict, where: str = "config.json", **overrides) -> tuple[str, decoder.DecoderConfig]:
  """(architecture, DecoderConfig) from a parsed config.json; `overrides` set dtype, scan, ...."""
  archs = hf.get("architectures") or []
  arch = archs[0] if archs else None
  if arch not in ARCHITECTURES:
    raise ValueError(f"{where}: architectures={archs!r} is not supported; "
                     f"supported: {', '.join(sorted(ARCHITECTURES))}")
  family = ARCHITECTURES[arch]
  if family in ("llama", "phi3"):
    gemma = arch == "GemmaForCausalLM"
    qwen3 = arch == "Qwen3ForCausalLM"
    if hf.get("use_sliding_window") and arch == "Qwen2ForCausalLM":
      raise ValueError(f"{where}: Qwen2 per-layer sliding windows (use_sliding_window=true) are not supported")
    window = _qwen3_window(hf, where) if qwen3 else (
        hf.get("sliding_window") if arch in ("MistralForCausalLM", "Phi3ForCausalLM") else None)
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "silu"
    fields = dict(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        head_dim=hf.get("head_dim"), mlp_dim=hf["intermediate_size"], norm="rms",
        norm_eps=hf.get("rms_norm_eps", 1e-6), position="rope",
        max_positions=hf.get("max_position_embeddings", 2048),
        activation="gelu_tanh" if gemma and act == "gelu" else _activation(act, where),
        qkv_bias=arch == "Qwen2ForCausalLM" or bool(hf.get("attention_bias", False)),
        out_bias=arch in ("LlamaForCausalLM", "Qwen3ForCausalLM") and bool(hf.get("attention_bias", False)),
        mlp_bias=bool(hf.get("mlp_bias", False)), qk_norm=qwen3, sliding_window=window,
        tie_embeddings=bool(hf.get("tie_word_embeddings", gemma)),
        norm_scale_offset=1.0 if gemma else 0.0, embed_scale=gemma,
        **_rope_fields(hf))
  elif family == "bloom":
    if hf.get("apply_residual_connection_post_layernorm"):
      raise ValueError(f"{where}: apply_residual_connection_post_layernorm=true is not supported")
    d = hf.get("hidden_size") or hf["n_embed"]
    fields = dict(
        vocab_size=hf["vocab_size"], d_model=d, num_layers=hf.get("n_layer") or hf["num_hidden_layers"],
        num_heads=hf.get("n_head") or hf["num_attention_heads"], mlp_dim=4 * d, norm="layer",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5), position="alibi", mlp_gated=False,
        activation="gelu_tanh", qkv_bias=True, out_bias=True, mlp_bias=True, embed_norm=True,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)))
  elif family == "gpt_neox":
    bias = bool(hf.get("attention_bias", True))
    fields = dict(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"], norm="layer",
        norm_eps=hf.get("layer_norm_eps", 1e-5), position="rope",
        max_positions=hf.get("max_position_embeddings", 2048), mlp_gated=False,
        activation=_activation(hf.get("hidden_act", "gelu"), where), qkv_bias=bias, out_bias=bias,
        mlp_bias=True, parallel_residual=bool(hf.get("use_parallel_residual", True)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        **_rope_fields(hf, default_fraction=0.25))  # GPTNeoXConfig's default rotary_pct
  else:  # gpt2
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
      if hf.get(flag):
        raise ValueError(f"{where}: {flag}=true is not supported")
    d = hf["n_embd"]
    fields = dict(
        vocab_size=hf["vocab_size"], d_model=d, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        mlp_dim=hf.get("n_inner") or 4 * d, norm="layer", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        position="learned", max_positions=hf["n_positions"], mlp_gated=False,
        activation=_activation(hf.get("activation_function", "gelu_new"), where),
        qkv_bias=True, out_bias=True, mlp_bias=True,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)))
  return arch, decoder.DecoderConfig(**{**fields, **overrides})


def _qwen3_window(hf: dict, where: str) -> int | None:
  """Qwen3's one sliding window for all layers, or None; a mix of full and sliding layers is refused."""
  window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
  layer_types = hf.get("layer_types") or [
      "sliding_attention" if window is not None and i >= hf.get("max_window_layers", 28) else "full_attention"
      for i in range(hf["num_hidden_layers"])]
  if window is None or set(layer_types) == {"full_attention"}:
    return None
  if set(layer_types) != {"sliding_attention"}:
    raise ValueError(f"{where}: layer_types/max_window_layers mixing full and sliding attention layers "
                     f"(use_sliding_window=true, max_window_layers={hf.get('max_window_layers')}) "
                     "is not supported; a sliding window on every layer is")
  return int(window)


def _rope_to_hf(cfg: decoder.DecoderConfig) -> dict:
  rope = {"rope_type": cfg.rope_type, "rope_theta": cfg.rope_base}
  if cfg.rope_fraction != 1.0:
    rope["partial_rotary_factor"] = cfg.rope_fraction
  if cfg.rope_type in ("linear", "llama3"):
    rope["factor"] = cfg.rope_factor
  if cfg.rope_type == "llama3":
    rope.update(low_freq_factor=cfg.rope_low_freq_factor, high_freq_factor=cfg.rope_high_freq_factor,
                original_max_position_embeddings=cfg.rope_original_max_positions)
  return rope


def config_to_hf(arch: str, cfg: decoder.DecoderConfig, extra: dict | None = None) -> dict:
  """config.json for `arch` from a DecoderConfig (`extra`: token ids and other keys to keep)."""
  family = ARCHITECTURES[arch]
  if family in ("llama", "phi3"):
    rope = _rope_to_hf(cfg)
    act = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "relu": "relu"}[cfg.activation]
    hf = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_width,
        intermediate_size=cfg.mlp_dim, rms_norm_eps=cfg.norm_eps, hidden_act=act,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters=rope, rope_theta=cfg.rope_base)
    if arch == "LlamaForCausalLM":
      hf.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
    if arch == "Qwen3ForCausalLM":
      sliding = cfg.sliding_window is not None
      hf.update(attention_bias=cfg.qkv_bias, use_sliding_window=sliding, sliding_window=cfg.sliding_window,
                max_window_layers=0 if sliding else cfg.num_layers,
                layer_types=[("sliding_attention" if sliding else "full_attention")] * cfg.num_layers)
    if arch in ("MistralForCausalLM", "Phi3ForCausalLM"):
      hf["sliding_window"] = cfg.sliding_window
    if arch == "GemmaForCausalLM":
      hf["hidden_activation"] = act
  elif family == "bloom":
    hf = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, n_layer=cfg.num_layers,
              n_head=cfg.num_heads, layer_norm_epsilon=cfg.norm_eps,
              apply_residual_connection_post_layernorm=False, tie_word_embeddings=cfg.tie_embeddings)
  elif family == "gpt_neox":
    hf = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
              num_attention_heads=cfg.num_heads, intermediate_size=cfg.mlp_dim,
              hidden_act={"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}[cfg.activation],
              layer_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.max_positions,
              tie_word_embeddings=cfg.tie_embeddings, use_parallel_residual=cfg.parallel_residual,
              attention_bias=cfg.qkv_bias,
              # written even at 1.0: GPTNeoXConfig defaults an absent factor to 0.25
              rope_parameters={**_rope_to_hf(cfg), "partial_rotary_factor": cfg.rope_fraction},
              # transformers 4 reads these two
              rotary_pct=cfg.rope_fraction, rotary_emb_base=cfg.rope_base)
  else:
    hf = dict(vocab_size=cfg.vocab_size, n_embd=cfg.d_model, n_layer=cfg.num_layers, n_head=cfg.num_heads,
              n_inner=cfg.mlp_dim, n_positions=cfg.max_positions, layer_norm_epsilon=cfg.norm_eps,
              activation_function={"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu",
                                   "silu": "silu"}[cfg.activation],
              tie_word_embeddings=cfg.tie_embeddings)
  model_type = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
                "GemmaForCausalLM": "gemma", "Phi3ForCausalLM": "phi3", "BloomForCausalLM": "bloom", "GPT2LMHeadModel": "gpt2",
                "GPTNeoXForCausalLM": "gpt_neox", "Qwen3ForCausalLM": "qwen3"}[arch]
  return {"architectures": [arch], "model_type": model_type, "torch_dtype": "float32",
          **(extra or {}), **hf}


# ---------------------------------------------------------------------------- tensors


def read_safetensors(directory: str | pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of `model.safetensors` or of the shards listed in `model.safetensors.index.json`."""
  directory = pathlib.Path(directory)
  index = directory / "model.safetensors.index.json"
  if index.exists():
    weight_map = json.loads(index.read_text())["weight_map"]
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not (directory / f).exists()]
    if missing:
      raise FileNotFoundError(f"{index}: shards listed in weight_map are missing: {', '.join(missing)}")
  elif (directory / "model.safetensors").exists():
    files = ["model.safetensors"]
  else:
    raise FileNotFoundError(f"{directory}: neither model.safetensors nor model.safetensors.index.json")
  tensors = {}
  for f in files:
    with safe_open(str(directory / f), framework="numpy") as reader:
      for name in reader.keys():
        tensors[name] = reader.get_tensor(name)
  return tensors


def _expected_shapes(cfg: decoder.DecoderConfig) -> dict[Path, tuple[int, ...]]:
  unscanned = dataclasses.replace(cfg, scan_layers=False)
  shapes = jax.eval_shape(lambda: decoder.DecoderOnlyModel(unscanned, None).init_variables(
      jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 1)}))
  shapes = flax.linen.meta.unbox(shapes)["params"]
  return {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(shapes).items()}


def _stack_layers(flat: dict[Path, Any], num_layers: int) -> dict[Path, Any]:
  out = {k: v for k, v in flat.items() if not k[0].startswith("layers_")}
  for k in flat:
    if k[0] == "layers_0":
      out[("layers",) + k[1:]] = np.stack([flat[(f"layers_{i}",) + k[1:]] for i in range(num_layers)])
  return out


def _unstack_layers(flat: dict[Path, Any]) -> dict[Path, Any]:
  out = {}
  for k, v in flat.items():
    if k[0] == "layers":
      for i in range(v.shape[0]):
        out[(f"layers_{i}",) + k[1:]] = v[i]
    else:
      out[k] = v
  return out


def params_from_hf(arch: str, cfg: decoder.DecoderConfig, tensors: dict[str, np.ndarray],
                   where: str = "checkpoint") -> dict:
  """Our parameter tree (numpy, cfg.param_dtype) from HF tensors, checking every shape."""
  family = ARCHITECTURES[arch]
  base_prefix = _LAYOUT[family][0]
  tensors = dict(tensors)
  # base-model checkpoints (BloomModel, GPT2Model) store names without the prefix
  head = _HEAD.get(family, "lm_head.weight")
  for name in list(tensors):
    if not name.startswith(base_prefix) and name != head:
      tensors[base_prefix + name] = tensors.pop(name)
  if cfg.tie_embeddings:
    tensors.pop(head, None)  # some tied checkpoints store the shared matrix twice
  expected = _expected_shapes(cfg)
  flat = {}
  for e in entries(family, cfg):
    if e.hf_name not in tensors:
      raise KeyError(f"{where}: tensor {e.hf_name} is missing (needed for {'/'.join(e.paths[0])})")
    w = tensors.pop(e.hf_name)
    want = e.to_hf([np.zeros(expected[p], np.float32) for p in e.paths]).shape
    if tuple(w.shape) != tuple(want):
      raise ValueError(f"{where}: tensor {e.hf_name} has shape {tuple(w.shape)} but the config implies "
                       f"{tuple(want)} (parameter {'/'.join(e.paths[0])})")
    for path, value in zip(e.paths, e.to_ours(np.asarray(w, np.float32))):
      flat[path] = value.astype(cfg.param_dtype)
  unused = sorted(n for n in tensors if not _IGNORED.search(n))
  if unused:
    raise ValueError(f"{where}: {len(unused)} tensors do not belong to a {arch} with this config: "
                     f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
  if cfg.scan_layers:
    flat = _stack_layers(flat, cfg.num_layers)
  return flax.traverse_util.unflatten_dict(flat)


def params_to_hf(arch: str, cfg: decoder.DecoderConfig, params: dict) -> dict[str, np.ndarray]:
  """HF tensors from our params, after checking every parameter against the config
  (reshapes alone would accept any config of the same total size)."""
  flat = flax.traverse_util.flatten_dict(flax.linen.meta.unbox(params))
  flat = {k: np.asarray(v, np.float32) for k, v in _unstack_layers(flat).items()}
  expected = _expected_shapes(cfg)
  problems = [f"{'/'.join(p)}: missing" if p not in flat else
              f"{'/'.join(p)}: params {tuple(flat[p].shape)}, config implies {shape}"
              for p, shape in sorted(expected.items())
              if p not in flat or tuple(flat[p].shape) != shape]
  if problems:
    raise ValueError(f"the params do not fit this {arch} config ({len(problems)} problems): "
                     + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
  return {e.hf_name: np.ascontiguousarray(e.to_hf([flat[p] for p in e.paths]))
          for e in entries(ARCHITECTURES[arch], cfg)}


def load_hf(directory: str | pathlib.Path, **overrides) -> tuple[str, decoder.DecoderConfig, dict]:
  """(architecture, config, params) from a Hugging Face model directory."""
  directory = pathlib.Path(directory)
  config_path = directory / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} does not exist")
  arch, cfg = config_from_hf(json.loads(config_path.read_text()), str(config_path), **overrides)
  params = params_from_hf(arch, cfg, read_safetensors(directory), str(directory))
  return arch, cfg, params


def save_hf(directory: str | pathlib.Path, arch: str, cfg: decoder.DecoderConfig, params: dict,
            extra_config: dict | None = None, dtype: Any = np.float32) -> None:
  """Writes config.json and model.safetensors that `AutoModelForCausalLM.from_pretrained` reads."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tensors = {k: v.astype(jax.numpy.dtype(dtype)) for k, v in params_to_hf(arch, cfg, params).items()}
  st_numpy.save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
  hf_config = config_to_hf(arch, cfg, extra_config)
  hf_config["torch_dtype"] = jax.numpy.dtype(dtype).name
  (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")


# ---------------------------------------------------------------------------- convert


def import_hf(hf_dir: str, scan_layers: bool = False) -> tuple[dict, dict]:
  """`linguamix convert` hook: (params, config.json dict)."""
  _, _, params = load_hf(hf_dir, scan_layers=scan_layers)
  hf_config = json.loads((pathlib.Path(hf_dir) / "config.json").read_text())
  return params, hf_config


def _adapter_config(params: dict, alpha: float | None, dropout: float = 0.0) -> lora.LoraConfig | None:
  """The LoraConfig of the adapters in `params` (rank read off their shapes), or None."""
  adapters, _ = lora.split_params(params)
  ranks = {a.shape[-1] for k, a in flax.traverse_util.flatten_dict(adapters).items() if k[-1] == "a"}
  if not ranks:
    return None
  if alpha is None:
    raise ValueError("the checkpoint holds LoRA adapters: pass --lora_alpha (the run's LoraConfig "
                     "alpha) to merge them into the exported weights, or use export-peft")
  if len(ranks) > 1:
    raise ValueError(f"the checkpoint's LoRA adapters have different ranks {sorted(ranks)}; "
                     "merging needs one rank")
  return lora.LoraConfig(rank=ranks.pop(), alpha=alpha, dropout=dropout)


def export_hf(params: dict, hf_config: dict, out_dir: str, dtype: str = "float32",
              lora_alpha: float | None = None) -> None:
  """`linguamix convert` hook: writes `params` (LoRA adapters merged) as `hf_config` describes."""
  adapters = _adapter_config(params, lora_alpha)
  if adapters is not None:
    params = jax.tree.map(np.asarray, lora.merge(params, adapters))
  flat = flax.traverse_util.flatten_dict(params)
  scanned = any(k[0] == "layers" for k in flat)
  arch, cfg = config_from_hf(hf_config, "config.json", scan_layers=scanned)
  keep = {k: v for k, v in hf_config.items() if k.endswith("token_id") or k == "torch_dtype"}
  save_hf(out_dir, arch, cfg, params, extra_config=keep, dtype=jax.numpy.dtype(dtype))


def export_peft(params: dict, hf_config: dict, out_dir: str, lora_alpha: float,
                lora_dropout: float = 0.0) -> None:
  """`linguamix convert export-peft` hook: the adapters in `params` as a PEFT adapter."""
  adapters = _adapter_config(params, lora_alpha, lora_dropout)
  if adapters is None:
    raise ValueError("the checkpoint holds no LoRA adapters")
  scanned = any(k[0] == "layers" for k in flax.traverse_util.flatten_dict(params))
  arch, cfg = config_from_hf(hf_config, "config.json", scan_layers=scanned, lora=adapters)
  lora.export_peft(out_dir, params, arch, cfg, hf_config.get("_name_or_path", ""))
