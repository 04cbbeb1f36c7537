"""Rows in, release-layout bytes out: the conversions from the Hub's copies.

The Hub keeps many benchmarks as parquet (the datasets-server export); the loaders read
the original release formats (TSV, JSONL, SQuAD JSON, line files). Every writer checks
what the target format cannot hold (a tab or newline inside a TSV field, an empty FLORES
line) and fails naming the source file and row instead of writing a file that reads
differently.
"""

from __future__ import annotations

import collections
import gzip
import json
from typing import Any, Iterable, Sequence

from linguamix.prepare.hub import PrepareError


def read_rows(path: str) -> list[dict[str, Any]]:
  """Records of a .parquet, .jsonl or .json (list) file, in file order."""
  if path.endswith(".parquet"):
    import pyarrow.parquet as pq
    try:
      return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - any unreadable parquet is this file's problem
      raise PrepareError(f"{path}: not a readable parquet file ({e})") from None
  with open(path, "rb") as f:
    raw = f.read()
  if path.endswith(".gz"):
    raw = gzip.decompress(raw)
  text = raw.decode("utf-8")
  if text.lstrip().startswith("["):
    return json.loads(text)
  rows = []
  # JSON Lines ends records at "\n" only: a U+2028 or U+0085 inside a string is text
  for i, line in enumerate(text.split("\n"), start=1):
    if line.strip():
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise PrepareError(f"{path}:{i}: malformed JSON line ({e.msg})") from None
  return rows


def field(row: dict, key: str, where: str):
  if key not in row:
    raise PrepareError(f"{where}: no column {key!r} (columns: {sorted(row)})")
  return row[key]


def jsonl(rows: Iterable[dict]) -> bytes:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def tsv(header: Sequence[str], rows: Iterable[Sequence[Any]], where: str) -> bytes:
  """A headed TSV without quoting (the XNLI / PAWS-X / XStoryCloze releases' dialect)."""
  lines = ["\t".join(header)]
  for i, row in enumerate(rows):
    cells = ["" if v is None else str(v) for v in row]
    for name, cell in zip(header, cells):
      if "\t" in cell or "\n" in cell or "\r" in cell:
        raise PrepareError(f"{where} row {i}: column {name!r} holds a tab or newline, "
                           "which the release's TSV format cannot")
    lines.append("\t".join(cells))
  return ("\n".join(lines) + "\n").encode("utf-8")


def lines(texts: Sequence[str], where: str) -> bytes:
  for i, t in enumerate(texts):
    if not isinstance(t, str) or not t.strip() or "\n" in t:
      raise PrepareError(f"{where} row {i}: sentence is empty or spans lines; FLORES "
                         "files are line-parallel")
  return ("\n".join(texts) + "\n").encode("utf-8")


def squad(rows: Sequence[dict], where: str, title: str) -> bytes:
  """SQuAD v1.1 JSON: questions grouped under their context, in first-seen order."""
  paragraphs: dict[str, list] = collections.OrderedDict()
  for i, r in enumerate(rows):
    answers = field(r, "answers", f"{where} row {i}")
    texts, starts = answers.get("text") or [], answers.get("answer_start") or []
    paragraphs.setdefault(field(r, "context", where), []).append({
        "id": str(r.get("id", i)), "question": field(r, "question", where),
        "answers": [{"text": t, "answer_start": int(s)} for t, s in zip(texts, starts)]})
  data = [{"title": title, "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs.items()]}]
  return (json.dumps({"version": "1.1", "data": data}, ensure_ascii=False) + "\n").encode("utf-8")
