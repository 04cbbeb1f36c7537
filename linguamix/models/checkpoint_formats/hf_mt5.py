"""Hugging Face mT5 / UMT5 / T5 `...ForConditionalGeneration` safetensors <-> linguamix mT5 parameters.

The architecture records (names, which flags each family reads) are in
`linguamix.models.hf.families.t5`; this module holds their shared tensor table, config
translation and I/O. Torch `Linear` weights are [out, in]; ours are [in, out]
(transposed). HF keeps the relative-position table in block 0 of each stack as
[buckets, heads] (UMT5: in every block); ours is per stack (UMT5: per layer) [heads,
buckets]. Sharded checkpoints (`model.safetensors.index.json`) load too.

The output head is tied as transformers 5 ties it on load (every T5 family forces
`tie_word_embeddings=True`): an absent `lm_head.weight`, or one equal to `shared.weight`,
means the head is the embedding; a different one is kept as an untied head.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

import numpy as np
from safetensors.numpy import save_file

from linguamix.models.checkpoint_formats import layout
from linguamix.models.hf import architectures, tensors
from linguamix.models.mt5 import MT5Config, param_shapes

_ATTN = {"query": "q", "key": "k", "value": "v", "out": "o"}
_EMBEDDING_SOURCES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
# (is_gated_act, dense_act_fn) -> (MT5Config.mlp_gated, .activation); gelu_pytorch_tanh is
# gelu_new's formula (published UMT5 configs name it).
_MLP = {(True, "gelu_new"): (True, "gelu_tanh"), (True, "gelu_pytorch_tanh"): (True, "gelu_tanh"),
        (False, "relu"): (False, "relu")}


def _name_map(cfg: MT5Config) -> list[tuple[str, str, bool]]:
  """(linguamix path, HF name, transpose) for every parameter."""
  names = [("token_embedder/embedding", "shared.weight", False),
           ("encoder/encoder_norm/scale", "encoder.final_layer_norm.weight", False),
           ("decoder/decoder_norm/scale", "decoder.final_layer_norm.weight", False)]
  if not cfg.tie_embeddings:
    names.append(("decoder/logits_dense/kernel", "lm_head.weight", True))
  relpos = "SelfAttention.relative_attention_bias.weight"
  blocks = {"encoder": [("attention", "SelfAttention", "pre_attention_layer_norm", 0)],
            "decoder": [("self_attention", "SelfAttention", "pre_self_attention_layer_norm", 0),
                        ("encoder_decoder_attention", "EncDecAttention", "pre_cross_attention_layer_norm", 1)]}
  mlp = ("wi_0", "wi_1", "wo") if cfg.mlp_gated else ("wi", "wo")
  for stack, num in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    if not cfg.relpos_per_layer:
      names.append((f"{stack}/relpos_bias/rel_embedding", f"{stack}.block.0.layer.0.{relpos}", True))
    for i in range(num):
      ours, hf = f"{stack}/layers_{i}", f"{stack}.block.{i}.layer"
      if cfg.relpos_per_layer:
        names.append((f"{ours}/relpos_bias/rel_embedding", f"{hf}.0.{relpos}", True))
      for attn, hf_attn, norm, j in blocks[stack]:
        names.append((f"{ours}/{norm}/scale", f"{hf}.{j}.layer_norm.weight", False))
        for proj, hf_proj in _ATTN.items():
          names.append((f"{ours}/{attn}/{proj}/kernel", f"{hf}.{j}.{hf_attn}.{hf_proj}.weight", True))
      j = len(blocks[stack])
      names.append((f"{ours}/pre_mlp_layer_norm/scale", f"{hf}.{j}.layer_norm.weight", False))
      for w in mlp:
        names.append((f"{ours}/mlp/{w}/kernel", f"{hf}.{j}.DenseReluDense.{w}.weight", True))
  return names


def fields_from_hf(hf: architectures.HFConfig, *, relpos_per_layer: bool, reads_output_scale: bool,
                   default_feed_forward_proj: str) -> dict:
  """MT5Config fields from a T5-family config.json, as transformers 5 reads it.

  `relpos_per_layer` (UMT5), `reads_output_scale` and the feed_forward_proj a config.json
  without one means are the family's (the record's):
  transformers 5's MT5 never rescales the decoder output; T5 and UMT5 read
  `scale_decoder_outputs`, defaulting to `tie_word_embeddings is not False`. The head's
  tying is not in config.json (`tie_head_like_transformers` decides it from the tensors).
  """
  proj = hf.get("feed_forward_proj", default_feed_forward_proj)
  parts = proj.split("-")
  # transformers derives these from feed_forward_proj, but a config.json that holds them wins.
  gated = hf.get("is_gated_act", parts[0] == "gated")
  act = hf.get("dense_act_fn", "gelu_new" if proj == "gated-gelu" else parts[-1])
  if (gated, act) not in _MLP:
    flag, value = (("dense_act_fn", act) if "dense_act_fn" in hf and (gated, parts[-1]) in _MLP
                   else ("feed_forward_proj", proj))
    raise hf.refuse(flag, value, "linguamix implements 'relu' and 'gated-gelu'")
  mlp_gated, activation = _MLP[(gated, act)]
  if not hf.get("is_encoder_decoder", True):
    raise hf.refuse("is_encoder_decoder", False, "these are encoder-decoders")
  eos = hf.get("eos_token_id", 1)
  if eos not in (1, [1]):
    raise hf.refuse("eos_token_id", eos, "linguamix decodes with the vocabulary's EOS 1")
  scale = False
  if reads_output_scale:
    scale = bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False))
  return dict(
      vocab_size=hf["vocab_size"], emb_dim=hf["d_model"], num_heads=hf["num_heads"],
      num_encoder_layers=hf["num_layers"], num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
      head_dim=hf["d_kv"], mlp_dim=hf["d_ff"], dropout_rate=hf.get("dropout_rate", 0.0),
      relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6), relpos_per_layer=relpos_per_layer,
      mlp_gated=mlp_gated, activation=activation, scale_decoder_outputs=scale)


def fields_to_hf(cfg: MT5Config, *, relpos_per_layer: bool, reads_output_scale: bool) -> dict:
  """config.json keys (pad 0, eos 1, start 0) of `cfg` for a family; ValueError if the family
  cannot compute what `cfg` does."""
  if relpos_per_layer != cfg.relpos_per_layer or (cfg.scale_decoder_outputs and not reads_output_scale):
    raise ValueError(f"relpos_per_layer={cfg.relpos_per_layer}, scale_decoder_outputs={cfg.scale_decoder_outputs}")
  scale = {"scale_decoder_outputs": cfg.scale_decoder_outputs} if reads_output_scale else {}
  return dict(
      vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
      num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
      relative_attention_num_buckets=cfg.relative_attention_num_buckets,
      relative_attention_max_distance=cfg.relative_attention_max_distance,
      dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_epsilon,
      feed_forward_proj="gated-gelu" if cfg.mlp_gated else "relu", tie_word_embeddings=cfg.tie_embeddings,
      is_encoder_decoder=True, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **scale)


def _encoder_decoders() -> list[architectures.Architecture]:
  architectures.names()  # loads the family tables
  return [a for a in architectures.ARCHITECTURES.values() if a.kind == "encoder_decoder" and a.converter == __name__]


def architecture_of(hf: Mapping, where: str = "config.json") -> architectures.Architecture:
  """The record of config.json's `architectures`, or (a bare config without it, as a
  transformers config's to_dict() gives) the one of its model_type."""
  if hf.get("architectures"):
    arch = architectures.lookup(hf, where)
    if arch not in _encoder_decoders():
      raise ValueError(f"{where}: architectures={hf['architectures']!r} is not a T5-family encoder-decoder")
    return arch
  for arch in _encoder_decoders():
    if arch.model_type == hf.get("model_type"):
      return arch
  raise ValueError(f"{where}: model_type={hf.get('model_type')!r} is not supported; expected one of "
                   f"{sorted(a.model_type for a in _encoder_decoders())}")


def architecture_for(cfg: MT5Config) -> architectures.Architecture:
  """The first family record (mT5, T5, UMT5) that computes what `cfg` does, for export."""
  for arch in _encoder_decoders():
    try:
      arch.config_to_hf(cfg)
      return arch
    except ValueError:
      continue
  raise ValueError(f"no Hugging Face T5 family computes relpos_per_layer={cfg.relpos_per_layer} with "
                   f"scale_decoder_outputs={cfg.scale_decoder_outputs}")


def config_from_hf(hf: Mapping, where: str = "config.json") -> MT5Config:
  """MT5Config from a Hugging Face mT5 / UMT5 / T5 config.json dict; any flag value that would
  change the numbers and is not implemented raises ValueError naming it."""
  return MT5Config(**architecture_of(hf, where).fields(hf, where))


def tie_head_like_transformers(state: Mapping[str, np.ndarray], cfg: MT5Config) -> tuple[dict, MT5Config]:
  """(state with `shared.weight`, cfg with `tie_embeddings`) as transformers 5 ties on load.

  transformers ties `lm_head`, `encoder/decoder.embed_tokens` and `shared`: a missing one
  takes a present one's values (the embedding from the first present of shared, encoder,
  decoder, lm_head); a present lm_head that differs from the embedding stays untied.
  """
  state = dict(state)
  if "shared.weight" not in state:
    for name in _EMBEDDING_SOURCES:
      if name in state:
        state["shared.weight"] = state[name]
        break
  head = state.get("lm_head.weight")
  tied = head is None or ("shared.weight" in state and np.array_equal(head, state["shared.weight"]))
  if tied:
    state.pop("lm_head.weight", None)
  return state, dataclasses.replace(cfg, tie_embeddings=tied)


def hf_config(cfg: MT5Config, arch: architectures.Architecture | None = None, **extra) -> dict:
  """config.json contents for the record's `...ForConditionalGeneration` (default: the first
  family that computes what `cfg` does)."""
  arch = arch or architecture_for(cfg)
  try:
    keys = arch.config_to_hf(cfg)
  except ValueError as e:
    raise ValueError(f"{arch.name} cannot hold this model ({e})") from None
  return dict(architectures=[arch.name], model_type=arch.model_type, **keys, **extra)


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
  path = os.path.join(directory, "config.json")
  with open(path) as f:
    hf_cfg = config_from_hf(json.load(f), where=path)
  state, hf_cfg = tie_head_like_transformers(tensors.read_safetensors(directory), hf_cfg)
  cfg = cfg or hf_cfg
  return params_from_hf(state, cfg, source=directory), cfg


def save(directory: str, flat: Mapping[str, np.ndarray], cfg: MT5Config, dtype: str = "float32",
         arch: architectures.Architecture | None = None) -> None:
  """Writes config.json and model.safetensors that the record's `...ForConditionalGeneration`
  loads (default: the first of mT5, T5, UMT5 that computes what `cfg` does)."""
  import jax.numpy as jnp  # ml_dtypes' bfloat16 is a numpy dtype safetensors writes

  os.makedirs(directory, exist_ok=True)
  config = hf_config(cfg, arch, torch_dtype=jnp.dtype(dtype).name)
  state = {k: v.astype(jnp.dtype(dtype)) for k, v in hf_from_params(flat, cfg).items()}
  save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f, indent=2)


# `linguamix convert` hooks (through the registry record in linguamix.models.hf.families.t5).


def import_hf(hf_dir: str, scan_layers: bool = False) -> tuple[dict, dict]:
  """(nested params, config.json dict) of an HF mT5 / UMT5 / T5 directory, scanned if asked."""
  flat, cfg = load(hf_dir)
  with open(os.path.join(hf_dir, "config.json")) as f:
    return layout.unflatten(layout.to_layout(flat, scan_layers)), json.load(f)


def export_hf(params: Mapping, hf_cfg: dict, out_dir: str, dtype: str = "float32") -> None:
  """Writes `params` (either layout) as the model that `hf_cfg` describes (tied if `params` has no
  `decoder/logits_dense`)."""
  flat = layout.unscan(layout.flatten(params))
  cfg = dataclasses.replace(config_from_hf(hf_cfg), tie_embeddings="decoder/logits_dense/kernel" not in flat)
  layout.check_against(flat, layout.flatten(_expected(cfg)), "params to export")
  save(out_dir, flat, cfg, dtype, architecture_of(hf_cfg))
