"""Is every file of an Orbax checkpoint there, whole and readable? Checked before a restore.

What an interrupted copy, a full disk or a bad mount leaves (a data file cut short, empty
or gone, `_METADATA` missing or cut, a file the user may not read) makes Orbax fail deep
inside its asyncio restore, with a message that depends on which read lost the race, or
on several hosts with some processes failing and others waiting at its barrier. This
check reads only the small files: the JSON metadata, and the OCDBT manifest and b-tree
nodes through TensorStore's own `ocdbt.dump`, which give every array value's data file,
offset and length; each file's size is then compared with what the index needs. A
problem is named by file and array. Array *contents* are not read here (the trainer's
per-array checksums cover flipped bytes).
"""

from __future__ import annotations

import json
import os
import re

from linguamix import errors

METADATA = "_METADATA"            # Orbax's PyTree structure (JSON)
MANIFEST = "manifest.ocdbt"       # the OCDBT root: the index of every array chunk
STEP_METADATA = "_CHECKPOINT_METADATA"  # a CheckpointManager step's items and metrics (JSON)

# An OCDBT reference as `ocdbt.dump` prints it: `btreenode:<base>:<file>:<offset>:<length>`
# for an index node, `value:<base>:<file>:<offset>:<length>` for an array chunk.
_REF = re.compile(r"^(btreenode|value):([^:]*):([^:]+):(\d+):(\d+)$")


class DamagedCheckpoint(errors.UserError):
  """A checkpoint file that is missing, cut short, not JSON, or not readable.

  `unreadable`: the bytes may be fine but this process may not read them (permissions):
  the user's to fix, not a reason to give up the checkpoint."""

  def __init__(self, message: str, *, unreadable: bool = False):
    super().__init__(message)
    self.unreadable = unreadable


def _readable(path: str) -> None:
  try:
    with open(path, "rb") as f:
      f.read(1)
  except PermissionError as e:
    raise DamagedCheckpoint(f"{path} cannot be read: {e.strerror}", unreadable=True) from None
  except IsADirectoryError:
    pass


def check_files_readable(directory: str) -> None:
  """Every file under `directory` opens for reading (names the first that does not)."""
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    for name in sorted(files):
      _readable(os.path.join(root, name))
    for name in dirs:
      if not os.access(os.path.join(root, name), os.R_OK | os.X_OK):
        try:
          os.listdir(os.path.join(root, name))
        except PermissionError as e:
          raise DamagedCheckpoint(f"{os.path.join(root, name)} cannot be read: {e.strerror}",
                                  unreadable=True) from None


def read_json(path: str) -> dict:
  """A checkpoint's JSON file, or DamagedCheckpoint saying it is missing or not JSON."""
  if not os.path.exists(path):
    raise DamagedCheckpoint(f"{path} is missing")
  _readable(path)
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
    size = os.path.getsize(path)
    raise DamagedCheckpoint(f"{path} is not JSON ({size} bytes, cut short or overwritten: "
                            f"{e})") from None
  if not isinstance(value, dict):
    raise DamagedCheckpoint(f"{path} is not a JSON object")
  return value


def _array_names(metadata: dict) -> list[str]:
  """The names Orbax stores arrays under (`a.b.c`), from `_METADATA`'s tree."""
  names = []
  for entry in (metadata.get("tree_metadata") or {}).values():
    value = entry.get("value_metadata") or {}
    if value.get("skip_deserialize") or value.get("value_type") not in (
        "jax.Array", "np.ndarray"):
      continue
    names.append(".".join(str(k["key"]) for k in entry.get("key_metadata", ())))
  return names


def _tensorstore_message(e: Exception) -> str:
  return str(e).split(" [tensorstore_spec=")[0].strip()


def check_item(item: str) -> None:
  """Raises DamagedCheckpoint naming the file (and array) if an Orbax PyTree item dir
  (`checkpoint_<step>/state`, or what `linguamix convert` writes) cannot be restored
  whole: metadata missing or not JSON, an OCDBT data file missing or shorter than the
  index says, an array named in the metadata absent from the index, an unreadable file."""
  if "://" in str(item):
    return  # remote storage: Orbax's own reads report it (this check reads local files)
  item = os.path.abspath(item)
  if not os.path.isdir(item):
    raise DamagedCheckpoint(f"{item} is missing")
  check_files_readable(item)
  metadata = read_json(os.path.join(item, METADATA))
  if not metadata.get("use_ocdbt", False):
    return  # one directory per array: TensorStore's own errors name the array
  if not os.path.exists(os.path.join(item, MANIFEST)):
    raise DamagedCheckpoint(f"{os.path.join(item, MANIFEST)} is missing (the index of "
                            "every array)")
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  try:
    base = ts.KvStore.open({"driver": "file", "path": item + "/"}).result()
    manifest = ts.ocdbt.dump(base).result()
  except ValueError as e:  # TensorStore: the manifest is cut short or not a manifest
    raise DamagedCheckpoint(f"{os.path.join(item, MANIFEST)} cannot be decoded: "
                            f"{_tensorstore_message(e)}") from None
  sizes: dict[str, int] = {}
  keys: set[str] = set()

  def need(ref: str, what: str) -> None:
    kind, sub, rel, offset, length = _REF.match(ref).groups()
    path = os.path.normpath(os.path.join(item, sub, rel))
    if path not in sizes:
      sizes[path] = os.path.getsize(path) if os.path.exists(path) else -1
    end = int(offset) + int(length)
    if sizes[path] < 0:
      raise DamagedCheckpoint(f"{path} is missing ({what} is stored in it)")
    if sizes[path] < end:
      raise DamagedCheckpoint(
          (f"{path} is empty" if sizes[path] == 0 else
           f"{path} is cut short: {sizes[path]} bytes") +
          f", but {what} is stored at bytes [{offset}, {end})")
    if kind == "btreenode":
      node = os.path.relpath(path, item)
      try:
        walk(ts.ocdbt.dump(base, ref).result(), f"index node {node}")
      except ValueError as e:
        raise DamagedCheckpoint(f"{path}: index node cannot be decoded: "
                                f"{_tensorstore_message(e)}") from None

  def walk(node, what: str) -> None:
    if isinstance(node, dict):
      key = node.get("key")
      if isinstance(key, (bytes, str)):
        key = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if key.startswith("b'") or key.startswith('b"'):  # dump prints keys as bytes reprs
          key = key[2:-1]
        keys.add(key)
        what = f"array {key.split('/')[0]}"
      for value in node.values():
        walk(value, what)
    elif isinstance(node, list):
      for value in node:
        walk(value, what)
    elif isinstance(node, str) and _REF.match(node):
      need(node, what)

  for version in manifest.get("versions", ())[-1:]:  # the latest commit is what is read
    walk(version, "the index")
  for node in manifest.get("version_tree_nodes", ()):
    walk(node, "the version tree")
  if keys:
    arrays = {k.split("/")[0] for k in keys if k.endswith(("/.zarray", "/zarr.json"))}
    missing = [n for n in _array_names(metadata) if n not in arrays]
    if missing:
      more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
      raise DamagedCheckpoint(f"{item}: array {missing[0]}{more} named in {METADATA} "
                              f"is not in the index {MANIFEST} (an incomplete copy?)")
