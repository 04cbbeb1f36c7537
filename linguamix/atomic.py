"""Outputs appear whole or not at all: write under a temporary name, then rename.

A killed or failing command leaves the previous file (or none), never a half-written
one that a later run would trust. Local paths use `os.replace` (atomic on POSIX);
paths with a scheme (gs://) go through `tf.io.gfile` (rename with overwrite).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import IO, Iterator


def _remote(path: str) -> bool:
  return "://" in str(path)


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
  """`with atomic_write(path) as f:` — `path` is replaced only when the block succeeds."""
  path = str(path)
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
  binary = "b" in mode
  if _remote(path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(os.path.dirname(path))
    f = tf.io.gfile.GFile(tmp, mode)
    commit = lambda: tf.io.gfile.rename(tmp, path, overwrite=True)  # noqa: E731
    discard = lambda: tf.io.gfile.exists(tmp) and tf.io.gfile.remove(tmp)  # noqa: E731
  else:
    if os.path.dirname(path):
      os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(tmp, mode, **({} if binary else {"encoding": encoding, "newline": newline}))
    commit = lambda: os.replace(tmp, path)  # noqa: E731
    discard = lambda: os.path.exists(tmp) and os.remove(tmp)  # noqa: E731
  try:
    with f:
      yield f
      if not _remote(path):
        f.flush()
        os.fsync(f.fileno())
    commit()
  except BaseException:
    discard()
    raise


def write_text(path, text: str) -> None:
  with atomic_write(path) as f:
    f.write(text)


@contextlib.contextmanager
def atomic_dir(path) -> Iterator[str]:
  """`with atomic_dir(out) as tmp:` — write into `tmp`, a sibling of `out` that does not
  exist yet (create it, or let a writer such as Orbax create it). On success `tmp`
  becomes `out` by one rename, or, when `out` exists, each file is moved into it by an
  atomic rename (files in `out` under other names are kept). On failure `tmp` is removed
  and `out` is untouched."""
  path = os.path.abspath(str(path))
  tmp = f"{path}.partial-{uuid.uuid4().hex[:8]}"
  try:
    yield tmp
    if not os.path.exists(path):
      os.replace(tmp, path)  # the whole directory at once
      return
    for root, _, names in os.walk(tmp):
      target = os.path.join(path, os.path.relpath(root, tmp))
      os.makedirs(target, exist_ok=True)
      for name in names:
        os.replace(os.path.join(root, name), os.path.join(target, name))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
