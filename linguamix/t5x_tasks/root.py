"""Where the instruction datasets live: one root, each dataset in its published layout.

Order: the gin binding `data_root.root` (macro `DATA_ROOT` in data_root.gin), then
the environment variable LINGUAMIX_DATA_ROOT, then the bundled sample set (generated
on first use into the cache). Local paths and `gs://` both work (tf.io.gfile). It is
resolved each time data is read, so gin bindings parsed after import apply.
"""

from __future__ import annotations

import os

import gin

ENV_VAR = "LINGUAMIX_DATA_ROOT"


@gin.configurable(module="linguamix.t5x_tasks")
def data_root(root: str | None = None) -> str:
  root = root or os.environ.get(ENV_VAR)
  if root:
    return root.rstrip("/")
  from linguamix.t5x_tasks import sample_data  # only when the sample set is used
  return sample_data.ensure_sample_root()


def join(*parts: str) -> str:
  """Joins a path under the data root; absolute and gs:// paths are kept as given."""
  first = parts[0]
  if "://" in first or os.path.isabs(first):
    return "/".join(p.rstrip("/") for p in parts)
  return "/".join([data_root()] + [p.rstrip("/") for p in parts])
