"""Orbax checkpoints: async saves of the train state (params, optimizer state, step)
plus a JSON `meta` item (input-pipeline position, seed, model fingerprint, a checksum
per array); keep the last N and the best N by a metric; restore the latest complete
one; load params only from an initial checkpoint, with a clear error when its tree does
not fit the model or an array cannot be read.

Damage is found in three places. Before any restore, every file is checked (see
`linguamix.models.checkpoint_formats.integrity`: metadata JSON, each OCDBT data file at least
as long as its index says, every file readable), and on several processes the verdicts
are gathered so that all of them restore the same checkpoint. OCDBT checks its b-tree
nodes with CRC-32C, but array chunks carry no checksum, so flipped bytes there restore
silently as wrong numbers: the per-array checksums in `meta` (computed on device at
save, compared after restore) catch those. On resume a damaged checkpoint is moved to
`MODEL_DIR/corrupt/` (kept for inspection) and the previous one is restored, with a
warning; a file this process may not read is an error instead (fix its permissions).
A save that fails (disk full) stops the run naming the last complete checkpoint: Orbax
writes each step under a temporary name and renames it only when complete.
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
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from linguamix import errors
from linguamix.models.checkpoint_formats import checksums as checksums_lib
from linguamix.models.checkpoint_formats import integrity

CORRUPT_DIR = "corrupt"
_MESSAGE_BYTES = 2048  # what one process tells the others about a damaged checkpoint


class CorruptCheckpoint(errors.UserError):
  """A checkpoint whose arrays cannot be read or do not match their checksums."""


class SaveFailed(errors.UserError):
  """Writing a checkpoint failed (disk full, quota); the earlier ones are intact."""
  label = "stopped"
  exit_code = errors.EXIT_STOPPED


def agree(problem: integrity.DamagedCheckpoint | None) -> integrity.DamagedCheckpoint | None:
  """Every process's verdict on one checkpoint, gathered: all of them get the same answer
  (the first process's problem, an unreadable file before a corrupt one), so all restore
  the same checkpoint or set the same one aside, though only some may see a bad file."""
  if jax.process_count() == 1:
    return problem
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  mine = np.zeros(_MESSAGE_BYTES + 1, np.uint8)
  if problem is not None:
    text = str(problem).encode()[:_MESSAGE_BYTES]
    mine[0] = 2 if problem.unreadable else 1
    mine[1:1 + len(text)] = np.frombuffer(text, np.uint8)
  verdicts = np.asarray(multihost_utils.process_allgather(mine))
  worst = int(verdicts[:, 0].max())
  if worst == 0:
    return None
  i = int(np.argmax(verdicts[:, 0] == worst))
  text = verdicts[i, 1:].tobytes().rstrip(b"\0").decode(errors="replace")
  return integrity.DamagedCheckpoint(f"{text} (seen by process {i})", unreadable=worst == 2)


def check_item(item: str) -> integrity.DamagedCheckpoint | None:
  """This process's verdict on an Orbax item dir's files (None: all there and readable)."""
  try:
    integrity.check_item(item)
  except integrity.DamagedCheckpoint as e:
    return e
  return None


def verify(tree: Any, expected: dict[str, int] | None, where: str, prefix: str = "") -> None:
  """Raises CorruptCheckpoint naming the first array whose contents changed since saved."""
  problem = checksums_lib.mismatch(tree, expected, prefix)
  if problem is not None:
    raise CorruptCheckpoint(f"{where}: {problem}")


# What TensorStore says when bytes on disk are bad or gone (vs. a tree that does not
# match, e.g. another optimizer: that is the user's configuration, not corruption).
_READ_FAILURES = ("DATA_LOSS", "checksum", "Error reading", "Error opening", "OCDBT",
                  "tensorstore", "NOT_FOUND", "OUT_OF_RANGE")


def _chain(e: BaseException):
  """`e` and what it was raised from: Orbax wraps TensorStore's error in a bare Exception."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def _read_failure(e: BaseException) -> BaseException | None:
  """The error in `e`'s chain that says bytes on disk are bad or gone, or None."""
  for x in _chain(e):
    if isinstance(x, (OSError, json.JSONDecodeError)) or (
        isinstance(x, ValueError) and any(m in str(x) for m in _READ_FAILURES)):
      return x
  return None


def is_read_failure(e: BaseException) -> bool:
  return _read_failure(e) is not None


def _read_error(e: BaseException) -> str:
  """TensorStore's message without its JSON spec, naming the array when it says which."""
  e = _read_failure(e) or e
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
    # A save stopped midway (killed, disk full) left a temporary dir that Orbax never
    # lists as a step; it is removed (cleanup_tmp_directories) and said so.
    if jax.process_index() == 0 and os.path.isdir(self.directory):
      for name in sorted(os.listdir(self.directory)):
        if name.startswith("checkpoint_") and ocp.path.atomicity.TMP_DIR_SUFFIX in name:
          print(f"warning: {os.path.join(self.directory, name)} is a checkpoint whose "
                "writing did not finish (the run was stopped or the disk was full); "
                "removing it", file=sys.stderr)
    options = ocp.CheckpointManagerOptions(
        step_prefix="checkpoint", enable_async_checkpointing=True, create=True,
        cleanup_tmp_directories=True,
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
    """Starts an async save; SaveFailed if this or the previous one could not be written."""
    meta = {**meta, "checksums": checksums_lib.checksums(state)}
    try:  # Orbax raises an async save's error at the next save or wait
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics)
    except Exception as e:  # noqa: BLE001 - whatever the filesystem said, reported as one line
      raise self._save_failed(e) from e

  def _save_failed(self, e: BaseException) -> SaveFailed:
    cause = _read_failure(e) or e
    self.manager.reload()  # forget the step that did not finish
    good = self.latest_step()
    text = str(cause).split(" [tensorstore_spec=")[0].strip()
    # TensorStore: `... Error writing "<array>/<chunk>" ... Failed writing: "<file>": ...:
    # File too large [os_error_code='27']`: the file and the system's reason are what matter.
    m = re.search(r'Error writing "([^"/]+)/[^"]*".*Failed writing: "([^"]+)": (?:.*: )?'
                  r"([^:\[]+?)\s*\[os_error_code", text)
    what = (f"{m.group(2)} (array {m.group(1)}): {m.group(3)}" if m else
            f"{type(cause).__name__}: {text[:500]}")
    return SaveFailed(
        f"writing a checkpoint to {self.directory} failed ({what}); "
        + (f"the last complete checkpoint, {self.path(good)}, is intact: free space and "
           "run the same command to resume from it" if good is not None else
           "no checkpoint was completed: free space and run the same command to start over"))

  def check(self, step: int) -> integrity.DamagedCheckpoint | None:
    """Every process's verdict on checkpoint_<step>'s files (see `agree`)."""
    where = self.path(step)
    try:
      integrity.check_files_readable(where)
      integrity.read_json(os.path.join(where, "meta", "metadata"))
      integrity.check_item(os.path.join(where, "state"))
      problem = None
    except integrity.DamagedCheckpoint as e:
      problem = e
    return agree(problem)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """The state and meta of `step`; CorruptCheckpoint if damaged or changed."""
    where = self.path(step)
    problem = self.check(step)
    if problem is not None and problem.unreadable:
      raise errors.UserError(f"{where}: {problem}; it was left in place")
    if problem is not None:
      raise CorruptCheckpoint(f"{where}: {problem}")
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - Orbax wraps TensorStore's errors in Exception
      if not is_read_failure(e):
        raise
      raise CorruptCheckpoint(f"{where}: {_read_error(e)}") from e
    verify(out["state"], out["meta"].get("checksums"), where)
    return out["state"], out["meta"]

  def _candidates(self):
    """Steps to try, newest first, the same on every process: the newest step every
    process has (below the last one tried), as each process may see a different disk."""
    below = None
    while True:
      self.manager.reload()
      mine = [s for s in self.manager.all_steps() if below is None or s < below]
      step = max(mine) if mine else -1
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        step = int(np.min(multihost_utils.process_allgather(np.int64(step))))
      if step < 0:
        return
      yield step
      below = step

  def latest_meta(self) -> tuple[int | None, dict | None]:
    """(step, meta) of the newest checkpoint whose files are whole; damaged ones moved aside."""
    for step in self._candidates():
      problem = self.check(step)
      if problem is None:
        return step, self.read_meta(step)
      if problem.unreadable:
        raise errors.UserError(f"{self.path(step)}: {problem}; it was left in place")
      self.set_aside(step, f"{self.path(step)}: {problem}")
    return None, None

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict]:
    """(step, state, meta) of the newest complete checkpoint: a corrupt one is moved to
    MODEL_DIR/corrupt/ with a warning and the one before it is tried."""
    set_aside = []
    for step in self._candidates():
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
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - see save
      raise self._save_failed(e) from e

  def close(self, finished: bool = True) -> None:
    """Waits for the save in flight (SaveFailed if it failed) unless `finished` is False."""
    try:
      if finished:
        self.wait()
    finally:
      try:
        self.manager.close()
      except Exception:  # noqa: BLE001 - a failed save re-raised on close: reported once
        if finished:
          raise


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
  return integrity.read_json(meta).get("checksums") if os.path.exists(meta) else None


def load_params(path: str, abstract_params: Any, shardings: Any,
                missing_ok: Any = None, what: str = "INITIAL_CHECKPOINT_PATH") -> Any:
  """Params only, from an Orbax checkpoint at `path` (a `checkpoint_<step>` dir of a
  linguamix run, or any Orbax params tree, e.g. what `linguamix convert` writes).

  `missing_ok` (a tree of bools like the params, e.g. the LoRA trainable mask) names
  leaves the checkpoint may lack; they come back as None, for the caller to initialise.
  `what`: how errors name the path (the gin macro that set it).
  """
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise ValueError(f"{what} {path} does not exist")
  item = os.path.join(path, "state") if os.path.isdir(os.path.join(path, "state")) else path
  if not os.path.exists(os.path.join(item, integrity.METADATA)) and not any(
      os.path.exists(os.path.join(item, n)) for n in (integrity.MANIFEST, "d")):
    raise ValueError(f"{what} {path} is not an Orbax checkpoint (no {integrity.METADATA}; "
                     "a directory written by `linguamix convert` or MODEL_DIR/checkpoint_<step>)")
  problem = check_item(item)
  if problem is None and os.path.exists(os.path.join(path, "meta")):
    try:
      _saved_checksums(path)
    except integrity.DamagedCheckpoint as e:
      problem = e
  problem = agree(problem)
  if problem is not None:
    raise (errors.UserError if problem.unreadable else CorruptCheckpoint)(
        f"{what} {path}: {problem}")
  ckptr = ocp.PyTreeCheckpointer()
  try:  # the handler raises what the checkpointer only logs (a corrupt OCDBT index)
    from etils import epath  # pylint: disable=g-import-not-at-top
    metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(item))
  except Exception as e:  # noqa: BLE001 - any unreadable dir is the same user error
    if is_read_failure(e):
      raise CorruptCheckpoint(f"{what} {path}: {_read_error(e)}") from e
    raise ValueError(f"{what} {path} is not an Orbax checkpoint: {_read_error(e)}") from e
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
    raise ValueError(f"{what} {path} does not fit the model "
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
  except Exception as e:  # noqa: BLE001 - Orbax wraps TensorStore's errors in Exception
    if not is_read_failure(e):
      raise
    raise CorruptCheckpoint(f"{what} {path}: {_read_error(e)}") from e
  for key in prefix:
    restored = restored[key]
  # keystr of the state tree: the params subtree's names carry its path as a prefix.
  verify(restored, _saved_checksums(path), f"{what} {path}",
         prefix="".join(f"[{k!r}]" for k in prefix))
  if absent:  # put the absent leaves back as None, in the model's tree structure
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(restored)}
    restored = jax.tree_util.tree_map_with_path(
        lambda p, _: flat.get(jax.tree_util.keystr(p)), abstract_params)
  return restored
