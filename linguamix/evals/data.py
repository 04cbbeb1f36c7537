"""Where benchmark release files live and how their rows are read (local or gs://).

Rows are read whole into Python lists: eval sets are small, and ids assigned here (the
row's position in its source) stay the same on every host, before any sharding.
Bad rows fail with the file, line and field; with `skip_malformed_rows.skip = True`
(gin) they are skipped, logged, and counted in the `Skips` of the evaluation reading them
(`counting`) — never dropped silently.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import csv
import dataclasses
import functools
import json
import os
import sys
from typing import Any, Iterable, Iterator, Sequence

from absl import logging
import gin
import tensorflow as tf

from linguamix.t5x_tasks import root

ENV_DATA_ROOT = "LINGUAMIX_EVAL_DATA_ROOT"


@dataclasses.dataclass
class Skips:
  """The malformed rows one evaluation skipped: file path -> line numbers. A set, because
  one file is parsed once per language (XNLI's TSV holds all 15) and a row is one skip."""
  lines: dict[str, set[int]] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(set))

  def add(self, path: str, line: int) -> None:
    self.lines[path].add(line)

  def counts(self) -> dict[str, int]:
    """path -> number of rows skipped (run.json's `skipped_malformed_rows`)."""
    return {path: len(lines) for path, lines in self.lines.items()}


# The Skips of the evaluation now reading files. The loaders run inside SeqIO tasks
# registered once per process, so the count cannot travel as an argument; a context
# variable scopes it to one `counting` block (one evaluation, one thread) instead.
_COUNTING: contextvars.ContextVar[Skips | None] = contextvars.ContextVar(
    "linguamix_eval_skips", default=None)


@contextlib.contextmanager
def counting(skips: Skips) -> Iterator[Skips]:
  """Rows skipped while the block runs are counted in `skips` (and only there)."""
  token = _COUNTING.set(skips)
  try:
    yield skips
  finally:
    _COUNTING.reset(token)


class MalformedRowError(ValueError):
  """A release file row that does not have the published shape."""


@gin.configurable
def skip_malformed_rows(skip: bool = False) -> bool:
  """Whether malformed rows are skipped (counted, logged) instead of raising."""
  return skip


@gin.configurable
def tfds_benchmarks(names: Sequence[str] = ()) -> tuple[str, ...]:
  """Benchmarks read through their TFDS builder (`xnli`, `paws_x`, `xquad`) instead of
  release files, e.g. gin `tfds_benchmarks.names = ["xnli"]`; TFDS's data dir applies."""
  return tuple(names)


def tfds_examples(name: str, split: str) -> list[dict[str, Any]]:
  """All examples of a TFDS split as numpy dicts, in the builder's order."""
  import tensorflow_datasets as tfds  # only when a benchmark is read from TFDS
  return list(tfds.as_numpy(tfds.load(name, split=split, shuffle_files=False)))


# Real benchmark files shipped with linguamix (XCOPA, MT-Bench-X; see its README).
BUNDLED_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")


def data_root() -> str:
  """$LINGUAMIX_EVAL_DATA_ROOT, else the instruction data root (gin `data_root.root`,
  $LINGUAMIX_DATA_ROOT): benchmarks keep their release layout under it."""
  return os.environ.get(ENV_DATA_ROOT) or root.data_root()


def benchmark_path(*parts: str) -> str:
  """`{data_root}/part/...`, failing clearly when the file is not there. Without
  $LINGUAMIX_EVAL_DATA_ROOT, a file the data root lacks is read from the bundled copy
  when linguamix ships that benchmark (so XCOPA works with no download)."""
  path = "/".join([data_root().rstrip("/"), *parts])
  if tf.io.gfile.exists(path):
    return path
  bundled = os.path.join(BUNDLED_ROOT, *parts)
  if not os.environ.get(ENV_DATA_ROOT) and os.path.exists(bundled):
    return bundled
  raise FileNotFoundError(
      f"benchmark file not found: {path} (set ${ENV_DATA_ROOT} or the data root "
      f"${root.ENV_VAR} to the folder holding {parts[0]}/)")


def report_bad_row(path: str, line: int, message: str) -> None:
  if not skip_malformed_rows():
    raise MalformedRowError(f"{path}:{line}: {message}")
  skips = _COUNTING.get()
  if skips is not None:
    skips.add(path, line)
  logging.warning("skipping malformed row %s:%d: %s", path, line, message)


def _check_fields(path: str, line: int, row: dict[str, Any], fields: Sequence[str]) -> bool:
  for field in fields:
    value = row.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
      report_bad_row(path, line, f"field {field!r} is missing or empty")
      return False
  return True


@functools.lru_cache(maxsize=64)
def read_text(path: str) -> str:
  with tf.io.gfile.GFile(path, "r") as f:
    return f.read()


def lines(text: str) -> list[str]:
  """The lines of a JSON Lines or TSV file: split at "\\n" (a "\\r" before it dropped) and
  nowhere else. `str.splitlines` also splits at U+2028, U+0085 and other separators that
  a field may hold, as Hugging Face `datasets` (lm-eval's loader) does not."""
  return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def read_jsonl(path: str, fields: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
  """(line number, record) for each line holding every non-empty field."""
  rows = []
  for line_no, line in enumerate(lines(read_text(path)), start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      report_bad_row(path, line_no, f"not JSON ({e.msg})")
      continue
    if not isinstance(row, dict):
      report_bad_row(path, line_no, "not a JSON object")
    elif _check_fields(path, line_no, row, fields):
      rows.append((line_no, row))
  return rows


def read_tsv(path: str, fields: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
  """(line number, row) for a headed TSV; quotes are literal text (XNLI, PAWS-X)."""
  csv.field_size_limit(sys.maxsize)
  reader = csv.reader(lines(read_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
  header = next(reader, None)
  missing = [f for f in fields if f not in (header or [])]
  if missing:
    raise MalformedRowError(f"{path}:1: header {header} lacks columns {missing}")
  rows = []
  for line_no, values in enumerate(reader, start=2):
    if not any(values):
      continue
    if len(values) != len(header):
      report_bad_row(path, line_no, f"{len(values)} columns, header has {len(header)}")
      continue
    row = dict(zip(header, values))
    if _check_fields(path, line_no, row, fields):
      rows.append((line_no, row))
  return rows


def text(value: Any) -> str:
  """TFDS strings arrive as bytes."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def label_index(path: str, line: int, value: Any, labels: Iterable[Any]) -> int | None:
  """Position of `value` among `labels`, or a bad-row report."""
  labels = list(labels)
  if value in labels:
    return labels.index(value)
  report_bad_row(path, line, f"label {value!r} not one of {labels}")
  return None
