"""BLOOM: ALiBi, LayerNorm with bias, an embedding LayerNorm, q|k|v fused per head."""

from __future__ import annotations

import numpy as np

from linguamix.models.hf import architectures
from linguamix.models.hf.tensors import Entry, entry, linear, norm_entries, out_kernel, same


def layer_entries(cfg) -> list:
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
  return [
      *norm_entries("input_layernorm", "pre_attention_norm", cfg),
      *norm_entries("post_attention_layernorm", "pre_mlp_norm", cfg),
      fused_w, fused_b,
      entry("self_attention.dense.weight", ("attention", "out", "kernel"), out_kernel(n, h, d)),
      entry("self_attention.dense.bias", ("attention", "out", "bias"), same()),
      entry("mlp.dense_h_to_4h.weight", ("mlp", "wi", "kernel"), linear()),
      entry("mlp.dense_h_to_4h.bias", ("mlp", "wi", "bias"), same()),
      entry("mlp.dense_4h_to_h.weight", ("mlp", "wo", "kernel"), linear()),
      entry("mlp.dense_4h_to_h.bias", ("mlp", "wo", "bias"), same()),
  ]


def top_entries(cfg) -> list:
  return [entry("word_embeddings.weight", ("token_embedder", "embedding"), same()),
          *norm_entries("word_embeddings_layernorm", "embed_norm", cfg),
          *norm_entries("ln_f", "final_norm", cfg)]


def _fields(hf):
  d = hf.get("hidden_size") or hf["n_embed"]
  return dict(
      vocab_size=hf["vocab_size"], d_model=d, num_layers=hf.get("n_layer") or hf["num_hidden_layers"],
      num_heads=hf.get("n_head") or hf["num_attention_heads"], mlp_dim=4 * d, norm="layer",
      norm_eps=hf.get("layer_norm_epsilon", 1e-5), position="alibi", mlp_gated=False,
      activation="gelu_tanh", qkv_bias=True, out_bias=True, mlp_bias=True, embed_norm=True,
      tie_embeddings=bool(hf.get("tie_word_embeddings", True)))


def _to_hf(cfg):
  return dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, n_layer=cfg.num_layers,
              n_head=cfg.num_heads, layer_norm_epsilon=cfg.norm_eps,
              apply_residual_connection_post_layernorm=False, tie_word_embeddings=cfg.tie_embeddings)


architectures.register(architectures.Architecture(
    "BloomForCausalLM", "bloom", "BloomConfig", _fields, _to_hf,
    layer_entries=layer_entries, top_entries=top_entries, base_prefix="transformer.", layer_prefix="h",
    refused={"apply_residual_connection_post_layernorm": False},
    # slow_but_exact only reorders BLOOM's tensor-parallel sums
    inert=frozenset({"slow_but_exact"})))
