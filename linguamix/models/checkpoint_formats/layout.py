"""Parameter-tree plumbing: flat paths, scanned <-> unscanned layers, checks, configs.

Paths are '/'-joined (`encoder/layers_0/attention/query/kernel`). A scanned stack is one
`layers` subtree whose arrays carry the layer index on `mt5.PARAM_SCAN_AXIS`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from linguamix.models.mt5 import PARAM_SCAN_AXIS, MT5Config

_LAYER = re.compile(r"^(encoder|decoder)/layers_(\d+)/(.+)$")
# T5X's scalable_t5 names the scanned stack after the stack (`encoder/encoder/...`); ours
# is `encoder/layers/...`. Both unscan.
_SCANNED = re.compile(r"^(encoder|decoder)/(?:layers|\1)/(.+)$")


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the model: names, shapes or vocabulary size."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, path + "/"))
    else:
      flat[path] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def unscan(flat: Mapping[str, Any], axis: int = PARAM_SCAN_AXIS) -> dict[str, Any]:
  """`{stack}/layers/x` [.., L, ..] -> `{stack}/layers_{i}/x`; other paths unchanged."""
  out = {}
  for path, value in flat.items():
    m = _SCANNED.match(path)
    if not m:
      out[path] = value
      continue
    value = np.asarray(value)
    for i in range(value.shape[axis]):
      out[f"{m[1]}/layers_{i}/{m[2]}"] = np.take(value, i, axis=axis)
  return out


def scan(flat: Mapping[str, Any], axis: int = PARAM_SCAN_AXIS) -> dict[str, Any]:
  """`{stack}/layers_{i}/x` -> `{stack}/layers/x` stacked on `axis`; other paths unchanged."""
  out, groups = {}, {}
  for path, value in flat.items():
    m = _LAYER.match(path)
    if m:
      groups.setdefault((m[1], m[3]), {})[int(m[2])] = value
    else:
      out[path] = value
  for (stack, rest), by_layer in groups.items():
    missing = sorted(set(range(max(by_layer) + 1)) - set(by_layer))
    if missing:
      raise CheckpointMismatchError(f"cannot stack {stack}/layers_*/{rest}: layers {missing} are missing")
    out[f"{stack}/layers/{rest}"] = np.stack([np.asarray(by_layer[i]) for i in sorted(by_layer)], axis=axis)
  return out


def to_layout(flat: Mapping[str, Any], scanned: bool) -> dict[str, Any]:
  """Converts a flat tree in either layout to the scanned or unscanned one."""
  return scan(unscan(flat)) if scanned else unscan(flat)


def check_against(flat: Mapping[str, Any], expected: Mapping[str, Any], source: str) -> None:
  """Raises CheckpointMismatchError naming every missing, unexpected or misshapen parameter."""
  problems = []
  vocab_path = "token_embedder/embedding"
  if vocab_path in flat and vocab_path in expected:
    got, want = tuple(np.shape(flat[vocab_path])), tuple(expected[vocab_path].shape)
    if got[:1] != want[:1]:
      problems.append(f"vocabulary size mismatch: {vocab_path} has {got[0]} rows in the checkpoint "
                      f"but the model expects vocab_size={want[0]} (shapes {got} vs {want})")
  for path in sorted(expected):
    if path not in flat:
      problems.append(f"missing parameter {path} (model expects shape {tuple(expected[path].shape)})")
    elif tuple(np.shape(flat[path])) != tuple(expected[path].shape) and path != vocab_path:
      problems.append(f"shape mismatch for {path}: checkpoint {tuple(np.shape(flat[path]))}, "
                      f"model {tuple(expected[path].shape)}")
  problems += [f"unexpected parameter {p} (shape {tuple(np.shape(flat[p]))}) not in the model"
               for p in sorted(set(flat) - set(expected))]
  if problems:
    raise CheckpointMismatchError(f"{source} does not match the model:\n  " + "\n  ".join(problems))


def infer_config(flat: Mapping[str, Any], **overrides) -> MT5Config:
  """The MT5Config whose parameter shapes these are (unscanned or scanned layout)."""
  flat = unscan(flat)
  # UMT5 keeps a relative-position table per layer; original T5 (T5.1.0) has a plain `mlp/wi`
  # and no `logits_dense` (T5X's logits_via_embedding, which divides the logits by sqrt(emb)).
  per_layer = "encoder/relpos_bias/rel_embedding" not in flat and "encoder/layers_0/relpos_bias/rel_embedding" in flat
  gated = "encoder/layers_0/mlp/wi/kernel" not in flat
  tied = "decoder/logits_dense/kernel" not in flat
  try:
    vocab, emb = np.shape(flat["token_embedder/embedding"])
    heads, buckets = np.shape(flat[f"encoder/{'layers_0/' if per_layer else ''}relpos_bias/rel_embedding"])
    inner = np.shape(flat["encoder/layers_0/attention/query/kernel"])[1]
    mlp = np.shape(flat[f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel"])[1]
  except KeyError as e:
    raise CheckpointMismatchError(f"not an mT5 parameter tree: no {e.args[0]}") from None
  count = lambda stack: len({m[2] for p in flat if (m := _LAYER.match(p)) and m[1] == stack})
  fields = dict(vocab_size=int(vocab), emb_dim=int(emb), num_heads=int(heads), head_dim=int(inner // heads),
                mlp_dim=int(mlp), num_encoder_layers=count("encoder"), num_decoder_layers=count("decoder"),
                relative_attention_num_buckets=int(buckets), relpos_per_layer=per_layer, mlp_gated=gated,
                activation="gelu_tanh" if gated else "relu", tie_embeddings=tied, scale_decoder_outputs=tied)
  fields.update(overrides)
  return MT5Config(**fields)
