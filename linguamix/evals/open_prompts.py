"""Held-out prompt sets for open-ended generation, as SeqIO generation tasks.

* `mt_bench_x.{de,en,es,fr,it}`: MT-Bench-X (80 two-turn questions per language) in its
  release layout, a clone of github.com/Modalities/MT-Bench-X under the eval data root:
  `mt_bench_x/data/mt_bench_{LANG}/question.jsonl`, `reference_answer/gpt-4.jsonl` and
  `judge_prompts.jsonl` (the judge's, `linguamix.evals.judge`). Both turns are generated:
  evaluating `mt_bench_x.de` answers turn 1, then `mt_bench_x_turn2.de` (made from those
  answers) turn 2 with the question and the model's own first answer in the prompt; the
  two answers are written in FastChat's answer format,
  `data/mt_bench_{LANG}/model_answer/{model_id}.jsonl` under the evaluation's output folder.
* `better_alpaca_test.{lang}`: the Better Alpaca study's 50 human-translated prompts,
  files `better_alpaca_test/test_{lang}.jsonl` (`id`, `prompt`).

Prompts are rendered with the instruction template of the model's recipe
(`t5x_tasks.family_template`, default `alpaca`; gin e.g.
`family_template.overrides = {"mt_bench_x": "opengptx_chat"}`). The metric is language
consistency: the share of answers in the prompt's language (per turn for MT-Bench-X).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Any, Mapping, Sequence

from linguamix import atomic
from linguamix.evals import consistency
from linguamix.evals import data
from linguamix.evals import generation
from linguamix.evals import registry
from linguamix.t5x_tasks import templates

MT_BENCH_X_LANGUAGES = ("de", "en", "es", "fr", "it")
MT_BENCH_X_TURNS = 2
# The languages the study released test prompts in (no German: its test set has none).
BETTER_ALPACA_LANGUAGES = ("bg", "bn", "cs", "en", "es", "fi", "fr", "hi", "no", "ru", "zh")


def render(family: str, prompt: str) -> str:
  template = templates.family_template(family, "alpaca")
  return template({"instruction": prompt, "input": "", "output": ""})[0]


def bench_name(lang: str) -> str:
  """FastChat's benchmark name of a language, as the MT-Bench-X release spells it."""
  return f"mt_bench_{lang.upper()}"


def mt_bench_x_path(lang: str, *parts: str) -> str:
  return data.benchmark_path("mt_bench_x", "data", bench_name(lang), *parts)


def _check_turns(path: str, line: int, row: Mapping[str, Any], turns: Any, what: str) -> None:
  if (not isinstance(turns, list) or len(turns) != MT_BENCH_X_TURNS
      or not all(isinstance(t, str) for t in turns)):
    count = len(turns) if isinstance(turns, list) else type(turns).__name__
    raise data.MalformedRowError(
        f"{path}:{line}: question_id {row.get('question_id')!r} has {count} {what}; "
        f"MT-Bench-X questions have {MT_BENCH_X_TURNS}")


def mt_bench_x_questions(lang: str) -> list[dict[str, Any]]:
  """The release's questions in file order; each must have both turns."""
  path = mt_bench_x_path(lang, "question.jsonl")
  rows = data.read_jsonl(path, ("question_id", "category", "turns"))
  for line, row in rows:
    _check_turns(path, line, row, row["turns"], "turns")
  return [row for _, row in rows]


def mt_bench_x_references(lang: str) -> dict[str, list[str]]:
  """question_id -> GPT-4's reference turns (math, reasoning and coding questions)."""
  path = mt_bench_x_path(lang, "reference_answer", "gpt-4.jsonl")
  refs = {}
  for line, row in data.read_jsonl(path, ("question_id", "choices")):
    try:
      turns = row["choices"][0]["turns"]
    except (IndexError, KeyError, TypeError):
      raise data.MalformedRowError(f"{path}:{line}: question_id {row['question_id']!r} has no "
                                   "choices[0].turns") from None
    _check_turns(path, line, row, turns, "reference turns")
    refs[row["question_id"]] = turns
  return refs


def mt_bench_x_judge_prompts(lang: str) -> dict[str, dict[str, Any]]:
  path = mt_bench_x_path(lang, "judge_prompts.jsonl")
  return {row["name"]: row for _, row in data.read_jsonl(
      path, ("name", "type", "system_prompt", "prompt_template", "output_format"))}


def _mt_bench_x_prompt(turns: Sequence[str], answers: Sequence[str]) -> str:
  return templates.conversation_prompt(templates.family_template("mt_bench_x", "alpaca"),
                                       turns, answers)


def _load_mt_bench_x(lang: str, split: str) -> list[generation.Request]:
  del split
  registry.check_language(MT_BENCH_X, lang)
  refs = mt_bench_x_references(lang)
  return [generation.Request(i, _mt_bench_x_prompt(q["turns"][:1], ()),
                             (refs.get(q["question_id"], [""])[0],))
          for i, q in enumerate(mt_bench_x_questions(lang))]


def _mt_bench_x_next_turn(lang: str, split: str,
                          answers: Mapping[int, Sequence[str]]) -> list[generation.Request]:
  """The next turn of every answered question: its earlier turns and the model's own
  answers to them, then the next question; none after the last turn."""
  del split
  questions = mt_bench_x_questions(lang)
  refs = mt_bench_x_references(lang)
  requests = []
  for idx, said in sorted(answers.items()):
    q, turn = questions[idx], len(said)
    if turn < len(q["turns"]):
      requests.append(generation.Request(
          idx, _mt_bench_x_prompt(q["turns"][:turn + 1], said),
          (refs.get(q["question_id"], [""] * (turn + 1))[turn],)))
  return requests


def answer_record(question_id: Any, model_id: str, turns: Sequence[str]) -> dict[str, Any]:
  """One line of FastChat's `model_answer/{model_id}.jsonl` (its gen_model_answer's fields);
  the answer id is derived from the content, so a rerun writes the same id."""
  digest = hashlib.sha256(json.dumps([question_id, model_id, list(turns)]).encode()).hexdigest()
  return {"question_id": question_id, "answer_id": digest[:22], "model_id": model_id,
          "choices": [{"index": 0, "turns": list(turns)}], "tstamp": time.time()}


def answer_path(output_dir: str, lang: str, model_id: str) -> str:
  return os.path.join(output_dir, "data", bench_name(lang), "model_answer", f"{model_id}.jsonl")


def _save_mt_bench_x(lang: str, split: str, answers: Mapping[int, Sequence[str]],
                     output_dir: str, model_id: str) -> str:
  """FastChat's answer file of the conversations (question order)."""
  del split
  questions = mt_bench_x_questions(lang)
  path = answer_path(output_dir, lang, model_id)
  with atomic.atomic_write(path) as f:
    for idx, said in sorted(answers.items()):
      f.write(json.dumps(answer_record(questions[idx]["question_id"], model_id, said),
                         ensure_ascii=False) + "\n")
  return path


def _load_better_alpaca(lang: str, split: str) -> list[generation.Request]:
  del split
  registry.check_language(BETTER_ALPACA_TEST, lang)
  path = data.benchmark_path("better_alpaca_test", f"test_{lang}.jsonl")
  return [generation.Request(i, render("better_alpaca_test", row["prompt"]), ("",))
          for i, (_, row) in enumerate(data.read_jsonl(path, ("id", "prompt")))]


def consistency_metric(targets: Sequence[Any], predictions: Sequence[str], *,
                       lang: str) -> dict[str, float]:
  del targets
  result = consistency.language_consistency((lang, p) for p in predictions)[lang]
  return {"consistency": result["consistency"], "num_examples": float(result["num_answers"])}


def _metrics(lang: str):
  return [functools.partial(consistency_metric, lang=lang)]


MT_BENCH_X = generation.GenerationBenchmark(
    "mt_bench_x", MT_BENCH_X_LANGUAGES, ("test",), "test", _load_mt_bench_x, _metrics,
    next_turn=_mt_bench_x_next_turn, save_answers=_save_mt_bench_x)
BETTER_ALPACA_TEST = generation.GenerationBenchmark(
    "better_alpaca_test", BETTER_ALPACA_LANGUAGES, ("test",), "test", _load_better_alpaca, _metrics)
generation.register_generation_benchmark(MT_BENCH_X)
generation.register_generation_benchmark(BETTER_ALPACA_TEST)
