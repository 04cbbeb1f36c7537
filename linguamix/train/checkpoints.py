"""Orbax checkpoints: async saves of the train state (params, optimizer state, step)
plus a JSON `meta` item (input-pipeline position, seed, model fingerprint); keep the
last N and the best N by a metric; restore the latest; load params only from an
initial checkpoint, with a clear error when its tree does not fit the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from flax import traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


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

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

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
  try:
    metadata = ckptr.metadata(item)
  except Exception as e:  # noqa: BLE001 - any unreadable dir is the same user error
    raise ValueError(f"INITIAL_CHECKPOINT_PATH {path} is not an Orbax checkpoint: {e}") from e
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
  restored = ckptr.restore(item, args=ocp.args.PyTreeRestore(
      item=target, restore_args=jax.tree.map(
          lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding), target),
      partial_restore=True))
  for key in prefix:
    restored = restored[key]
  if absent:  # put the absent leaves back as None, in the model's tree structure
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(restored)}
    restored = jax.tree_util.tree_map_with_path(
        lambda p, _: flat.get(jax.tree_util.keystr(p)), abstract_params)
  return restored
