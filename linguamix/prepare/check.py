"""After writing: read it back with the code the tasks use, and print per-language counts.

Instruction sets go through `RecordSource.records` (the SeqIO tasks' reader, with the
family's file patterns under this root); benchmarks through the registered loaders
(`registry.BENCHMARKS[name].load`) with this root as the eval data root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Sequence

from linguamix.prepare.hub import PrepareError


def _wrap(items, width: int = 100) -> str:
  """Items two spaces apart, indented, lines of at most `width` (an item never split)."""
  lines = [""]
  for item in items:
    if lines[-1] and len(lines[-1]) + 2 + len(item) > width - 2:
      lines.append("")
    lines[-1] += ("  " if lines[-1] else "") + item
  return "\n".join("  " + line for line in lines)


def _under(root: str, pattern: str | None) -> str | None:
  return None if pattern is None else root.rstrip("/") + "/" + pattern


def data_counts(family: str, root: str, langs: Sequence[str], sparse: bool, log=print) -> dict:
  from linguamix import t5x_tasks
  from linguamix.t5x_tasks import readers
  fam = t5x_tasks.FAMILIES[family]
  counts, absent = {}, []
  for lang in langs:
    src = fam.source(lang)
    src = dataclasses.replace(src, train_pattern=_under(root, src.train_pattern),
                              validation_pattern=_under(root, src.validation_pattern))
    try:
      counts[lang] = (len(src.records("train")), len(src.records("validation")))
    except readers.DataError as e:
      if sparse and ("no records in language" in str(e) or "no usable records" in str(e)):
        absent.append(lang)  # one multilingual file: not every language of the family is in it
        continue
      raise PrepareError(f"check failed, the tasks cannot read what was written: {e}") from None
  log(f"check ({family} tasks' reader, {root}): train / validation records per language")
  log(_wrap(f"{l} {t}/{v}" for l, (t, v) in counts.items()))
  if absent:
    log(f"  no records for {len(absent)} of the family's languages: {' '.join(absent)}")
  return counts


@contextlib.contextmanager
def _eval_root(root: str):
  from linguamix.evals import data
  old = os.environ.get(data.ENV_DATA_ROOT)
  os.environ[data.ENV_DATA_ROOT] = root
  data.read_text.cache_clear()
  try:
    yield
  finally:
    if old is None:
      os.environ.pop(data.ENV_DATA_ROOT, None)
    else:
      os.environ[data.ENV_DATA_ROOT] = old
    data.read_text.cache_clear()


def benchmark_counts(name: str, root: str, langs: Sequence[str], log=print) -> dict:
  import linguamix.evals  # noqa: F401  registers every benchmark
  from linguamix.evals import registry
  bench = registry.BENCHMARKS[name]
  unregistered = [l for l in langs if l not in bench.languages]
  if unregistered:  # written from the release, but linguamix has no task for them yet
    log(f"  not checked (linguamix's {name} task does not register them): {' '.join(unregistered)}")
  counts = {}
  with _eval_root(root):
    for lang in (l for l in langs if l in bench.languages):
      try:
        counts[lang] = {s: len(bench.load(lang, s)) for s in bench.splits}
      except (ValueError, OSError) as e:
        raise PrepareError(f"check failed, the {name} loader cannot read what was written: "
                           f"{e}") from None
  log(f"check ({name} loader, {root}): examples per language and split")
  log(_wrap(f"{l} " + "/".join(str(n) for n in c.values()) for l, c in counts.items())
      + f"   ({'/'.join(bench.splits)})")
  return counts
