"""Writing under a data root (local or gs://) and remembering what was written from what.

`{root}/.linguamix_prepare.json` maps each output (relative path) to the source it was
made from (repository, commit, files; or the bundled file's sha256) and its size. An
output whose record matches the source resolved now, and whose file is there with that
size, is up to date: a second run fetches and writes nothing. Outputs are written to
`PATH.partial` and renamed, so an interrupted run never leaves a half file in place.
"""

from __future__ import annotations

import json

MANIFEST = ".linguamix_prepare.json"


def _gfile():
  import tensorflow as tf  # gfile: the same local/gs:// I/O the loaders use
  return tf.io.gfile


def join(root: str, rel: str) -> str:
  return root.rstrip("/") + "/" + rel


def write_bytes(path: str, data: bytes) -> None:
  gfile = _gfile()
  parent = path.rsplit("/", 1)[0]
  gfile.makedirs(parent)
  with gfile.GFile(path + ".partial", "wb") as f:
    f.write(data)
  gfile.rename(path + ".partial", path, overwrite=True)


class Manifest:
  """The record of a root's outputs; saved after every output, so a killed run keeps
  what it finished."""

  def __init__(self, root: str):
    self.root, self.path = root, join(root, MANIFEST)
    gfile = _gfile()
    self.entries = {}
    if gfile.exists(self.path):
      with gfile.GFile(self.path, "r") as f:
        self.entries = json.load(f)

  def current(self, rel: str, source: dict) -> bool:
    entry = self.entries.get(rel)
    if not entry or entry.get("source") != source:
      return False
    path = join(self.root, rel)
    gfile = _gfile()
    return gfile.exists(path) and gfile.stat(path).length == entry.get("bytes")

  def record(self, rel: str, source: dict, size: int) -> None:
    self.entries[rel] = {"source": source, "bytes": size}
    write_bytes(self.path, (json.dumps(self.entries, indent=1, sort_keys=True) + "\n").encode())
