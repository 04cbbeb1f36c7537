"""Orbax checkpoints: async saves of the train state (params, optimizer state, step)
plus a JSON `meta` item (input-pipeline position, seed, model fingerprint, a checksum
per array); keep the last N and the best N by a metric; restore the latest complete
one; load params only from an initial checkpoint, with a clear error when its tree does
not fit the model or an array cannot be read.

Corruption: OCDBT checks its b-tree nodes with CRC-32C, but array chunks carry no
checksum, so flipped bytes there restore silently as wrong numbers. The per-array
checksums in `meta` (computed on device at save, compared after restore) catch those.
A checkpoint that fails either check is moved to `MODEL_DIR/corrupt/` (kept for
inspection) and the previous one is restored, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from typing import Any

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from linguamix import errors

CORRUPT_DIR = "corrupt"


class CorruptCheckpoint(errors.UserError):
  """A checkpoint whose arrays cannot be read or do not match their checksums."""


def _bits(x: jax.Array) -> jax.Array:
  """The array's bit patterns as uint32 (one per element; 8-byte types: two)."""
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)


def _mix(x: jax.Array) -> jax.Array:
  """A bijective 32-bit integer hash (lowbias32): every input bit moves every output bit."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


@jax.jit
def _checksums(tree):
  def one(x):
    u = _bits(x)
    # Each element hashed with its position (elementwise iotas, no reshape of a sharded
    # array), then summed (uint32 wraps): a flipped bit, a swapped chunk or a sign
    # change of the whole array changes the sum.
    pos = jnp.zeros(u.shape, jnp.uint32)
    for axis in range(u.ndim):
      pos = _mix(pos + jax.lax.broadcasted_iota(jnp.uint32, u.shape, axis))
    return jnp.sum(_mix(u ^ _mix(pos + jnp.uint32(0x9E3779B9))), dtype=jnp.uint32)
  return jax.tree.map(one, tree)


def checksums(tree: Any) -> dict[str, int]:
  """{array path: uint32 checksum of its contents} (computed on device)."""
  sums = jax.device_get(_checksums(tree))
  return {jax.tree_util.keystr(p): int(v) for p, v in jax.tree_util.tree_leaves_with_path(sums)}


def verify(tree: Any, expected: dict[str, int] | None, where: str, prefix: str = "") -> None:
  """Raises CorruptCheckpoint naming the first array whose contents changed since saved."""
  if not expected:
    return  # written before checksums were recorded, or not by the trainer
  for name, value in checksums(tree).items():
    want = expected.get(prefix + name)
    if want is not None and want != value:
      raise CorruptCheckpoint(f"{where}: array {prefix + name} does not match its checksum "
                              f"(saved {want}, read {value}): the checkpoint is corrupt")


# What TensorStore says when bytes on disk are bad or gone (vs. a tree that does not
# match, e.g. another optimizer: that is the user's configuration, not corruption).
_READ_FAILURES = ("DATA_LOSS", "checksum", "Error reading", "Error opening", "OCDBT",
                  "tensorstore", "NOT_FOUND", "OUT_OF_RANGE")


def is_read_failure(e: BaseException) -> bool:
  return isinstance(e, (OSError, json.JSONDecodeError)) or (
      isinstance(e, ValueError) and any(m in str(e) for m in _READ_FAILURES))


def _read_error(e: Exception) -> str:
  """TensorStore's message without its JSON spec, naming the array when it says which."""
  text = str(e).split(" [tensorstore_spec=")[0].strip()
  m = re.search(r'Error reading "([^"]+?)/[^"/]*" in OCDBT', text)
  return (f"array {m.group(1)} is unreadable: " if m else "") + text


def check_directory(path: str, what: str) -> None:
  """A path that is, or lies under, a file cannot hold checkpoints."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.UserError(f"{what} {path} is a file, not a directory")
  parent = os.path.dirname(path)
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if parent and not os.path.isdir(parent):
    raise errors.UserError(f"{what} {path} lies under {parent}, which is a file")


def fingerprint(abstract_params: Any) -> str:
  """Hash of the parameter tree's paths, shapes and dtypes: which model wrote a dir."""
  items = sorted((jax.tree_util.keystr(p), tuple(x.shape), str(x.dtype))
                 for p, x in jax.tree_util.tree_leaves_with_path(abstract_params))
  return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


class Checkpointer:
  """MODEL_DIR's checkpoints, `checkpoint_<step>/{state,meta}`."""

  def __init__(self, model_dir: str, *, keep: int = 3, best_metric: str | None = None,
               best_mode: str = "min", keep_best: int = 1):
    self.directory = os.path.abspath(model_dir)
    check_directory(self.directory, "MODEL_DIR")
    keep_policy = [policies.LatestN(n=keep)]
    if best_metric:
      keep_policy.append(policies.BestN(
          get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
          n=keep_best, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        step_prefix="checkpoint", enable_async_checkpointing=True, create=True,
        preservation_policy=policies.AnyPreservationPolicy(keep_policy))
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "meta"), options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def path(self, step: int) -> str:
    return os.path.join(self.directory, f"checkpoint_{step}")

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
    meta = {**meta, "checksums": checksums(state)}
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """The state and meta of `step`; CorruptCheckpoint if unreadable or changed."""
    where = self.path(step)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except (ValueError, OSError) as e:  # TensorStore read errors are ValueErrors
      if not is_read_failure(e):
        raise
      raise CorruptCheckpoint(f"{where}: {_read_error(e)}") from e
    verify(out["state"], out["meta"].get("checksums"), where)
    return out["state"], out["meta"]

  def latest_meta(self) -> tuple[int | None, dict | None]:
    """(step, meta) of the newest checkpoint whose meta reads; unreadable ones moved aside."""
    while (step := self.latest_step()) is not None:
      try:
        return step, self.read_meta(step)
      except (ValueError, OSError) as e:
        if not is_read_failure(e):
          raise
        self.set_aside(step, f"{self.path(step)}: its meta cannot be read ({_read_error(e)})")
    return None, None

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict]:
    """(step, state, meta) of the newest complete checkpoint: a corrupt one is moved to
    MODEL_DIR/corrupt/ with a warning and the one before it is tried."""
    set_aside = []
    while (step := self.latest_step()) is not None:
      try:
        state, meta = self.restore(step, abstract_state)
        return step, state, meta
      except CorruptCheckpoint as e:
        set_aside.append(self.set_aside(step, str(e)))
    raise CorruptCheckpoint(
        f"MODEL_DIR {self.directory} has no complete checkpoint left (moved aside: "
        f"{', '.join(set_aside)}); the next run starts from the initial checkpoint")

  def set_aside(self, step: int, reason: str) -> str:
    """Moves checkpoint_<step> to MODEL_DIR/corrupt/ (never deletes); returns the new path."""
    src = self.path(step)
    dst = os.path.join(self.directory, CORRUPT_DIR, os.path.basename(src))
    n = 1
    while os.path.exists(dst):
      n += 1
      dst = os.path.join(self.directory, CORRUPT_DIR, f"{os.path.basename(src)}.{n}")
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.move(src, dst)
      print(f"warning: {reason}; moved it to {dst} and using the previous checkpoint",
            file=sys.stderr)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"set_aside_{step}")
    self.manager.reload()
    return dst

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def latest_checkpoint(path: str) -> str:
  """`path` itself, or for a MODEL_DIR (no `state/`, some `checkpoint_<step>/`) its latest
  checkpoint, as T5X's restore mode 'latest' reads a directory."""
  if os.path.isdir(os.path.join(path, "state")) or not os.path.isdir(path):
    return path
  steps = [int(n.split("_", 1)[1]) for n in os.listdir(path)
           if n.startswith("checkpoint_") and n.split("_", 1)[1].isdigit()
           and os.path.isdir(os.path.join(path, n, "state"))]
  return os.path.join(path, f"checkpoint_{max(steps)}") if steps else path


def _tree_shapes(tree: Any) -> dict[str, tuple]:
  return {jax.tree_util.keystr(p): tuple(getattr(x, "shape", ()))
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _tree_shapes_values(tree: Any) -> dict[str, Any]:
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _params_subtree(metadata: Any) -> tuple[Any, tuple[str, ...]]:
  """Where the params sit in a checkpoint: our `state/params`, a bare params tree, or
  under `params` / `target` (T5X's optimizer target)."""
  path: tuple[str, ...] = ()
  tree = metadata
  for key in ("state", "params", "target"):
    if isinstance(tree, dict) and key in tree:
      tree, path = tree[key], path + (key,)
  return tree, path


def _saved_checksums(path: str) -> dict[str, int] | None:
  """The checksums a linguamix training checkpoint recorded in its meta, if any."""
  meta = os.path.join(path, "meta", "metadata")
  try:
    with open(meta, encoding="utf-8") as f:
      return json.load(f).get("checksums")
  except (OSError, ValueError):
    return None


def load_params(path: str, abstract_params: Any, shardings: Any,
                missing_ok: Any = None) -> Any:
  """Params only, from an Orbax checkpoint at `path` (a `checkpoint_<step>` dir of a
  linguamix run, or any Orbax params tree, e.g. what `linguamix convert` writes).

  `missing_ok` (a tree of bools like the params, e.g. the LoRA trainable mask) names
  leaves the checkpoint may lack; they come back as None, for the caller to initialise.
  """
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise ValueError(f"INITIAL_CHECKPOINT_PATH {path} does not exist")
  item = os.path.join(path, "state") if os.path.isdir(os.path.join(path, "state")) else path
  ckptr = ocp.PyTreeCheckpointer()
  try:  # the handler raises what the checkpointer only logs (a corrupt OCDBT index)
    from etils import epath  # pylint: disable=g-import-not-at-top
    metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(item))
  except Exception as e:  # noqa: BLE001 - any unreadable dir is the same user error
    if is_read_failure(e) and os.path.exists(os.path.join(item, "_METADATA")):
      raise CorruptCheckpoint(f"INITIAL_CHECKPOINT_PATH {path}: {_read_error(e)}") from e
    raise ValueError(f"INITIAL_CHECKPOINT_PATH {path} is not an Orbax checkpoint: "
                     f"{_read_error(e)}") from e
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  sub, prefix = _params_subtree(tree)
  want, have = _tree_shapes(abstract_params), _tree_shapes(sub)
  allowed = {k for k, ok in _tree_shapes_values(missing_ok).items() if ok} if missing_ok else set()
  absent = {k for k in want if k not in have}
  problems = [f"{k}: checkpoint has none, model wants {want[k]}" for k in sorted(absent - allowed)]
  problems += [f"{k}: checkpoint {have[k]} != model {v}" for k, v in want.items()
               if k in have and tuple(have[k]) != tuple(v)]
  if problems:
    shown = "\n  ".join(problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise ValueError(f"INITIAL_CHECKPOINT_PATH {path} does not fit the model "
                     f"({len(problems)} parameter mismatches):\n  {shown}{more}")
  target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract_params, shardings)
  if absent:  # restore only what the checkpoint has (params are nested dicts)
    flat = traverse_util.flatten_dict(target)
    target = traverse_util.unflatten_dict(
        {k: v for k, v in flat.items()
         if jax.tree_util.keystr(tuple(jax.tree_util.DictKey(x) for x in k)) not in absent})
  for key in reversed(prefix):
    target = {key: target}
  # Partial restore: only the params subtree is read (not optimizer state).
  try:
    restored = ckptr.restore(item, args=ocp.args.PyTreeRestore(
        item=target, restore_args=jax.tree.map(
            lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding), target),
        partial_restore=True))
  except (ValueError, OSError) as e:  # TensorStore read errors are ValueErrors
    if not is_read_failure(e):
      raise
    raise CorruptCheckpoint(f"INITIAL_CHECKPOINT_PATH {path}: {_read_error(e)}") from e
  for key in prefix:
    restored = restored[key]
  # keystr of the state tree: the params subtree's names carry its path as a prefix.
  verify(restored, _saved_checksums(path), f"INITIAL_CHECKPOINT_PATH {path}",
         prefix="".join(f"[{k!r}]" for k in prefix))
  if absent:  # put the absent leaves back as None, in the model's tree structure
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(restored)}
    restored = jax.tree_util.tree_map_with_path(
        lambda p, _: flat.get(jax.tree_util.keystr(p)), abstract_params)
  return restored
