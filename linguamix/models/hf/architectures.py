"""One record per Hugging Face architecture; import, export, PEFT export and `convert --help` read it.

A record holds everything architecture-specific: its names, how config.json translates
to our model config and back, which config flags it refuses (values that would change
the numbers and are not implemented) or ignores (ids, dropout, initialisation, caching),
and its tensor table. The code that reads and writes checkpoints (`decoder_io`,
`peft`, `checkpoints.hf_mt5`) compares no architecture names.

This module and the family tables import no JAX, so `linguamix convert --help` stays instant.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable, Iterator, Mapping

# Flags every transformers config has that do not change a model's numbers: bookkeeping,
# token ids, initialisation, caching, training-only dropout (our gins set dropout).
COMMON_INERT = frozenset({
    "transformers_version", "architectures", "model_type", "output_hidden_states", "return_dict",
    "dtype", "torch_dtype", "chunk_size_feed_forward", "is_encoder_decoder", "id2label",
    "label2id", "problem_type", "use_cache", "initializer_range", "initializer_factor",
    "pad_token_id", "bos_token_id", "eos_token_id", "is_decoder", "classifier_dropout",
    "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "pretraining_tp",  # transformers 5 no longer splits the matmuls
})


class HFConfig(Mapping):
  """config.json as a mapping that records which keys were read (and where it came from)."""

  def __init__(self, data: Mapping, where: str = "config.json"):
    self._data = dict(data)
    self.where = where
    self.read: set[str] = set()

  def __getitem__(self, key):
    self.read.add(key)
    if key not in self._data:
      raise ValueError(f"{self.where}: {key} is missing")
    return self._data[key]

  def get(self, key, default=None):
    self.read.add(key)
    return self._data.get(key, default)

  def __contains__(self, key):
    self.read.add(key)
    return key in self._data

  def __iter__(self) -> Iterator[str]:
    return iter(self._data)

  def __len__(self) -> int:
    return len(self._data)

  def refuse(self, flag: str, value: Any, why: str = "") -> ValueError:
    return ValueError(f"{self.where}: {flag}={value!r} is not supported{': ' + why if why else ''}")


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A decoder-only architecture (the base class: decoder_io reads and writes it)."""

  name: str  # config.json architectures[0]
  model_type: str  # config.json model_type
  config_class: str  # transformers config class: a test checks its every flag is classified here
  config_from_hf: Callable[[HFConfig], dict]  # -> model config fields
  config_to_hf: Callable[[Any], dict] | None = None  # model config -> config.json keys
  layer_entries: Callable[[Any], list] | None = None  # one layer's tensors, relative names
  top_entries: Callable[[Any], list] | None = None  # embeddings, final norm (lm_head: when untied)
  base_prefix: str = "model."  # base-model checkpoints (LlamaModel, GPT2Model) omit it
  layer_prefix: str = "layers"
  lm_head: str = "lm_head.weight"  # the untied output matrix (GPT-NeoX: embed_out.weight), no prefix
  refused: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # flag -> only value implemented
  inert: frozenset[str] = frozenset()  # flags beyond COMMON_INERT that change no numbers
  peft: bool = False  # q/k/v and MLP projections are separate HF modules
  ignored: str = r"(\.attn\.(masked_)?bias$|rotary_emb\.inv_freq$)"  # buffers that hold no parameters

  kind = "decoder"

  def fields(self, hf: Mapping, where: str = "config.json") -> dict:
    """Model config fields from config.json, refusing every unimplemented flag value by name."""
    hf = hf if isinstance(hf, HFConfig) else HFConfig(hf, where)
    for flag, implemented in self.refused.items():
      value = hf._data.get(flag)
      if value is not None and value != implemented:
        raise hf.refuse(flag, value, f"linguamix's {self.name} implements {flag}={implemented!r} only")
    return self.config_from_hf(hf)

  def is_ignored(self, tensor_name: str) -> bool:
    return re.search(self.ignored, tensor_name) is not None

  # `linguamix convert` hooks; the decoder implementations live in decoder_io (JAX, imported late).
  def import_hf(self, hf_dir: str, scan_layers: bool = False) -> tuple[dict, dict]:
    return importlib.import_module("linguamix.models.hf.decoder_io").import_hf(self, hf_dir, scan_layers)

  def export_hf(self, params: dict, hf_config: dict, out_dir: str, dtype: str = "float32",
                lora_alpha: float | None = None) -> None:
    importlib.import_module("linguamix.models.hf.decoder_io").export_hf(
        self, params, hf_config, out_dir, dtype, lora_alpha)

  def export_peft(self, params: dict, hf_config: dict, out_dir: str, lora_alpha: float,
                  lora_dropout: float = 0.0) -> None:
    importlib.import_module("linguamix.models.hf.peft").export_peft(
        self, params, hf_config, out_dir, lora_alpha, lora_dropout)


@dataclasses.dataclass(frozen=True)
class EncoderDecoderArchitecture(Architecture):
  """An encoder-decoder architecture: `converter` (a module) reads and writes its checkpoints."""

  converter: str = ""  # module with import_hf(hf_dir, scan_layers) and export_hf(params, hf_config, out_dir, dtype)

  kind = "encoder_decoder"

  def import_hf(self, hf_dir, scan_layers=False):
    return importlib.import_module(self.converter).import_hf(hf_dir, scan_layers=scan_layers)

  def export_hf(self, params, hf_config, out_dir, dtype="float32", lora_alpha=None):
    if lora_alpha is not None:
      raise ValueError(f"{self.name} checkpoints hold no LoRA adapters (--lora_alpha)")
    importlib.import_module(self.converter).export_hf(params, hf_config, out_dir, dtype)

  def export_peft(self, *args, **kwargs):
    raise ValueError(f"{self.name}: LoRA adapters and PEFT export are for decoder-only models")


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
  if arch.name in ARCHITECTURES:
    raise ValueError(f"architecture {arch.name} is registered twice")
  ARCHITECTURES[arch.name] = arch
  return arch


def _load_families() -> None:
  importlib.import_module("linguamix.models.hf.families")


def names() -> list[str]:
  _load_families()
  return sorted(ARCHITECTURES)


def get(name: str) -> Architecture:
  _load_families()
  return ARCHITECTURES[name]


def lookup(hf_config: Mapping, where: str = "config.json") -> Architecture:
  """The record for config.json's `architectures[0]`; one error line if there is none."""
  _load_families()
  archs = hf_config.get("architectures") or []
  if not archs or archs[0] not in ARCHITECTURES:
    raise ValueError(f"{where}: architectures={list(archs)!r} is not supported; "
                     f"supported: {', '.join(sorted(ARCHITECTURES))}")
  return ARCHITECTURES[archs[0]]
