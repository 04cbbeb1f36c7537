"""LLM judge, MT-Bench style: single-answer grading and pairwise comparison in both orders.

Talks to any OpenAI-compatible endpoint through `linguamix.augment.client.ChatClient`
(retries with backoff, key read from the environment and never written) and keeps every
finished judgement in `linguamix.augment.cache.Cache` (append-only JSONL per language),
so a stopped run resumes without repeating requests. Judge prompts are MT-Bench-X's, per
language (`open_prompts.mt_bench_x_judge_prompts`); questions of the categories MT-Bench
grades against a reference (math, reasoning, coding) use the `*-math-v1` prompts.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

from absl import logging

from linguamix.augment import cache as cache_lib
from linguamix.augment import client as client_lib
from linguamix.evals import consistency
from linguamix.evals import open_prompts

BASE_URL_ENV = "OPENAI_BASE_URL"
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
PROMPT_VERSION = "mt-bench-x-judge-v1"  # part of the cache key: change it to re-judge
_RATING = (re.compile(r"\[\[(\d+\.?\d*)\]\]"), re.compile(r"\[(\d+\.?\d*)\]"))
_VERDICTS = {"[[A]]": "A", "[[B]]": "B", "[[C]]": "tie"}


def judge_client(model: str, base_url: str | None = None, **kwargs) -> client_lib.ChatClient:
  """A client for `base_url` or $OPENAI_BASE_URL; the key comes from $OPENAI_API_KEY."""
  base_url = base_url or os.environ.get(BASE_URL_ENV)
  if not base_url:
    raise ValueError(f"no judge endpoint: pass base_url or set ${BASE_URL_ENV}")
  return client_lib.ChatClient(base_url, model, **kwargs)


def parse_rating(text: str) -> float | None:
  for pattern in _RATING:
    match = pattern.search(text)
    if match:
      return float(match.group(1))
  return None


def parse_verdict(text: str) -> str | None:
  found = [v for tag, v in _VERDICTS.items() if tag in text]
  return found[0] if len(found) == 1 else None


def _prompt(prompts: Mapping[str, Mapping[str, Any]], kind: str, question: Mapping[str, Any],
            reference: Sequence[str] | None):
  uses_reference = question.get("category") in REFERENCE_CATEGORIES and reference
  name = f"{kind}-math-v1" if uses_reference else ("pair-v2" if kind == "pair" else "single-v1")
  return prompts[name], (reference[0] if uses_reference else None)


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
      futures = {pool.submit(client.chat, item["messages"]): item for item in todo}
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


def _messages(prompt: Mapping[str, Any], **fields) -> list[dict[str, str]]:
  return [{"role": "system", "content": prompt["system_prompt"]},
          {"role": "user", "content": prompt["prompt_template"].format(**fields)}]


def single(client, lang: str, questions: Sequence[Mapping[str, Any]], answers: Mapping[str, str],
           prompts: Mapping[str, Mapping[str, Any]], references: Mapping[str, Sequence[str]],
           cache_dir: str, workers: int = 8) -> dict[str, Any]:
  """Grades each first-turn answer 1-10; returns {score (mean), num_unparsed, records}."""
  items = []
  for q in questions:
    qid = q["question_id"]
    prompt, ref = _prompt(prompts, "single", q, references.get(qid))
    fields = {"question": q["turns"][0], "answer": answers[qid]}
    if ref is not None:
      fields["ref_answer_1"] = ref
    items.append({"id": qid, "key": cache_lib.item_key(PROMPT_VERSION, client.model,
                                                       {"single": prompt["name"], **fields}, lang),
                  "messages": _messages(prompt, **fields)})
  records = _run(client, lang, items, cache_dir, workers, parse_rating)
  scores = [r["verdict"] for r in records if r["verdict"] is not None]
  return {"score": sum(scores) / len(scores) if scores else float("nan"),
          "num_unparsed": len(records) - len(scores), "records": records}


def pairwise(client, lang: str, questions: Sequence[Mapping[str, Any]], answers_a: Mapping[str, str],
             answers_b: Mapping[str, str], prompts: Mapping[str, Mapping[str, Any]],
             references: Mapping[str, Sequence[str]], cache_dir: str,
             workers: int = 8) -> dict[str, Any]:
  """Compares A and B in both orders; a question is won only if both orders agree,
  otherwise it is a tie (position bias). win_rate_a = (wins_a + ties / 2) / questions."""
  items = []
  for q in questions:
    qid = q["question_id"]
    prompt, ref = _prompt(prompts, "pair", q, references.get(qid))
    for order, (first, second) in (("ab", (answers_a, answers_b)), ("ba", (answers_b, answers_a))):
      fields = {"question": q["turns"][0], "answer_a": first[qid], "answer_b": second[qid]}
      if ref is not None:
        fields["ref_answer_1"] = ref
      items.append({"id": qid, "order": order, "messages": _messages(prompt, **fields),
                    "key": cache_lib.item_key(PROMPT_VERSION, client.model,
                                              {"pair": prompt["name"], **fields}, lang)})
  records = _run(client, lang, items, cache_dir, workers, parse_verdict)
  outcomes = {}
  for qid in dict.fromkeys(r["id"] for r in records):
    ab, ba = (next(r["verdict"] for r in records if r["id"] == qid and r["order"] == o)
              for o in ("ab", "ba"))
    outcomes[qid] = "a" if (ab, ba) == ("A", "B") else "b" if (ab, ba) == ("B", "A") else "tie"
  wins_a = sum(o == "a" for o in outcomes.values())
  wins_b = sum(o == "b" for o in outcomes.values())
  ties = len(outcomes) - wins_a - wins_b
  return {"wins_a": wins_a, "wins_b": wins_b, "ties": ties,
          "win_rate_a": 100.0 * (wins_a + ties / 2) / max(len(outcomes), 1),
          "outcomes": outcomes, "records": records}


def _answers(path: str, questions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
  """question_id -> prediction from a `scores/mt_bench_x.{lang}.jsonl` file (ScoresLogger)."""
  answers = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      try:
        row = json.loads(line)
        answers[questions[int(row["idx"])]["question_id"]] = row["prediction"]
      except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
        raise ValueError(f"{path}:{number}: not a ScoresLogger generation line with idx "
                         f"and prediction ({e!r})") from None
  missing = [q["question_id"] for q in questions if q["question_id"] not in answers]
  if missing:
    raise ValueError(f"{path}: no answer for questions {missing[:5]} ({len(missing)} missing)")
  return answers


def run(args) -> int:
  """`linguamix judge` (parsed in `linguamix.commands.judge`)."""
  try:
    questions = open_prompts.mt_bench_x_questions(args.lang)
    prompts = open_prompts.mt_bench_x_judge_prompts(args.lang)
    references = open_prompts.mt_bench_x_references(args.lang)
    answers_a = _answers(args.answers, questions)
    client = judge_client(args.judge_model, args.base_url)
    if args.answers_b:
      answers_b = _answers(args.answers_b, questions)
      result = pairwise(client, args.lang, questions, answers_a, answers_b, prompts, references,
                        args.cache, args.workers)
      print(f"mt_bench_x.{args.lang}: A wins {result['wins_a']}, B wins {result['wins_b']}, "
            f"ties {result['ties']} (incl. order disagreements); win rate A {result['win_rate_a']:.2f}")
    else:
      result = single(client, args.lang, questions, answers_a, prompts, references,
                      args.cache, args.workers)
      print(f"mt_bench_x.{args.lang}: score {result['score']:.2f} over {len(questions)} answers "
            f"({result['num_unparsed']} judgements without a rating)")
    result["consistency"] = consistency.language_consistency(
        (args.lang, a) for a in answers_a.values())[args.lang]["consistency"]
    print(f"language consistency of A: {result['consistency']:.1f}%")
  except (client_lib.ChatError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2, ensure_ascii=False)
    print(f"wrote {args.out}")
  return 0


def main(argv: list[str]) -> int:
  from linguamix.commands import judge as command
  return command.main(argv)
