"""On-disk cache of finished items: append-only JSONL, one file per language.

Key = sha256 of (prompt version, model, item content, language): a re-run costs no
request, a killed run resumes, and a changed prompt, model or item is translated
afresh. Each finished item is one line, flushed at once; a line cut short by a kill is
ignored (and counted) when the cache is read back. Written from one thread only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Iterator

log = logging.getLogger(__name__)


def item_key(prompt_version: str, model: str, item: dict[str, str], lang: str) -> str:
  blob = json.dumps([prompt_version, model, lang, item], sort_keys=True, ensure_ascii=False)
  return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
  """Finished keys of the languages loaded; `put` appends a record, `records` streams them.

  Only keys stay in memory (a run may hold millions of items); records are read back
  one language at a time when the outputs are written.
  """

  def __init__(self, directory: str):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)
    self.finished: set[str] = set()
    self.torn_lines = 0
    self._files: dict[str, Any] = {}

  def _path(self, lang: str) -> str:
    return os.path.join(self.directory, f"{lang}.jsonl")

  def load(self, lang: str) -> None:
    self.finished.update(record["key"] for record in self.records(lang, report=True))

  def records(self, lang: str, report: bool = False) -> Iterator[dict[str, Any]]:
    path = self._path(lang)
    if not os.path.exists(path):
      return
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, start=1):
        try:
          record = json.loads(line)
          record["key"]  # pylint: disable=pointless-statement
        except (json.JSONDecodeError, KeyError, TypeError):
          if report:
            self.torn_lines += 1
            log.warning("%s:%d: unreadable cache line ignored (a run killed mid-write?)",
                        path, number)
          continue
        yield record

  def __contains__(self, key: str) -> bool:
    return key in self.finished

  def put(self, lang: str, record: dict[str, Any]) -> None:
    f = self._files.get(lang)
    if f is None:
      path = self._path(lang)
      torn = os.path.exists(path) and os.path.getsize(path) > 0 and not _ends_with_newline(path)
      f = self._files[lang] = open(path, "a", encoding="utf-8")
      if torn:  # start after a line a kill cut short
        f.write("\n")
    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    f.flush()
    self.finished.add(record["key"])

  def close(self) -> None:
    for f in self._files.values():
      f.close()
    self._files.clear()


def _ends_with_newline(path: str) -> bool:
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"
