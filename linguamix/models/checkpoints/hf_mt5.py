"""Hugging Face `MT5ForConditionalGeneration` safetensors <-> linguamix mT5 parameters.

Torch `Linear` weights are [out, in]; ours are [in, out] (transposed). HF keeps the
relative-position table in block 0 of each stack as [buckets, heads]; ours is per stack
[heads, buckets]. Sharded checkpoints (`model.safetensors.index.json`) load too.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np
from safetensors.numpy import save_file

from linguamix.models.checkpoints import layout
from linguamix.models.hf import tensors
from linguamix.models.hf.families import t5
from linguamix.models.mt5 import MT5Config, param_shapes

_ATTN = {"query": "q", "key": "k", "value": "v", "out": "o"}


def _name_map(cfg: MT5Config) -> list[tuple[str, str, bool]]:
  """(linguamix path, HF name, transpose) for every parameter."""
  names = [("token_embedder/embedding", "shared.weight", False),
           ("decoder/logits_dense/kernel", "lm_head.weight", True),
           ("encoder/encoder_norm/scale", "encoder.final_layer_norm.weight", False),
           ("decoder/decoder_norm/scale", "decoder.final_layer_norm.weight", False)]
  for stack in ("encoder", "decoder"):
    names.append((f"{stack}/relpos_bias/rel_embedding",
                  f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True))
  blocks = {"encoder": [("attention", "SelfAttention", "pre_attention_layer_norm", 0)],
            "decoder": [("self_attention", "SelfAttention", "pre_self_attention_layer_norm", 0),
                        ("encoder_decoder_attention", "EncDecAttention", "pre_cross_attention_layer_norm", 1)]}
  for stack, num in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    for i in range(num):
      ours, hf = f"{stack}/layers_{i}", f"{stack}.block.{i}.layer"
      for attn, hf_attn, norm, j in blocks[stack]:
        names.append((f"{ours}/{norm}/scale", f"{hf}.{j}.layer_norm.weight", False))
        for proj, hf_proj in _ATTN.items():
          names.append((f"{ours}/{attn}/{proj}/kernel", f"{hf}.{j}.{hf_attn}.{hf_proj}.weight", True))
      j = len(blocks[stack])
      names.append((f"{ours}/pre_mlp_layer_norm/scale", f"{hf}.{j}.layer_norm.weight", False))
      for w in ("wi_0", "wi_1", "wo"):
        names.append((f"{ours}/mlp/{w}/kernel", f"{hf}.{j}.DenseReluDense.{w}.weight", True))
  return names


def config_from_hf(hf: Mapping) -> MT5Config:
  """MT5Config from a Hugging Face config.json dict (mT5 / T5 v1.1 gated-GELU only).

  `tie_word_embeddings` is not trusted (transformers 5 writes true for every mT5); the
  untied head must be present as `lm_head.weight`.
  """
  if hf.get("model_type") not in ("mt5", "t5"):
    raise ValueError(f"config.json model_type={hf.get('model_type')!r}; expected 'mt5' or 't5'")
  proj = hf.get("feed_forward_proj", "relu")
  if proj != "gated-gelu":
    raise ValueError(f"config.json feed_forward_proj={proj!r}; linguamix mT5 implements 'gated-gelu' only")
  return MT5Config(
      vocab_size=hf["vocab_size"], emb_dim=hf["d_model"], num_heads=hf["num_heads"],
      num_encoder_layers=hf["num_layers"], num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
      head_dim=hf["d_kv"], mlp_dim=hf["d_ff"], dropout_rate=hf.get("dropout_rate", 0.0),
      relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6))


def hf_config(cfg: MT5Config, **extra) -> dict:
  """config.json contents for `MT5ForConditionalGeneration` (pad 0, eos 1, start 0)."""
  return dict(
      architectures=[t5.MT5.name], model_type=t5.MT5.model_type, vocab_size=cfg.vocab_size,
      d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim, num_layers=cfg.num_encoder_layers,
      num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
      relative_attention_num_buckets=cfg.relative_attention_num_buckets,
      relative_attention_max_distance=cfg.relative_attention_max_distance,
      dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_epsilon,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, is_encoder_decoder=True,
      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **extra)


def params_from_hf(state: Mapping[str, np.ndarray], cfg: MT5Config, source: str = "checkpoint") -> dict:
  """Unscanned flat linguamix params from an HF state dict; checked against `cfg`."""
  expected = layout.flatten(_expected(cfg))
  flat, problems = {}, []
  for ours, hf, transpose in _name_map(cfg):
    if hf not in state:
      want = tuple(expected[ours].shape)
      problems.append(f"missing tensor {hf} (for {ours}, shape {want[::-1] if transpose else want})")
      continue
    value = np.asarray(state[hf], np.float32)
    flat[ours] = value.T if transpose else value
  if problems:
    raise layout.CheckpointMismatchError(f"{source} does not match the model:\n  " + "\n  ".join(problems))
  layout.check_against(flat, expected, source)
  return flat


def hf_from_params(flat: Mapping[str, np.ndarray], cfg: MT5Config) -> dict[str, np.ndarray]:
  flat = layout.unscan(flat)
  state = {hf: np.ascontiguousarray(np.asarray(flat[ours], np.float32).T if transpose else flat[ours])
           for ours, hf, transpose in _name_map(cfg)}
  # transformers ties the stacks' embeddings to `shared`; write them for loaders that don't.
  state["encoder.embed_tokens.weight"] = state["decoder.embed_tokens.weight"] = state["shared.weight"]
  return {k: np.ascontiguousarray(v) for k, v in state.items()}


def _expected(cfg: MT5Config) -> dict:
  return param_shapes(MT5Config(**{**cfg.__dict__, "scan_layers": False}))


def load(directory: str, cfg: MT5Config | None = None) -> tuple[dict, MT5Config]:
  """(flat unscanned params, config) from an HF checkpoint directory; `cfg` defaults to
  its config.json, and a given `cfg` must match the checkpoint."""
  with open(os.path.join(directory, "config.json")) as f:
    hf_cfg = config_from_hf(json.load(f))
  cfg = cfg or hf_cfg
  return params_from_hf(tensors.read_safetensors(directory), cfg, source=directory), cfg


def save(directory: str, flat: Mapping[str, np.ndarray], cfg: MT5Config, dtype: str = "float32") -> None:
  """Writes config.json and model.safetensors that `MT5ForConditionalGeneration` loads."""
  import jax.numpy as jnp  # ml_dtypes' bfloat16 is a numpy dtype safetensors writes

  os.makedirs(directory, exist_ok=True)
  tensors = {k: v.astype(jnp.dtype(dtype)) for k, v in hf_from_params(flat, cfg).items()}
  save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(hf_config(cfg, torch_dtype=jnp.dtype(dtype).name), f, indent=2)


# `linguamix convert` hooks (through the registry record in linguamix.models.hf.families.t5).


def import_hf(hf_dir: str, scan_layers: bool = False) -> tuple[dict, dict]:
  """(nested params, config.json dict) of an HF mT5 directory, scanned if asked."""
  flat, cfg = load(hf_dir)
  with open(os.path.join(hf_dir, "config.json")) as f:
    return layout.unflatten(layout.to_layout(flat, scan_layers)), json.load(f)


def export_hf(params: Mapping, hf_cfg: dict, out_dir: str, dtype: str = "float32") -> None:
  """Writes `params` (either layout) as the mT5 that `hf_cfg` describes."""
  flat = layout.unscan(layout.flatten(params))
  cfg = config_from_hf(hf_cfg)
  layout.check_against(flat, layout.flatten(_expected(cfg)), "params to export")
  save(out_dir, flat, cfg, dtype)
