"""GPT-2 / mGPT: learned positions, LayerNorm with bias, Conv1D weights ([in, out]), fused c_attn."""

from __future__ import annotations

import numpy as np

from linguamix.models.hf import architectures
from linguamix.models.hf.families import common
from linguamix.models.hf.tensors import Entry, conv1d, entry, norm_entries, same

_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def layer_entries(cfg) -> list:
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
  return [
      *norm_entries("ln_1", "pre_attention_norm", cfg),
      *norm_entries("ln_2", "pre_mlp_norm", cfg),
      fused_w, fused_b,
      Entry("attn.c_proj.weight", (("attention", "out", "kernel"),),
            lambda w: [w.reshape(n, h, d)], lambda ks: ks[0].reshape(n * h, d)),
      entry("attn.c_proj.bias", ("attention", "out", "bias"), same()),
      entry("mlp.c_fc.weight", ("mlp", "wi", "kernel"), conv1d(cfg.mlp_dim)),
      entry("mlp.c_fc.bias", ("mlp", "wi", "bias"), same()),
      entry("mlp.c_proj.weight", ("mlp", "wo", "kernel"), same()),
      entry("mlp.c_proj.bias", ("mlp", "wo", "bias"), same()),
  ]


def top_entries(cfg) -> list:
  return [entry("wte.weight", ("token_embedder", "embedding"), same()),
          entry("wpe.weight", ("pos_embedder", "embedding"), same()),
          *norm_entries("ln_f", "final_norm", cfg)]


def _fields(hf):
  d = hf["n_embd"]
  return dict(
      vocab_size=hf["vocab_size"], d_model=d, num_layers=hf["n_layer"], num_heads=hf["n_head"],
      mlp_dim=hf.get("n_inner") or 4 * d, norm="layer", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
      position="learned", max_positions=hf["n_positions"], mlp_gated=False,
      activation=common.activation(hf, hf.get("activation_function", "gelu_new")),
      qkv_bias=True, out_bias=True, mlp_bias=True,
      # scale_attn_weights=false: attention logits are q.k, not q.k / sqrt(head width)
      query_scale=None if hf.get("scale_attn_weights", True) else 1.0,
      tie_embeddings=bool(hf.get("tie_word_embeddings", True)))


def _to_hf(cfg):
  if cfg.query_scale not in (None, 1.0):
    raise ValueError(f"GPT-2 scales attention by 1/sqrt(head width) or not at all; query_scale={cfg.query_scale}")
  return dict(vocab_size=cfg.vocab_size, n_embd=cfg.d_model, n_layer=cfg.num_layers, n_head=cfg.num_heads,
              n_inner=cfg.mlp_dim, n_positions=cfg.max_positions, layer_norm_epsilon=cfg.norm_eps,
              activation_function=_TO_HF_ACTIVATION[cfg.activation],
              scale_attn_weights=cfg.query_scale is None, tie_word_embeddings=cfg.tie_embeddings)


architectures.register(architectures.Architecture(
    "GPT2LMHeadModel", "gpt2", "GPT2Config", _fields, _to_hf,
    layer_entries=layer_entries, top_entries=top_entries, base_prefix="transformer.", layer_prefix="h",
    refused={"scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False},
    inert=frozenset({
        # the sequence-summary head of GPT2DoubleHeadsModel, not part of the LM
        "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
        "summary_first_dropout",
        # reorders and upcasts the attention product for fp16 stability; ours is float32 already
        "reorder_and_upcast_attn"})))
