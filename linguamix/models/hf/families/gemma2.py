"""Gemma 2 and Gemma 3 (text): Gemma's layer with four norms, alternating local and global attention.

Both normalise the attention and MLP outputs too (`post_norms`: HF's post_attention_layernorm
and post_feedforward_layernorm; its pre_feedforward_layernorm is our pre_mlp_norm) and give
each layer a kind in `layer_types` ("sliding_attention" layers see `sliding_window`
positions back). Gemma 2 soft-caps attention and output logits; Gemma 3 adds per-head
q/k RMSNorm and a RoPE base per layer kind. The multimodal Gemma3ForConditionalGeneration
is not registered, so it is refused by name.
"""

from __future__ import annotations

from linguamix.models.hf import architectures
from linguamix.models.hf.families import common, llama
from linguamix.models.hf.tensors import entry, norm_entries, same

_NORMS = (("input_layernorm", "pre_attention_norm"), ("post_attention_layernorm", "post_attention_norm"),
          ("pre_feedforward_layernorm", "pre_mlp_norm"), ("post_feedforward_layernorm", "post_mlp_norm"))
_LLAMA_NORMS = {"input_layernorm.weight", "post_attention_layernorm.weight"}


def layer_entries(cfg) -> list:
  """Llama's projections, Gemma 2's four norms and (Gemma 3) the q/k norms."""
  entries = [e for e in llama.layer_entries(cfg) if e.hf_name not in _LLAMA_NORMS]
  for hf_name, ours in _NORMS:
    entries += norm_entries(hf_name, ours, cfg)
  if cfg.qk_norm:
    entries += [entry("self_attn.q_norm.weight", ("attention", "query_norm", "scale"), same()),
                entry("self_attn.k_norm.weight", ("attention", "key_norm", "scale"), same())]
  return entries


def _layer_fields(hf: architectures.HFConfig, pattern: int) -> dict:
  """Per-layer kinds (`layer_types`, else HF's default: every `pattern`-th layer global)."""
  n = hf["num_hidden_layers"]
  kinds = hf.get("layer_types") or [
      "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]
  if len(kinds) != n or set(kinds) - {"full_attention", "sliding_attention"}:
    raise hf.refuse("layer_types", kinds, f"expected {n} of full_attention / sliding_attention")
  window = hf.get("sliding_window", 4096)
  return dict(layer_types=tuple(kinds), local_window=window if "sliding_attention" in kinds else None)


def _common_fields(hf: architectures.HFConfig) -> dict:
  """What Gemma 2 and 3 read alike (defaults: transformers' own, for configs that omit a key)."""
  attention_bias = bool(hf.get("attention_bias", False))
  # transformers' Gemma 2/3 MLP takes hidden_activation as named ("gelu" is the exact GELU here)
  activation = common.activation(hf, hf.get("hidden_activation") or "gelu_pytorch_tanh")
  fields = dict(llama.base_fields(hf), head_dim=hf.get("head_dim", 256), activation=activation,
                qkv_bias=attention_bias, out_bias=attention_bias, norm_scale_offset=1.0, embed_scale=True,
                post_norms=True, tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
                final_logit_softcap=hf.get("final_logit_softcapping"))
  fields["query_scale"] = float(hf.get("query_pre_attn_scalar", 256)) ** -0.5
  return fields


def _gemma2(hf: architectures.HFConfig) -> dict:
  fields = dict(_common_fields(hf), attn_logit_softcap=hf.get("attn_logit_softcapping", 50.0),
                **_layer_fields(hf, 2))
  if "final_logit_softcapping" not in hf:
    fields["final_logit_softcap"] = 30.0
  return fields


def _gemma3_rope(hf: architectures.HFConfig) -> dict:
  """RoPE of the global layers (its scaling included) and the base of the sliding ones.

  transformers 5 writes `rope_parameters` per layer kind; older configs say `rope_theta`,
  `rope_scaling` (global layers) and `rope_local_base_freq`.
  """
  rope = hf.get("rope_parameters")
  if rope and "full_attention" in rope:
    full, local = rope.get("full_attention") or {}, rope.get("sliding_attention") or {}
  else:
    full = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 1_000_000.0)}
    local = {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
  local_type = local.get("rope_type", local.get("type", "default"))
  if local_type != "default":
    raise hf.refuse("rope_parameters.sliding_attention.rope_type", local_type, "only default RoPE")
  fields = common.rope_fields(architectures.HFConfig({"rope_parameters": {"rope_theta": 1_000_000.0, **full}},
                                                f"{hf.where} rope_parameters.full_attention"))
  return dict(fields, rope_local_base=float(local.get("rope_theta", 10_000.0)))


def _gemma3(hf: architectures.HFConfig) -> dict:
  # transformers' Gemma 3 attention never passes attn_logit_softcapping on: inert.
  layer_fields = _layer_fields(hf, hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6)))
  fields = dict(_common_fields(hf), qk_norm=True, **layer_fields, **_gemma3_rope(hf))
  if "sliding_attention" not in layer_fields["layer_types"]:
    fields["rope_local_base"] = None
  return fields


def _query_pre_attn_scalar(cfg) -> float | int:
  scalar = cfg.head_width if cfg.query_scale is None else cfg.query_scale ** -2
  return int(round(scalar)) if abs(scalar - round(scalar)) < 1e-6 else scalar


def _common_to_hf(cfg) -> dict:
  out = dict(llama.base_to_hf(cfg), attention_bias=cfg.qkv_bias,
             query_pre_attn_scalar=_query_pre_attn_scalar(cfg),
             layer_types=[("sliding_attention" if local else "full_attention") for local in cfg.local_layers],
             sliding_window=cfg.local_window, final_logit_softcapping=cfg.final_logit_softcap)
  out["hidden_activation"] = out.pop("hidden_act")
  return out


def _gemma2_to_hf(cfg) -> dict:
  return dict(_common_to_hf(cfg), attn_logit_softcapping=cfg.attn_logit_softcap)


def _gemma3_to_hf(cfg) -> dict:
  out = _common_to_hf(cfg)
  out.pop("rope_theta")
  full = out.pop("rope_parameters")
  local = {"rope_type": "default", "rope_theta": cfg.rope_local_base or cfg.rope_base}
  out["rope_parameters"] = {"full_attention": full, "sliding_attention": local}
  return out


_TABLE = dict(layer_entries=layer_entries, top_entries=llama.top_entries, peft=True,
              refused={"use_bidirectional_attention": False})

architectures.register(architectures.Architecture(
    "Gemma2ForCausalLM", "gemma2", "Gemma2Config", _gemma2, _gemma2_to_hf, **_TABLE))
architectures.register(architectures.Architecture(
    "Gemma3ForCausalLM", "gemma3_text", "Gemma3TextConfig", _gemma3, _gemma3_to_hf,
    inert=frozenset({"attn_logit_softcapping"}), **_TABLE))
