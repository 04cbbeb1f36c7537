"""Read instruction records from JSON / JSONL / json.gz files (local or gs://).

Parsing and validation happen in Python, before tf.data, so every bad record is
reported with its file, line (JSONL) or record index (JSON list) and field. Records
come out in one canonical shape: `id, lang, system, instruction, input, output,
history` (history = earlier (user, assistant) turns of a conversation).

An empty output is not a malformed record: the studies' training code trains on every
record (the target is the output plus end-of-sequence, so an empty output teaches the
model to stop), and Bactrian-X's 67,017 rows per language include such records. They are
kept by default; `empty_output="drop"` drops them (counted and logged), `"error"` rejects
them as bad records.
"""

from __future__ import annotations

import collections
import functools
import gzip
import hashlib
import io
import json
import logging
from typing import Any, Iterator, Mapping

import gin
import tensorflow as tf

from linguamix.t5x_tasks import languages


class DataError(ValueError):
  """A bad input file or record; the message names the file, line and field."""


# Field presets: canonical field -> source key. `lang` is checked against the task's
# language (a mismatch is an error) unless `filter_lang`, where a file holds many
# languages and the task keeps its own (Aya).
SHAPES: dict[str, dict[str, Any]] = {
    "alpaca": {"fields": {"id": "id", "instruction": "instruction", "input": "input",
                          "output": "output"}},
    "orca": {"fields": {"id": "id", "system": "system_prompt", "instruction": "question",
                        "output": "response", "lang": "lang"}},
    "aya": {"fields": {"instruction": "inputs", "output": "targets",
                       "lang": "language_code"}, "filter_lang": True},
    "lima": {"special": "lima"},
    "oasst1": {"special": "oasst1"},
}
OPTIONAL = ("id", "system", "input", "lang")
EMPTY_OUTPUT = ("keep", "drop", "error")


def resolve_shape(fields) -> dict[str, Any]:
  """A shape name or a {canonical: source_key} dict -> shape spec."""
  if isinstance(fields, str):
    if fields not in SHAPES:
      raise ValueError(f"unknown record shape {fields!r}; known: {sorted(SHAPES)} "
                       "or a dict {canonical_field: source_key}")
    return SHAPES[fields]
  fields = dict(fields)
  unknown = set(fields) - {"id", "system", "instruction", "input", "output", "lang"}
  missing = {"instruction", "output"} - set(fields)
  if unknown or missing:
    raise ValueError(f"fields={fields!r}: unknown canonical fields {sorted(unknown)}, "
                     f"missing {sorted(missing)} (need instruction and output)")
  return {"fields": fields}


def _open_text(path: str) -> str:
  if not tf.io.gfile.exists(path):
    raise DataError(f"{path}: file not found")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  if path.endswith(".gz"):
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise DataError(f"{path}: not a valid gzip file ({e})") from None
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 ({e})") from None


def iter_json_objects(path: str, bad: "BadRecords") -> Iterator[tuple[str, Any]]:
  """Yields (location, object): `file:line` for JSONL, `file[record i]` for a JSON list."""
  text = _open_text(path)
  stripped = text.lstrip()
  if stripped.startswith("["):
    try:
      items = json.loads(text)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    for i, item in enumerate(items):
      yield f"{path}[record {i}]", item
    return
  for lineno, line in enumerate(io.StringIO(text), start=1):
    if not line.strip():
      continue
    try:
      yield f"{path}:{lineno}", json.loads(line)
    except json.JSONDecodeError as e:
      bad.report(f"{path}:{lineno}", f"malformed JSON line: {e.msg}")


class BadRecords:
  """Raises on the first bad record, or counts them when asked to skip."""

  def __init__(self, skip: bool, what: str):
    self.skip, self.what = skip, what
    self.reasons = collections.Counter()
    self.first: dict[str, str] = {}

  def report(self, where: str, problem: str):
    if not self.skip:
      raise DataError(f"{where}: {problem}")
    self.reasons[problem] += 1
    self.first.setdefault(problem, where)

  def summary(self, kept: int) -> None:
    if self.reasons:
      lines = [f"  {n} x {p} (first at {self.first[p]})" for p, n in self.reasons.items()]
      logging.warning("%s: skipped %d bad record(s), kept %d:\n%s", self.what,
                      sum(self.reasons.values()), kept, "\n".join(lines))


def _field(obj, key, where, bad, *, required: bool, allow_empty: bool):
  if not isinstance(obj, dict):
    bad.report(where, f"record is a {type(obj).__name__}, expected a JSON object")
    return None
  if key not in obj:
    if required:
      bad.report(where, f"field {key!r} is missing (keys: {sorted(obj)})")
      return None
    return ""
  value = obj[key]
  if isinstance(value, (int,)) and key in ("id",):
    value = str(value)
  if not isinstance(value, str):
    bad.report(where, f"field {key!r} is a {type(value).__name__}, expected a string")
    return None
  if not allow_empty and not value.strip():
    bad.report(where, f"field {key!r} is empty")
    return None
  return value


def _check_lang(code, where, bad):
  try:
    return languages.normalize(code)
  except ValueError:
    bad.report(where, f"field 'lang': unknown language code {code!r}")
    return None


def _flat_records(path, spec, lang, bad, id_prefix, empty_output="keep"):
  fields, filter_lang = spec["fields"], spec.get("filter_lang", False)
  empty_ok = ("system", "input", "id", "lang") + (("output",) if empty_output != "error" else ())
  for index, (where, obj) in enumerate(iter_json_objects(path, bad)):
    rec = {}
    for canon, key in fields.items():
      required = canon not in OPTIONAL
      value = _field(obj, key, where, bad, required=required, allow_empty=canon in empty_ok)
      if value is None:
        break
      rec[canon] = value
    else:
      if rec.get("lang"):
        if filter_lang and not languages.is_known(rec["lang"]):
          continue  # a file of many languages (Aya): codes we have no task for are not ours
        code = _check_lang(rec["lang"], where, bad)
        if code is None:
          continue
        if code != lang:
          if filter_lang:
            continue
          bad.report(where, f"field {fields['lang']!r} is {rec['lang']!r} but the task's "
                     f"language is {lang!r}")
          continue
      rec["id"] = rec.get("id") or f"{id_prefix}{index}"
      yield where, rec


def _lima_records(path, lang, bad, id_prefix, empty_output="keep"):
  for index, (where, obj) in enumerate(iter_json_objects(path, bad)):
    if isinstance(obj, dict) and "conversations" in obj:
      turns = obj["conversations"]
      if (not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2
          or not all(isinstance(t, str) and t.strip() for t in turns)):
        bad.report(where, "field 'conversations' must be a list of an even number (>= 2) "
                   "of non-empty strings, alternating user and assistant turns")
        continue
      pairs = list(zip(turns[::2], turns[1::2]))
      yield where, {"id": str(obj.get("id") or f"{id_prefix}{index}"),
                    "instruction": pairs[-1][0], "output": pairs[-1][1],
                    "history": pairs[:-1]}
    elif isinstance(obj, dict) and "instruction" in obj and "output" in obj:
      rec = {}
      for key in ("instruction", "output"):
        rec[key] = _field(obj, key, where, bad, required=True,
                          allow_empty=key == "output" and empty_output != "error")
      rec["input"] = _field(obj, "input", where, bad, required=False, allow_empty=True)
      if None in rec.values():
        continue
      rec["id"] = str(obj.get("id") or f"{id_prefix}{index}")
      yield where, rec
    else:
      keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
      bad.report(where, f"unknown LIMA-X record shape (keys: {keys}); expected "
                 "'conversations' (LIMA) or 'instruction'/'output'")


def _oasst1_records(path, lang, bad, thread: bool):
  """Root prompt + rank-0 reply (or the whole rank-0 thread) per tree, in `lang`."""
  messages = {}
  children = collections.defaultdict(list)
  for where, m in iter_json_objects(path, bad):
    ok = True
    for key in ("message_id", "role", "text", "lang"):
      if _field(m, key, where, bad, required=True, allow_empty=key != "text") is None:
        ok = False
        break
    if not ok or m.get("deleted") or m.get("review_result") is False:
      continue  # deleted / rejected messages are not part of the released trees
    messages[m["message_id"]] = m
    if m.get("parent_id"):
      children[m["parent_id"]].append(m)
  best = lambda ms: min(ms, key=lambda c: (c.get("rank") is None, c.get("rank") or 0))
  for mid, m in messages.items():
    if m.get("parent_id") or m["role"] != "prompter":
      continue
    code = _check_lang(m["lang"], f"{path} (message {mid})", bad)
    if code != lang or not children.get(mid):
      continue
    turns, node = [m["text"]], best(children[mid])
    turns.append(node["text"])
    while thread and children.get(node["message_id"]):
      user = best(children[node["message_id"]])
      if not children.get(user["message_id"]):
        break
      node = best(children[user["message_id"]])
      turns += [user["text"], node["text"]]
    pairs = list(zip(turns[::2], turns[1::2]))
    yield path, {"id": m.get("message_tree_id") or mid, "instruction": pairs[-1][0],
                 "output": pairs[-1][1], "history": pairs[:-1]}


@gin.configurable(module="linguamix.t5x_tasks")
def bad_record_policy(skip_bad_records: bool = False) -> bool:
  """gin: `bad_record_policy.skip_bad_records = True` skips (and reports) bad records."""
  return skip_bad_records


def _file_key(path: str) -> tuple:
  try:
    st = tf.io.gfile.stat(path)
    return (path, st.length, st.mtime_nsec)
  except tf.errors.NotFoundError:
    raise DataError(f"{path}: file not found") from None


def read_records(path: str, fields, lang: str, *, id_prefix: str = "",
                 skip_bad: bool | None = None, thread: bool = False,
                 empty_output: str = "keep") -> tuple[dict, ...]:
  """Canonical records of one file for one language (cached per file version)."""
  if lang not in languages.ISO639_3:
    raise DataError(f"{path}: unknown language code {lang!r}")
  if empty_output not in EMPTY_OUTPUT:
    raise ValueError(f"empty_output={empty_output!r}; known: {EMPTY_OUTPUT}")
  skip = bad_record_policy() if skip_bad is None else skip_bad
  key = json.dumps(fields, sort_keys=True) if not isinstance(fields, str) else fields
  return _read_cached(_file_key(path), key, lang, id_prefix, skip, thread, empty_output)


# Bounded: a real Bactrian-X language is ~67k records (tens of MB in Python objects).
@functools.lru_cache(maxsize=64)
def _read_cached(file_key, fields_key, lang, id_prefix, skip, thread, empty_output="keep"):
  path = file_key[0]
  spec = resolve_shape(json.loads(fields_key) if fields_key.startswith("{") else fields_key)
  bad = BadRecords(skip, path)
  if spec.get("special") == "lima":
    it = _lima_records(path, lang, bad, id_prefix, empty_output)
  elif spec.get("special") == "oasst1":
    it = _oasst1_records(path, lang, bad, thread)
  else:
    it = _flat_records(path, spec, lang, bad, id_prefix, empty_output)
  out, seen, dropped = [], {}, 0
  for where, rec in it:
    if empty_output == "drop" and not rec["output"].strip():
      dropped += 1
      continue
    if rec["id"] in seen:
      bad.report(where, f"field 'id': duplicate id {rec['id']!r} (first at {seen[rec['id']]})")
      continue
    seen[rec["id"]] = where
    rec.setdefault("input", "")
    rec.setdefault("system", "")
    rec["history"] = tuple(tuple(p) for p in rec.get("history", ()))
    rec["lang"] = lang
    out.append(rec)
  bad.summary(len(out))
  if dropped:
    logging.info("%s: dropped %d record(s) with an empty output (empty_output='drop'), kept %d",
                 path, dropped, len(out))
  if not out and spec.get("filter_lang"):
    raise DataError(f"{path}: no records in language {lang!r} (field "
                    f"{spec['fields']['lang']!r} = {'/'.join(languages.ISO639_3[lang])})")
  if not out:
    raise DataError(f"{path}: no usable records for language {lang!r}")
  return tuple(out)


@functools.lru_cache(maxsize=1 << 20)
def id_fraction(example_id: str) -> float:
  """A stable number in [0, 1) per id: the same id is held out in every language."""
  digest = hashlib.sha256(example_id.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64
