"""Checkpoint tensors <-> parameter paths: the transforms every family table is written in.

An `Entry` maps one Hugging Face tensor to one or more of our parameter paths (a fused
q|k|v tensor maps to three), with the array transforms both ways. HF `Linear` weights
are [out, in]; our kernels are [in, *out] (GPT-2's `Conv1D` is already [in, out]).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable

import numpy as np
from safetensors import safe_open

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Entry:
  hf_name: str
  paths: tuple[Path, ...]  # our parameter paths (in a layer table: relative to the layer)
  to_ours: Callable[[np.ndarray], list[np.ndarray]]
  to_hf: Callable[[list[np.ndarray]], np.ndarray]
  # > 0: `hf_name` has one "{}", filled with 0 .. stacked - 1; those tensors (one per expert)
  # stack on a new first axis before `to_ours`, and `to_hf`'s result splits along it
  stacked: int = 0

  def hf_names(self) -> list[str]:
    return [self.hf_name.format(i) for i in range(self.stacked)] if self.stacked else [self.hf_name]


def linear(*shape):
  """HF Linear weight [out, in] <-> kernel [in, *shape]."""
  return (lambda w: [w.T.reshape(w.shape[1], *(shape or (w.shape[0],)))],
          lambda ks: ks[0].reshape(ks[0].shape[0], -1).T)


def same():
  return (lambda w: [w], lambda ks: ks[0])


def bias(*shape):
  return (lambda b: [b.reshape(*shape)], lambda ks: ks[0].reshape(-1))


def entry(hf_name: str, path: Path, transforms) -> Entry:
  return Entry(hf_name, (path,), *transforms)


def stacked(hf_template: str, n: int, path: Path, transforms) -> Entry:
  """`n` HF tensors named `hf_template.format(i)` <-> one parameter with a leading axis of n."""
  return Entry(hf_template, (path,), *transforms, stacked=n)


def out_kernel(n: int, h: int, d: int):
  """HF [D, N*H] Linear <-> attention output kernel [N, H, D]."""
  return (lambda w: [w.T.reshape(n, h, d)], lambda ks: ks[0].reshape(n * h, d).T)


def conv1d(*shape):
  """GPT-2 Conv1D weight [in, out] <-> kernel [in, *shape]."""
  return (lambda w: [w.reshape(w.shape[0], *shape)], lambda ks: ks[0].reshape(ks[0].shape[0], -1))


def norm_entries(hf_prefix: str, ours: str, cfg) -> list[Entry]:
  """A norm's scale, plus its bias for LayerNorm (`cfg.norm == "layer"`)."""
  entries = [entry(f"{hf_prefix}.weight", (ours, "scale"), same())]
  if cfg.norm == "layer":
    entries.append(entry(f"{hf_prefix}.bias", (ours, "bias"), same()))
  return entries


def lm_head(hf_name: str = "lm_head.weight") -> Entry:
  """The untied output projection [V, D] <-> `logits_dense` [D, V]."""
  return entry(hf_name, ("logits_dense",), (lambda w: [w.T], lambda ks: ks[0].T))


def read_safetensors(directory: str | pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of `model.safetensors` or of the shards listed in `model.safetensors.index.json`."""
  directory = pathlib.Path(directory)
  index = directory / "model.safetensors.index.json"
  if (directory / "model.safetensors").exists():
    files = ["model.safetensors"]
  elif index.exists():
    files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    missing = [f for f in files if not (directory / f).exists()]
    if missing:
      raise FileNotFoundError(f"{index}: shards listed in weight_map are missing: {', '.join(missing)}")
  else:
    raise FileNotFoundError(f"{directory}: neither model.safetensors nor model.safetensors.index.json")
  tensors = {}
  for f in files:
    with safe_open(str(directory / f), framework="numpy") as reader:
      for name in reader.keys():
        tensors[name] = reader.get_tensor(name)
  return tensors


def stack_layers(flat: dict[Path, Any], num_layers: int) -> dict[Path, Any]:
  """`layers_{i}/...` leaves -> one `layers/...` leaf stacked on axis 0 (nn.scan's layout)."""
  out = {k: v for k, v in flat.items() if not k[0].startswith("layers_")}
  for k in flat:
    if k[0] == "layers_0":
      out[("layers",) + k[1:]] = np.stack([flat[(f"layers_{i}",) + k[1:]] for i in range(num_layers)])
  return out


def unstack_layers(flat: dict[Path, Any]) -> dict[Path, Any]:
  out = {}
  for k, v in flat.items():
    if k[0] == "layers":
      for i in range(v.shape[0]):
        out[(f"layers_{i}",) + k[1:]] = v[i]
    else:
      out[k] = v
  return out
