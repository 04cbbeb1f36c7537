"""Legacy T5X checkpoints (VERSION 3): the format of the public mT5 checkpoints.

`checkpoint_<step>/checkpoint` is a msgpack file (flax.serialization) holding
`{'version', 'optimizer': {'target': params, 'state': {'step', 'param_states'}}}`. Large
arrays are TensorStore zarr arrays (gzip) in sub-directories named by the dotted path
(`target.encoder.layers_0.attention.query.kernel`); the msgpack holds the TensorStore
spec in their place, its kvstore path relative to the checkpoint directory (its GCS
bucket a dummy). We read the spec's path under the real directory, local or gs://.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import tensorstore as ts
from flax import serialization

from linguamix.models.checkpoint_formats import layout
from linguamix.models.mt5 import MT5Config, param_shapes


def _read_bytes(path: str) -> bytes:
  if path.startswith("gs://"):
    import tensorflow as tf  # gfile reads gs:// without a GCS client of our own
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  with open(path, "rb") as f:
    return f.read()


def _is_spec(value: Any) -> bool:
  return isinstance(value, Mapping) and {"driver", "kvstore", "metadata"} <= set(value)


def _kvstore(directory: str, rel_path: str) -> dict:
  if directory.startswith("gs://"):
    bucket, _, prefix = directory[len("gs://"):].partition("/")
    return {"driver": "gcs", "bucket": bucket, "path": os.path.join(prefix, rel_path)}
  return {"driver": "file", "path": os.path.join(directory, rel_path)}


def _read_array(directory: str, name: str, spec: Mapping) -> np.ndarray:
  spec = dict(spec)
  rel = spec["kvstore"].get("path")
  if not rel:
    raise layout.CheckpointMismatchError(f"{directory}: the TensorStore spec of {name} has no kvstore path")
  spec["kvstore"] = _kvstore(directory, rel)
  try:
    array = ts.open(spec, open=True).result().read().result()
  except Exception as e:  # noqa: BLE001 - any TensorStore failure is this parameter's problem
    raise layout.CheckpointMismatchError(
        f"{directory}: cannot read array {name} from {spec['kvstore']['path']}: {e}") from e
  shape = tuple(spec["metadata"].get("shape", array.shape))
  if tuple(array.shape) != shape:
    raise layout.CheckpointMismatchError(f"{directory}: array {name} has shape {array.shape}, spec says {shape}")
  return np.asarray(array, np.float32)


def read_params(checkpoint_dir: str) -> dict[str, np.ndarray]:
  """The flat `optimizer.target` params of a legacy T5X checkpoint, as float32 numpy."""
  checkpoint_dir = checkpoint_dir.rstrip("/")
  msgpack_path = os.path.join(checkpoint_dir, "checkpoint")
  try:
    contents = serialization.msgpack_restore(_read_bytes(msgpack_path))
  except FileNotFoundError:
    raise FileNotFoundError(f"{msgpack_path} does not exist: expected a legacy T5X checkpoint_<step> "
                            "directory") from None
  except Exception as e:  # noqa: BLE001 - msgpack raises several types on corrupt input
    raise layout.CheckpointMismatchError(f"{msgpack_path} is not a T5X msgpack checkpoint: {e}") from e
  try:
    target = contents["optimizer"]["target"]
  except (KeyError, TypeError):
    raise layout.CheckpointMismatchError(f"{msgpack_path} has no optimizer/target parameter tree") from None
  flat = {}
  for path, value in _flatten_with_specs(target).items():
    flat[path] = _read_array(checkpoint_dir, path, value) if _is_spec(value) else np.asarray(value, np.float32)
  return flat


def _flatten_with_specs(tree: Mapping, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping) and not _is_spec(value):
      flat.update(_flatten_with_specs(value, f"{prefix}{key}/"))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def load(checkpoint_dir: str, config: MT5Config | None = None) -> tuple[dict, MT5Config]:
  """(flat params in `config`'s layout, config); the config is inferred from the shapes
  when not given, and a given one must match every name and shape."""
  flat = read_params(checkpoint_dir)
  config = config or layout.infer_config(flat)
  flat = layout.to_layout(flat, config.scan_layers)
  layout.check_against(flat, layout.flatten(param_shapes(config)), checkpoint_dir)
  return flat, config


def import_t5x(checkpoint_dir: str, scan_layers: bool = False) -> tuple[dict, dict]:
  """`linguamix convert import-t5x` hook: (nested params, HF-style config.json dict)."""
  from linguamix.models.checkpoint_formats import hf_mt5

  flat, config = load(checkpoint_dir)
  return layout.unflatten(layout.to_layout(flat, scan_layers)), hf_mt5.hf_config(config)
