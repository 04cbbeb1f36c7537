"""Selective Translated Augmentation: sample, translate, validate, write (docs/augmentation.md).

`augment()` gives every target language its own seeded subset of an English Orca-shaped
pool (exactly its budget), sends each item to a chat endpoint with the selective-
translation prompt, validates the reply (retrying a rejected item once with the
reason), caches every finished item, and writes per-language JSONL, a rejects file and
a summary. Items that could not be finished (endpoint errors) are reported, not cached,
so the next run retries them.

Outputs are merged, never lost: rows already in `{lang}.jsonl` stay unless this run
accepted the same id again (a run with another `--model`, or with the endpoint down,
adds to what an earlier run wrote; the summary counts them as `kept`); each file is
replaced atomically.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import json
import logging
import os
import time
from typing import Any, Iterable, Mapping

import numpy as np

from linguamix import atomic
from linguamix.augment import prompt, validate
from linguamix.augment.cache import Cache, item_key
from linguamix.augment.client import ChatClient, ChatFailed

log = logging.getLogger(__name__)

ORCA_FIELDS = ("id",) + prompt.FIELDS
REPLY_EXCERPT = 2000  # characters of a rejected reply kept in the rejects file


def read_orca_jsonl(path: str) -> list[dict[str, str]]:
  """Orca-shaped records (`id, system_prompt, question, response`); errors name file:line."""
  items, seen = [], {}
  for number, line in _lines(path):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: malformed JSON line: {e.msg}") from None
    if not isinstance(obj, dict):
      raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for field in ORCA_FIELDS:
      value = obj.get(field)
      if isinstance(value, int) and field == "id":
        value = obj[field] = str(value)
      if not isinstance(value, str):
        raise ValueError(f"{where}: field {field!r} is "
                         f"{'missing' if value is None else type(value).__name__}, expected a string")
      if field in ("id", "question", "response") and not value.strip():
        raise ValueError(f"{where}: field {field!r} is empty")
    if obj["id"] in seen:
      raise ValueError(f"{where}: duplicate id {obj['id']!r} (first at line {seen[obj['id']]})")
    seen[obj["id"]] = number
    items.append({field: obj[field] for field in ORCA_FIELDS})
  if not items:
    raise ValueError(f"{path}: no records")
  return items


def _lines(path: str) -> Iterable[tuple[int, str]]:
  """(line number, text) of a UTF-8 file; bytes that are not UTF-8 name file and line."""
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      try:
        yield number, raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                         f"column {e.start + 1})") from None


def read_outputs(out_dir: str, langs: Iterable[str]) -> tuple[dict[str, dict[str, dict]], list[dict]]:
  """What earlier runs wrote: ({lang: {id: row}}, rejects); bad lines name file:line."""
  rows: dict[str, dict[str, dict]] = {}
  for lang in langs:
    path = os.path.join(out_dir, f"{lang}.jsonl")
    rows[lang] = {}
    if os.path.exists(path):
      for number, line in _lines(path):
        if line.strip():
          row = _json_object(line, f"{path}:{number}")
          rows[lang][str(row.get("id"))] = row
  rejects = []
  path = os.path.join(out_dir, "rejects.jsonl")
  if os.path.exists(path):
    rejects = [_json_object(line, f"{path}:{n}") for n, line in _lines(path) if line.strip()]
  return rows, rejects


def _json_object(line: str, where: str) -> dict:
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise ValueError(f"{where}: malformed JSON line in an earlier output: {e.msg}") from None
  if not isinstance(obj, dict) or "id" not in obj:
    raise ValueError(f"{where}: expected a JSON object with an id in an earlier output")
  return obj


def read_task(task_name: str, split: str = "train") -> list[dict[str, str]]:
  """A registered instruction task's records in Orca shape (question = instruction + input)."""
  import seqio  # pylint: disable=g-import-not-at-top
  import linguamix.t5x_tasks  # pylint: disable=g-import-not-at-top,unused-import
  try:
    task = seqio.get_mixture_or_task(task_name)
  except ValueError:
    raise ValueError(f"unknown task {task_name!r}: not a registered SeqIO task") from None
  if not hasattr(task.source, "examples"):
    raise ValueError(f"task {task_name!r} is not an instruction task (no records to translate)")
  return [{"id": r["id"], "system_prompt": r.get("system", ""),
           "question": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""),
           "response": r["output"]} for r in task.source.examples(split)]


def sample_subsets(ids: list[str], budgets: Mapping[str, int], seed: int
                   ) -> dict[str, list[str]]:
  """{lang: ids}: each language its own seeded sample of exactly its budget, in pool order."""
  out = {}
  for lang, budget in budgets.items():
    if not isinstance(budget, int) or budget < 0:
      raise ValueError(f"language {lang}: budget must be a whole number >= 0, got {budget!r}")
    if budget > len(ids):
      raise ValueError(f"language {lang}: budget {budget} is larger than the pool of "
                       f"{len(ids)} items")
    # A per-language stream (seed, lang): subsets differ across languages, and adding a
    # language does not change the others.
    digest = hashlib.sha256(f"{seed}:{lang}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    chosen = np.sort(rng.choice(len(ids), size=budget, replace=False))
    out[lang] = [ids[i] for i in chosen]
  return out


def translate_item(client: ChatClient, item: dict[str, str], lang: str,
                   checks: validate.Checks) -> dict[str, Any]:
  """One item into one language: a try, and one retry with the reason if rejected."""
  record: dict[str, Any] = {"lang": lang, "id": item["id"], "prompt_tokens": 0,
                            "completion_tokens": 0, "requests": 0, "reasons": []}
  reason = previous = None
  for _ in range(2):
    try:
      reply = client.chat(prompt.messages(item, lang, reason, previous))
    except ChatFailed as e:
      return {**record, "status": "failed", "reason": f"endpoint: {e}"}
    record["requests"] += reply.attempts
    record["prompt_tokens"] += reply.prompt_tokens
    record["completion_tokens"] += reply.completion_tokens
    try:
      output = prompt.parse(reply.text)
      reason = validate.check(item, output, lang, checks)
    except ValueError as e:
      reason = str(e)
    if reason is None:
      return {**record, "status": "accepted", "output": output}
    record["reasons"].append(reason)
    previous = reply.text
  return {**record, "status": "rejected", "reason": reason,
          "reply": (previous or "")[:REPLY_EXCERPT]}


def augment(items: list[dict[str, str]], budgets: Mapping[str, int], *, client: ChatClient,
            out_dir: str, seed: int = 0, cache_dir: str | None = None, workers: int = 8,
            checks: validate.Checks = validate.Checks(), progress: bool = True
            ) -> dict[str, Any]:
  """Translates each language's subset; writes `{lang}.jsonl`, `rejects.jsonl`, `summary.json`.

  Returns the summary. Finished items are cached as they arrive; outputs are written
  from the cache at the end, also when the run stops on an endpoint error.
  """
  # A target needs a name for the prompt and a model in the language identifier.
  targets = (set(prompt.NAMES) & validate.supported_languages()) - {"en"}
  unknown = sorted(set(budgets) - targets)
  if unknown:
    raise ValueError(f"unknown target language(s) {', '.join(unknown)}: targets are ISO "
                     f"639-1 codes other than en, from {' '.join(sorted(targets))}")
  by_id = {item["id"]: item for item in items}
  subsets = sample_subsets(list(by_id), budgets, seed)
  earlier = read_outputs(out_dir, subsets)  # before any request: a bad file stops here
  cache = Cache(cache_dir or os.path.join(out_dir, "cache"))
  for lang in subsets:
    cache.load(lang)
  keys = {(lang, i): item_key(prompt.PROMPT_VERSION, client.model, by_id[i], lang)
          for lang, ids in subsets.items() for i in ids}
  todo = [(lang, i) for lang, ids in subsets.items() for i in ids if keys[lang, i] not in cache]
  stats = collections.Counter(cache_hits=len(keys) - len(todo))
  failed: dict[tuple[str, str], dict[str, Any]] = {}
  started = time.time()
  log.info("augment: %d items in %d language(s); %d cached, %d to translate with %r",
           len(keys), len(subsets), stats["cache_hits"], len(todo), client)
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm(total=len(keys), initial=stats["cache_hits"], unit="item", disable=not progress,
             dynamic_ncols=True, desc="augment")
  error = None

  def finish(lang: str, i: str, record: dict[str, Any]) -> None:
    for name in ("requests", "prompt_tokens", "completion_tokens"):
      stats[name] += record[name]
    stats[record["status"]] += 1
    if record["status"] == "failed":
      failed[lang, i] = record
    else:
      cache.put(lang, {"key": keys[lang, i], "prompt_version": prompt.PROMPT_VERSION,
                       "model": client.model, **record})
    bar.update(1)
    bar.set_postfix(ok=stats["accepted"], rejected=stats["rejected"], failed=stats["failed"],
                    tok_in=stats["prompt_tokens"], tok_out=stats["completion_tokens"],
                    refresh=False)

  pending: dict[cf.Future, tuple[str, str]] = {}
  try:
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
      jobs = iter(todo)
      while error is None:
        # Bounded window of in-flight work: millions of items never sit in memory as futures.
        for lang, i in jobs:
          pending[pool.submit(translate_item, client, by_id[i], lang, checks)] = (lang, i)
          if len(pending) >= 2 * workers:
            break
        if not pending:
          break
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        for future in done:
          if future.exception() is not None:  # EndpointError (or a bug): stop the run
            error = future.exception()
            for other in pending:
              other.cancel()
            break
          finish(*pending.pop(future), future.result())
    # After a stop, requests already in flight have finished: keep their results.
    for future, (lang, i) in pending.items():
      if future.done() and not future.cancelled() and future.exception() is None:
        finish(lang, i, future.result())
  finally:
    bar.close()
    cache.close()
    summary = _write_outputs(out_dir, subsets, by_id, keys, cache, failed, stats,
                             client, seed, time.time() - started, earlier)
  if error is not None:
    raise error
  return summary


def _write_outputs(out_dir, subsets, by_id, keys, cache, failed, stats, client, seed,
                   seconds, earlier) -> dict[str, Any]:
  os.makedirs(out_dir, exist_ok=True)
  earlier_rows, earlier_rejects = earlier
  languages, rejects, decided, row_ids = {}, [], set(), set()
  for lang, ids in subsets.items():
    counts, reasons = collections.Counter(), collections.Counter()
    rows = dict(earlier_rows.get(lang, {}))  # id -> row: earlier rows keep their place
    accepted_now = set()
    wanted = {keys[lang, i] for i in ids}
    finished = {r["key"]: r for r in cache.records(lang) if r["key"] in wanted}
    for i in ids:
      record = finished.get(keys[lang, i]) or failed.get((lang, i))
      status = record["status"] if record else "pending"
      counts[status] += 1
      if record:
        decided.add((lang, i))
      if status == "accepted":
        rows[i] = {"id": i, **record["output"], "lang": lang}
        accepted_now.add(i)
      elif status in ("rejected", "failed"):
        reasons[record["reason"].split(":", 1)[0]] += 1
        rejects.append({"id": i, "lang": lang, "status": status, "reason": record["reason"],
                        "reasons": record.get("reasons", []),
                        **({"reply": record["reply"]} if "reply" in record else {}),
                        "source": by_id[i]})
    path = os.path.join(out_dir, f"{lang}.jsonl")
    _write_jsonl(path, rows.values())
    row_ids.update((lang, i) for i in rows)
    languages[lang] = {"budget": len(ids), "accepted": counts["accepted"],
                       "rejected": counts["rejected"], "failed": counts["failed"],
                       "pending": counts["pending"], "reasons": dict(reasons),
                       "kept": len(set(rows) - accepted_now), "rows": len(rows),
                       "file": os.path.abspath(path)}
  # An earlier reject stays unless this run decided that item (or it has a row now).
  rejects = [r for r in earlier_rejects
             if (r.get("lang"), r.get("id")) not in decided | row_ids] + rejects
  _write_jsonl(os.path.join(out_dir, "rejects.jsonl"), rejects)
  totals = collections.Counter()
  for entry in languages.values():
    totals.update({k: entry[k] for k in ("budget", "accepted", "rejected", "failed", "pending")})
  summary = {
      "prompt_version": prompt.PROMPT_VERSION, "model": client.model,
      "endpoint": client.base_url, "seed": seed,
      "complete": totals["failed"] + totals["pending"] == 0,
      "totals": dict(totals), "languages": languages,
      "this_run": {"requests": stats["requests"], "cache_hits": stats["cache_hits"],
                   "translated": stats["accepted"] + stats["rejected"],
                   "failed": stats["failed"], "prompt_tokens": stats["prompt_tokens"],
                   "completion_tokens": stats["completion_tokens"],
                   "seconds": round(seconds, 2)},
  }
  _write_json(os.path.join(out_dir, "summary.json"), summary)
  return summary


def register_tasks(out_dir: str, prefix: str = "sta", template: str = "opengptx_chat"
                   ) -> list[str]:
  """Registers `{prefix}.{lang}` SeqIO tasks over an augment run's per-language files."""
  from linguamix.t5x_tasks import register_instruction_task  # pylint: disable=g-import-not-at-top
  with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  names = []
  for lang, entry in sorted(summary["languages"].items()):
    if entry.get("rows", entry["accepted"]):
      names.append(f"{prefix}.{lang}")
      register_instruction_task(names[-1], entry["file"], lang, fields="orca",
                                template=template)
  return names


def _write_jsonl(path: str, rows: Iterable[dict[str, Any]]) -> None:
  with atomic.atomic_write(path) as f:  # never a half-written output file
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_json(path: str, obj: Any) -> None:
  with atomic.atomic_write(path) as f:
    json.dump(obj, f, indent=1, ensure_ascii=False)
