"""LLM judge, MT-Bench style (FastChat's `llm_judge`): both turns graded 1-10, or
compared pairwise in both orders, in each language's translated judge prompts.

Turn 1 is judged with `single-v1` (`pair-v2`), turn 2 with `single-v1-multi-turn`
(`pair-v2-multi-turn`), which show the whole conversation; questions of the categories
MT-Bench grades against GPT-4's reference answers (math, reasoning, coding) use the
`*-math-v1` variants. The messages, the request (temperature 0, at most 2048 tokens), the
rating pattern (`[[x]]`, else `[x]`; -1 when the reply has none) and the judgment files
(`model_judgment/{judge}_single.jsonl`, `{judge}_pair.jsonl`) are FastChat's, so its
`show_result` reads them. A -1 is kept in the file and counted, and left out of the
means as FastChat does.

Talks to any OpenAI-compatible endpoint through `linguamix.augment.client.ChatClient`
(retries with backoff, key read from the environment and never written) and keeps every
finished judgement in `linguamix.augment.cache.Cache` (append-only JSONL per language),
so a stopped run resumes without repeating requests.
"""

from __future__ import annotations

import ast
import collections
import concurrent.futures
import json
import math
import os
import re
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging

from linguamix import atomic
from linguamix.augment import cache as cache_lib
from linguamix.augment import client as client_lib
from linguamix.evals import open_prompts

BASE_URL_ENV = "OPENAI_BASE_URL"
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
TURNS = (1, 2)
PROMPT_VERSION = "mt-bench-x-judge-v2"  # part of the cache key: change it to re-judge
# What FastChat's `chat_completion_openai` asks for besides the model and messages.
REQUEST_PARAMS = {"n": 1, "temperature": 0, "max_tokens": 2048}
NO_RATING = -1
_RATING = (re.compile(r"\[\[(\d+\.?\d*)\]\]"), re.compile(r"\[(\d+\.?\d*)\]"))
_VERDICTS = (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie"))  # checked in this order


def judge_client(model: str, base_url: str | None = None, **kwargs) -> client_lib.ChatClient:
  """A client for `base_url` or $OPENAI_BASE_URL; the key comes from $OPENAI_API_KEY."""
  base_url = base_url or os.environ.get(BASE_URL_ENV)
  if not base_url:
    raise ValueError(f"no judge endpoint: pass base_url or set ${BASE_URL_ENV}")
  return client_lib.ChatClient(base_url, model, **kwargs)


def parse_rating(text: str) -> int | float:
  """The judge's 1-10 rating, or -1 when its reply has none."""
  for pattern in _RATING:
    match = pattern.search(text)
    if match:
      return ast.literal_eval(match.group(1))
  return NO_RATING


def parse_verdict(text: str) -> str:
  """'A', 'B', 'tie', or 'error' when the reply names no verdict."""
  return next((v for tag, v in _VERDICTS if tag in text), "error")


def prompt_name(kind: str, category: str, turn: int) -> str:
  """`single-v1`, `single-math-v1-multi-turn`, `pair-v2`, ... for a question and turn."""
  names = {"single": ("single-v1", "single-math-v1"), "pair": ("pair-v2", "pair-math-v1")}[kind]
  return names[category in REFERENCE_CATEGORIES] + ("-multi-turn" if turn == 2 else "")


def user_prompt(template: Mapping[str, Any], question: Mapping[str, Any],
                answers: Sequence[Sequence[str]], reference: Sequence[str] | None,
                turn: int) -> str:
  """The judge prompt's user message: one conversation (single grading) or two (A, B)."""
  fields = {}
  if reference is not None:
    fields["ref_answer_1"] = reference[0]
    if turn == 2:
      fields["ref_answer_2"] = reference[1]
  q = question["turns"]
  if len(answers) == 1:
    (a,) = answers
    fields.update({"question": q[0], "answer": a[0]} if turn == 1 else
                  {"question_1": q[0], "question_2": q[1], "answer_1": a[0], "answer_2": a[1]})
  else:
    a, b = answers
    fields.update({"question": q[0], "answer_a": a[0], "answer_b": b[0]} if turn == 1 else
                  {"question_1": q[0], "question_2": q[1], "answer_a_1": a[0],
                   "answer_b_1": b[0], "answer_a_2": a[1], "answer_b_2": b[1]})
  return template["prompt_template"].format(**fields)


def messages(template: Mapping[str, Any], user: str) -> list[dict[str, str]]:
  system = template["system_prompt"]
  return ([{"role": "system", "content": system}] if system else []) + \
      [{"role": "user", "content": user}]


def _run(client, lang: str, items: list[dict[str, Any]], cache_dir: str, workers: int,
         parse: Callable[[str], Any]) -> list[dict[str, Any]]:
  """Judges items ({key, messages, ...}); cached ones cost nothing. Returns records."""
  cache = cache_lib.Cache(cache_dir)
  cache.load(lang)
  todo = [item for item in items if item["key"] not in cache]
  logging.info("judge %s: %d of %d judgements cached", lang, len(items) - len(todo), len(items))
  failed, stored, error = [], set(), None

  def store(item, reply):
    # Only the main thread writes the cache; a record is on disk before the next.
    cache.put(lang, {"key": item["key"], "id": item["id"], "judgement": reply.text,
                     "verdict": parse(reply.text)})
    stored.add(item["key"])

  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
      futures = {pool.submit(client.chat, item["messages"], **REQUEST_PARAMS): item for item in todo}
      for future in concurrent.futures.as_completed(futures):
        item = futures[future]
        try:
          reply = future.result()
        except client_lib.EndpointError as e:
          error = e
          for other in futures:
            other.cancel()
          break
        except client_lib.ChatFailed as e:
          failed.append(item["key"])
          logging.warning("judge %s %s failed: %s", lang, item["id"], e)
          continue
        store(item, reply)
    if error is not None:
      # Requests in flight when the endpoint failed have finished (the pool waited for
      # them): keep what was paid for, then stop.
      for future, item in futures.items():
        if (item["key"] not in stored and future.done() and not future.cancelled()
            and future.exception() is None):
          store(item, future.result())
      raise error
  finally:
    cache.close()
  if failed:
    raise client_lib.ChatFailed(f"{len(failed)} judgements failed after retries (finished ones "
                                f"are cached in {cache_dir}; re-run to retry)")
  by_key = {r["key"]: r for r in cache_lib.Cache(cache_dir).records(lang)}
  return [dict(by_key[item["key"]], **{k: v for k, v in item.items() if k not in ("messages", "key")})
          for item in items]


def _template(prompts: Mapping[str, Mapping[str, Any]], name: str, lang: str) -> Mapping[str, Any]:
  if name not in prompts:
    raise ValueError(f"{open_prompts.mt_bench_x_path(lang, 'judge_prompts.jsonl')}: no judge "
                     f"prompt {name!r} (it has {sorted(prompts)})")
  return prompts[name]


def _reference(q: Mapping[str, Any], references: Mapping[str, Sequence[str]], lang: str):
  if q["category"] not in REFERENCE_CATEGORIES:
    return None
  if q["question_id"] not in references:
    raise ValueError(f"{open_prompts.mt_bench_x_path(lang, 'reference_answer', 'gpt-4.jsonl')}: "
                     f"no reference answer for {q['category']} question {q['question_id']!r}")
  return references[q["question_id"]]


def _mean_stderr(values: Sequence[float]) -> tuple[float | None, float | None]:
  """Mean and standard error (sample standard deviation / sqrt(n)); None where undefined."""
  n = len(values)
  if not n:
    return None, None
  mean = sum(values) / n
  if n < 2:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def score_table(judgments: Sequence[Mapping[str, Any]],
                category_of: Mapping[Any, str]) -> list[dict[str, Any]]:
  """Rows {turn, category, mean, stderr, count, num_unparsed} per turn (1, 2, 'all') and
  category (each, then 'all'); means over the rated judgements, -1s counted apart."""
  rows = []
  categories = list(dict.fromkeys(category_of.values())) + ["all"]
  for turn in (*TURNS, "all"):
    for category in categories:
      got = [j["score"] for j in judgments
             if turn in ("all", j["turn"]) and category in ("all", category_of[j["question_id"]])]
      rated = [float(v) for v in got if v != NO_RATING]
      mean, stderr = _mean_stderr(rated)
      rows.append({"turn": turn, "category": category, "mean": mean, "stderr": stderr,
                   "count": len(rated), "num_unparsed": len(got) - len(rated)})
  return rows


def single(client, lang: str, questions: Sequence[Mapping[str, Any]],
           answers: Mapping[Any, Sequence[str]], prompts: Mapping[str, Mapping[str, Any]],
           references: Mapping[str, Sequence[str]], cache_dir: str, model_id: str,
           workers: int = 8) -> dict[str, Any]:
  """Grades both turns of every answer 1-10. Returns {score (mean of both turns), table,
  num_unparsed, judgments (FastChat's records)}."""
  items = []
  for turn in TURNS:
    for q in questions:
      name = prompt_name("single", q["category"], turn)
      template = _template(prompts, name, lang)
      user = user_prompt(template, q, [answers[q["question_id"]]], _reference(q, references, lang), turn)
      sent = messages(template, user)
      items.append({"id": q["question_id"], "turn": turn, "name": name, "user_prompt": user,
                    "messages": sent, "key": cache_lib.item_key(
                        PROMPT_VERSION, client.model, {"messages": json.dumps(sent)}, lang)})
  records = _run(client, lang, items, cache_dir, workers, parse_rating)
  judgments = [{"question_id": r["id"], "model": model_id, "judge": [client.model, r["name"]],
                "user_prompt": r["user_prompt"], "judgment": r["judgement"], "score": r["verdict"],
                "turn": r["turn"], "tstamp": time.time()} for r in records]
  table = score_table(judgments, {q["question_id"]: q["category"] for q in questions})
  overall = next(r for r in table if r["turn"] == "all" and r["category"] == "all")
  return {"score": overall["mean"], "num_unparsed": overall["num_unparsed"], "table": table,
          "judgments": judgments}


def _winner(verdict: str, order: str) -> str:
  """FastChat's g1/g2 winners: A and B mapped back to model_1 / model_2."""
  first, second = ("model_1", "model_2") if order == "g1" else ("model_2", "model_1")
  return {"A": first, "B": second}.get(verdict, verdict)


def pairwise(client, lang: str, questions: Sequence[Mapping[str, Any]],
             answers_1: Mapping[Any, Sequence[str]], answers_2: Mapping[Any, Sequence[str]],
             prompts: Mapping[str, Mapping[str, Any]], references: Mapping[str, Sequence[str]],
             cache_dir: str, model_1: str, model_2: str, workers: int = 8) -> dict[str, Any]:
  """Compares both turns of model 1 and model 2 in both orders (g1: model 1 is A). As in
  FastChat's results, a game is won only when both orders agree, a tie otherwise; a game
  with an unreadable verdict is counted in num_errors and left out of the rates.
  win_rate_1 = (wins_1 + ties / 2) / games, per turn and over both."""
  items = []
  for turn in TURNS:
    for q in questions:
      name = prompt_name("pair", q["category"], turn)
      template = _template(prompts, name, lang)
      ref = _reference(q, references, lang)
      qid = q["question_id"]
      for order, pair in (("g1", (answers_1[qid], answers_2[qid])),
                          ("g2", (answers_2[qid], answers_1[qid]))):
        user = user_prompt(template, q, pair, ref, turn)
        sent = messages(template, user)
        items.append({"id": qid, "turn": turn, "order": order, "name": name, "user_prompt": user,
                      "messages": sent, "key": cache_lib.item_key(
                          PROMPT_VERSION, client.model, {"messages": json.dumps(sent)}, lang)})
  records = _run(client, lang, items, cache_dir, workers, parse_verdict)
  by_game = collections.defaultdict(dict)
  for r in records:
    by_game[(r["id"], r["turn"])][r["order"]] = r
  judgments = []
  for (qid, turn), game in by_game.items():
    g1, g2 = game["g1"], game["g2"]
    judgments.append({"question_id": qid, "model_1": model_1, "model_2": model_2,
                      "g1_winner": _winner(g1["verdict"], "g1"),
                      "g2_winner": _winner(g2["verdict"], "g2"),
                      "judge": [client.model, g1["name"]],
                      "g1_user_prompt": g1["user_prompt"], "g1_judgment": g1["judgement"],
                      "g2_user_prompt": g2["user_prompt"], "g2_judgment": g2["judgement"],
                      "turn": turn, "tstamp": time.time()})
  table = []
  for turn in (*TURNS, "all"):
    games = [j for j in judgments if turn in ("all", j["turn"])]
    errors = sum("error" in (j["g1_winner"], j["g2_winner"]) for j in games)
    played = [j for j in games if "error" not in (j["g1_winner"], j["g2_winner"])]
    wins_1 = sum(j["g1_winner"] == j["g2_winner"] == "model_1" for j in played)
    wins_2 = sum(j["g1_winner"] == j["g2_winner"] == "model_2" for j in played)
    ties = len(played) - wins_1 - wins_2
    table.append({"turn": turn, "wins_1": wins_1, "wins_2": wins_2, "ties": ties,
                  "num_errors": errors,
                  "win_rate_1": 100.0 * (wins_1 + ties / 2) / len(played) if played else None})
  overall = table[-1]
  return {"win_rate_1": overall["win_rate_1"], "num_errors": overall["num_errors"],
          "table": table, "judgments": judgments}


def load_answers(path: str, questions: Sequence[Mapping[str, Any]]) -> dict[Any, list[str]]:
  """question_id -> both turns' answers, from FastChat's `model_answer/{model}.jsonl`."""
  answers = {}
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except OSError as e:
    raise FileNotFoundError(f"{path}: {e.strerror}") from None
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      turns = row["choices"][0]["turns"]
      qid = row["question_id"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
      raise ValueError(f"{path}:{number}: not a FastChat answer line with question_id and "
                       f"choices[0].turns ({e!r})") from None
    if (not isinstance(turns, list) or len(turns) != len(TURNS)
        or not all(isinstance(t, str) for t in turns)):
      raise ValueError(f"{path}:{number}: question_id {qid!r} has "
                       f"{len(turns) if isinstance(turns, list) else turns!r} answer turns; "
                       f"MT-Bench-X needs {len(TURNS)}")
    answers[qid] = turns
  missing = [q["question_id"] for q in questions if q["question_id"] not in answers]
  if missing:
    raise ValueError(f"{path}: no answer for questions {missing[:5]} ({len(missing)} missing)")
  return answers


def model_of(answer_path: str) -> str:
  """FastChat's model name of an answer file: its name without `.jsonl`."""
  return os.path.basename(answer_path)[:-len(".jsonl")] if answer_path.endswith(".jsonl") \
      else os.path.basename(answer_path)


def judgment_path(answer_path: str, judge_model: str, kind: str) -> str:
  """`data/{bench}/model_judgment/{judge}_{single|pair}.jsonl` beside `model_answer/`."""
  bench_dir = os.path.dirname(os.path.dirname(os.path.abspath(answer_path)))
  return os.path.join(bench_dir, "model_judgment", f"{judge_model}_{kind}.jsonl")


def write_judgments(path: str, judgments: Sequence[Mapping[str, Any]],
                    same: Callable[[Mapping[str, Any]], bool]) -> None:
  """Replaces the records `same` picks (this model's, this judge's) and keeps the others
  (other models judged into the same file, as FastChat's appends do)."""
  kept = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      kept = [line for line in f.read().splitlines() if line.strip() and not same(json.loads(line))]
  with atomic.atomic_write(path) as f:
    for line in kept:
      f.write(line + "\n")
    for j in judgments:
      f.write(json.dumps(j, ensure_ascii=False) + "\n")


def format_score(value: float | None) -> str:
  return "" if value is None else f"{value:.2f}"


def markdown_single(table: Sequence[Mapping[str, Any]]) -> str:
  lines = ["| turn | category | mean | stderr | count | unparsed (-1) |", "|---|---|---|---|---|---|"]
  lines += [f"| {r['turn']} | {r['category']} | {format_score(r['mean'])} | {format_score(r['stderr'])} | "
            f"{r['count']} | {r['num_unparsed']} |" for r in table]
  return "\n".join(lines)
