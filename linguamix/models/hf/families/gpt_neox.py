"""GPT-NeoX / Pythia: parallel residual, rotary on part of each head, LayerNorm with bias,
q|k|v fused per head in `query_key_value`, an untied output matrix `embed_out`."""

from __future__ import annotations

import numpy as np

from linguamix.models.hf import architectures
from linguamix.models.hf.families import common
from linguamix.models.hf.tensors import Entry, entry, linear, norm_entries, out_kernel, same


def layer_entries(cfg) -> list:
  n, h, d = cfg.num_heads, cfg.head_width, cfg.d_model
  qkv = [("attention", name) for name in ("query", "key", "value")]
  # query_key_value is laid out [N, 3, H] along its output axis: each head's q, k, v in turn
  entries = [Entry(
      "attention.query_key_value.weight", tuple(p + ("kernel",) for p in qkv),
      lambda w: [w.reshape(n, 3, h, d)[:, i].transpose(2, 0, 1) for i in range(3)],
      lambda ks: np.stack([k.transpose(1, 2, 0) for k in ks], axis=1).reshape(3 * n * h, d))]
  if cfg.qkv_bias:
    entries.append(Entry(
        "attention.query_key_value.bias", tuple(p + ("bias",) for p in qkv),
        lambda b: [b.reshape(n, 3, h)[:, i] for i in range(3)],
        lambda bs: np.stack(bs, axis=1).reshape(-1)))
  entries.append(entry("attention.dense.weight", ("attention", "out", "kernel"), out_kernel(n, h, d)))
  if cfg.out_bias:
    entries.append(entry("attention.dense.bias", ("attention", "out", "bias"), same()))
  return [
      *norm_entries("input_layernorm", "pre_attention_norm", cfg),
      *norm_entries("post_attention_layernorm", "pre_mlp_norm", cfg),
      *entries,
      entry("mlp.dense_h_to_4h.weight", ("mlp", "wi", "kernel"), linear()),
      entry("mlp.dense_h_to_4h.bias", ("mlp", "wi", "bias"), same()),
      entry("mlp.dense_4h_to_h.weight", ("mlp", "wo", "kernel"), linear()),
      entry("mlp.dense_4h_to_h.bias", ("mlp", "wo", "bias"), same()),
  ]


def top_entries(cfg) -> list:
  return [entry("embed_in.weight", ("token_embedder", "embedding"), same()),
          *norm_entries("final_layer_norm", "final_norm", cfg)]


def _fields(hf):
  attention_bias = bool(hf.get("attention_bias", True))  # one flag for query_key_value and dense
  return dict(
      vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
      num_heads=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"], norm="layer",
      norm_eps=hf.get("layer_norm_eps", 1e-5), position="rope",
      max_positions=hf.get("max_position_embeddings", 2048), mlp_gated=False,
      activation=common.activation(hf, hf.get("hidden_act", "gelu")),
      qkv_bias=attention_bias, out_bias=attention_bias, mlp_bias=True,
      parallel_residual=bool(hf.get("use_parallel_residual", True)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      # GPTNeoXConfig's defaults: a quarter of each head rotates; Hub config.json files
      # (transformers 4) say rotary_pct / rotary_emb_base instead of rope_parameters
      **common.rope_fields(hf, partial_rotary=hf.get("rotary_pct", 0.25),
                           theta=hf.get("rotary_emb_base", 10000.0)))


def _to_hf(cfg):
  if cfg.qkv_bias != cfg.out_bias or not cfg.mlp_bias or cfg.mlp_gated:
    raise ValueError("GPT-NeoX has one attention_bias for query_key_value and dense, a biased plain MLP: "
                     f"qkv_bias={cfg.qkv_bias}, out_bias={cfg.out_bias}, mlp_bias={cfg.mlp_bias}, "
                     f"mlp_gated={cfg.mlp_gated} is not one")
  rope = common.rope_to_hf(cfg)
  # written even at 1.0: GPTNeoXConfig takes a missing partial_rotary_factor as 0.25
  rope["rope_parameters"]["partial_rotary_factor"] = cfg.rope_fraction
  return dict(
      vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.mlp_dim,
      hidden_act=common.HF_ACTIVATION[cfg.activation], layer_norm_eps=cfg.norm_eps,
      max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
      use_parallel_residual=cfg.parallel_residual, attention_bias=cfg.qkv_bias, **rope,
      # what transformers 4 reads
      rotary_pct=cfg.rope_fraction, rotary_emb_base=cfg.rope_base)


architectures.register(architectures.Architecture(
    "GPTNeoXForCausalLM", "gpt_neox", "GPTNeoXConfig", _fields, _to_hf,
    layer_entries=layer_entries, top_entries=top_entries, base_prefix="gpt_neox.", layer_prefix="layers",
    lm_head="embed_out.weight",
    # Pythia checkpoints carry the causal mask and the inverse frequencies as buffers
    ignored=r"(\.attention\.(masked_)?bias$|rotary_emb\.inv_freq$)"))
