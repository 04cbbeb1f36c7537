"""Config translation shared by several families: RoPE parameters and activations."""

from __future__ import annotations

from linguamix.models.hf.architectures import HFConfig

# HF activation names -> DecoderConfig.activation
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "relu": "relu",
               "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
# DecoderConfig.activation -> the HF name written on export
HF_ACTIVATION = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "relu": "relu"}


def activation(hf: HFConfig, name: str) -> str:
  if name not in ACTIVATIONS:
    raise hf.refuse("activation", name, f"supported: {', '.join(sorted(ACTIVATIONS))}")
  return ACTIVATIONS[name]


def rope_fields(hf: HFConfig, partial_rotary: float | None = None, theta: float = 10000.0) -> dict:
  """DecoderConfig RoPE fields from `rope_parameters` (transformers 5) or legacy `rope_scaling`/`rope_theta`.

  `partial_rotary`: the family rotates part of each head (`rope_fraction`), by this
  fraction where config.json names none; None: only whole heads (other factors refused).
  `theta`: the base where config.json names none.
  """
  rope = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
  theta = rope.get("rope_theta", hf.get("rope_theta", theta))
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  fraction = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", partial_rotary or 1.0))
  if partial_rotary is None and fraction != 1.0:
    raise hf.refuse("partial_rotary_factor", fraction)
  fields = {"rope_base": float(theta), "rope_type": rope_type, "rope_fraction": float(fraction)}
  if rope_type in ("linear", "llama3"):
    fields["rope_factor"] = float(rope["factor"])
  if rope_type == "llama3":
    fields.update(rope_low_freq_factor=float(rope["low_freq_factor"]),
                  rope_high_freq_factor=float(rope["high_freq_factor"]),
                  rope_original_max_positions=int(rope["original_max_position_embeddings"]))
  elif rope_type not in ("default", "linear"):
    raise hf.refuse("rope_type", rope_type, "supported: default, linear, llama3")
  return fields


def rope_to_hf(cfg) -> dict:
  rope = {"rope_type": cfg.rope_type, "rope_theta": cfg.rope_base}
  if cfg.rope_fraction != 1.0:
    rope["partial_rotary_factor"] = cfg.rope_fraction
  if cfg.rope_type in ("linear", "llama3"):
    rope["factor"] = cfg.rope_factor
  if cfg.rope_type == "llama3":
    rope.update(low_freq_factor=cfg.rope_low_freq_factor, high_freq_factor=cfg.rope_high_freq_factor,
                original_max_position_embeddings=cfg.rope_original_max_positions)
  return {"rope_parameters": rope, "rope_theta": cfg.rope_base}
