"""Qwen3: Llama's layer with an RMSNorm over each query and key head before RoPE
(`q_norm`, `k_norm`), a free head width, no biases unless `attention_bias`."""

from __future__ import annotations

from linguamix.models.hf import architectures
from linguamix.models.hf.families import llama
from linguamix.models.hf.tensors import entry, same


def layer_entries(cfg) -> list:
  return [*llama.layer_entries(cfg),
          entry("self_attn.q_norm.weight", ("attention", "query_norm", "scale"), same()),
          entry("self_attn.k_norm.weight", ("attention", "key_norm", "scale"), same())]


def _window(hf) -> int | None:
  """The one sliding window every layer has, or None; a mix of full and sliding layers is refused."""
  use, window = bool(hf.get("use_sliding_window", False)), hf.get("sliding_window", 4096)
  max_window_layers = hf.get("max_window_layers", 28)
  # Qwen3Config: the window applies only with use_sliding_window, to layers from max_window_layers on
  window = window if use else None
  kinds = set(hf.get("layer_types") or [
      "sliding_attention" if window is not None and i >= max_window_layers else "full_attention"
      for i in range(hf["num_hidden_layers"])])
  if window is None or kinds == {"full_attention"}:
    return None
  if kinds != {"sliding_attention"}:
    raise hf.refuse("max_window_layers", max_window_layers,
                    "a sliding window on some layers only (layer_types mixing full_attention and "
                    "sliding_attention) is not implemented; on every layer it is")
  return int(window)


def _fields(hf):
  attention_bias = bool(hf.get("attention_bias", False))  # q, k, v and o_proj alike
  return dict(llama.base_fields(hf), head_dim=hf.get("head_dim", 128),  # Qwen3Config's default
              qkv_bias=attention_bias, out_bias=attention_bias, qk_norm=True, sliding_window=_window(hf))


def _to_hf(cfg):
  if cfg.qkv_bias != cfg.out_bias or not cfg.qk_norm:
    raise ValueError(f"Qwen3 has q/k norms and one attention_bias: qk_norm={cfg.qk_norm}, "
                     f"qkv_bias={cfg.qkv_bias}, out_bias={cfg.out_bias} is not one")
  sliding = cfg.sliding_window is not None
  return dict(llama.base_to_hf(cfg), attention_bias=cfg.qkv_bias, use_sliding_window=sliding,
              sliding_window=cfg.sliding_window, max_window_layers=0 if sliding else cfg.num_layers,
              layer_types=["sliding_attention" if sliding else "full_attention"] * cfg.num_layers)


architectures.register(architectures.Architecture(
    "Qwen3ForCausalLM", "qwen3", "Qwen3Config", _fields, _to_hf,
    layer_entries=layer_entries, top_entries=llama.top_entries, peft=True))
