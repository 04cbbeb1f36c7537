"""LoRA adapters of a decoder checkpoint -> a PEFT adapter (adapter_config.json + adapter_model.safetensors).

PEFT names an adapter by the HF module it wraps; the record's tensor table gives that
name for each of our projections. Only architectures whose adapted projections are
separate HF modules (`Architecture.peft`) can be written: a LoRA on BLOOM's or GPT-2's
fused q|k|v module is not a LoRA per projection.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import flax
import flax.linen as nn
import numpy as np
from safetensors.numpy import save_file

from linguamix.models import lora
from linguamix.models.hf import decoder_io, tensors
from linguamix.models.hf.architectures import Architecture


def write_adapter(directory: str | pathlib.Path, arch: Architecture, cfg, params: dict,
                  base_model_name_or_path: str = "") -> None:
  """Writes `params`' adapters (cfg.lora says rank, alpha, dropout) for `arch`."""
  if not arch.peft:
    raise ValueError(f"PEFT export is not possible for {arch.name}: its q/k/v projections are one "
                     "fused HF module, which a LoRA per projection cannot be written as")
  adapters, _ = lora.split_params(nn.meta.unbox(params))
  flat = tensors.unstack_layers(flax.traverse_util.flatten_dict(adapters))
  hf_module = {e.paths[0][:-1]: e.hf_name.rsplit(".", 1)[0]
               for e in decoder_io.entries(arch, dataclasses.replace(cfg, scan_layers=False))
               if len(e.paths) == 1 and e.paths[0][-1] == "kernel"}
  rank = cfg.lora.rank
  out, modules = {}, []
  for key in sorted(k for k in flat if k[-1] == "a"):
    module = key[:-2]  # drop "lora", "a"
    name = hf_module[module]
    modules.append(name)
    a, b = np.asarray(flat[key], np.float32), np.asarray(flat[key[:-1] + ("b",)], np.float32)
    out[f"base_model.model.{name}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, rank).T)
    out[f"base_model.model.{name}.lora_B.weight"] = np.ascontiguousarray(b.reshape(rank, -1).T)
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  save_file(out, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
  config = {
      "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": cfg.lora.alpha,
      "lora_dropout": cfg.lora.dropout, "target_modules": sorted(modules), "bias": "none",
      "fan_in_fan_out": False, "use_rslora": False, "inference_mode": True,
      "base_model_name_or_path": base_model_name_or_path,
  }
  (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def export_peft(arch: Architecture, params: dict, hf_config: dict, out_dir: str, lora_alpha: float,
                lora_dropout: float = 0.0) -> None:
  """`linguamix convert export-peft`: the adapters in a training checkpoint's params."""
  adapters = decoder_io.adapter_config(params, lora_alpha, lora_dropout)
  if adapters is None:
    raise ValueError("the checkpoint holds no LoRA adapters")
  _, cfg = decoder_io.config_from_hf(hf_config, "config.json", scan_layers=decoder_io.is_scanned(params),
                                     lora=adapters)
  write_adapter(out_dir, arch, cfg, params, hf_config.get("_name_or_path", ""))
