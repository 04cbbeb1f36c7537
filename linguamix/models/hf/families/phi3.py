"""Phi-3: Llama's layer with q|k|v fused in `qkv_proj` and gate|up in `gate_up_proj`."""

from __future__ import annotations

import numpy as np

from linguamix.models.hf import architectures
from linguamix.models.hf.families import llama
from linguamix.models.hf.tensors import Entry

_FUSED = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
          "mlp.gate_proj.weight", "mlp.up_proj.weight"}


def layer_entries(cfg) -> list:
  n, k, h, d, f = cfg.num_heads, cfg.kv_heads, cfg.head_width, cfg.d_model, cfg.mlp_dim
  entries = [e for e in llama.layer_entries(cfg) if e.hf_name not in _FUSED]
  qkv = tuple(("attention", name, "kernel") for name in ("query", "key", "value"))
  entries.append(Entry(
      "self_attn.qkv_proj.weight", qkv,
      lambda w: [x.T.reshape(d, -1, h) for x in np.split(w, [n * h, (n + k) * h])],
      lambda ks: np.concatenate([x.reshape(d, -1).T for x in ks])))
  entries.append(Entry(
      "mlp.gate_up_proj.weight", (("mlp", "wi_0", "kernel"), ("mlp", "wi_1", "kernel")),
      lambda w: [x.T for x in np.split(w, [f])], lambda ks: np.concatenate([x.T for x in ks])))
  return entries


def _fields(hf):
  return dict(llama.base_fields(hf), sliding_window=hf.get("sliding_window"))


def _to_hf(cfg):
  return dict(llama.base_to_hf(cfg), sliding_window=cfg.sliding_window)


architectures.register(architectures.Architecture(
    "Phi3ForCausalLM", "phi3", "Phi3Config", _fields, _to_hf,
    layer_entries=layer_entries, top_entries=llama.top_entries,
    # read by LongRoPE scaling only, which rope_fields refuses
    inert=frozenset({"original_max_position_embeddings"})))
