"""Environment variables set for a block of code and put back after it."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def scoped(extra: dict[str, str]):
  """`with scoped({"NAME": "value"}):` sets them, then restores (or removes) each."""
  old = {k: os.environ.get(k) for k in extra}
  os.environ.update(extra)
  try:
    yield
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
