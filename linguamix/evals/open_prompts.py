"""Held-out prompt sets for open-ended generation, as SeqIO generation tasks.

* `mt_bench_x.{de,en,es,fr,it}`: MT-Bench-X first-turn questions (80 per language),
  files `mt_bench_x/{DE,EN,...}/question.jsonl` (+ `reference_answer_gpt-4.jsonl`,
  `judge_prompts.jsonl` for the judge, `linguamix.evals.judge`).
* `better_alpaca_test.{lang}`: the Better Alpaca study's 50 human-translated prompts,
  files `better_alpaca_test/test_{lang}.jsonl` (`id`, `prompt`).

Prompts are rendered with the instruction template of the model's recipe
(`t5x_tasks.family_template`, default `alpaca`; gin e.g.
`family_template.overrides = {"mt_bench_x": "opengptx_chat"}`). The metric is language
consistency: the share of answers in the prompt's language.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from linguamix.evals import consistency
from linguamix.evals import data
from linguamix.evals import generation
from linguamix.evals import registry
from linguamix.t5x_tasks import templates

MT_BENCH_X_LANGUAGES = ("de", "en", "es", "fr", "it")
BETTER_ALPACA_LANGUAGES = ("bg", "cs", "de", "en", "es", "fi", "fr", "ru", "zh")


def render(family: str, prompt: str) -> str:
  template = templates.family_template(family, "alpaca")
  return template({"instruction": prompt, "input": "", "output": ""})[0]


def mt_bench_x_questions(lang: str) -> list[dict[str, Any]]:
  path = data.benchmark_path("mt_bench_x", lang.upper(), "question.jsonl")
  return [row for _, row in data.read_jsonl(path, ("question_id", "category", "turns"))]


def mt_bench_x_references(lang: str) -> dict[str, list[str]]:
  """question_id -> reference turns (GPT-4's, for math/reasoning/coding questions)."""
  path = data.benchmark_path("mt_bench_x", lang.upper(), "reference_answer_gpt-4.jsonl")
  return {row["question_id"]: row["choices"][0]["turns"]
          for _, row in data.read_jsonl(path, ("question_id", "choices"))}


def mt_bench_x_judge_prompts(lang: str) -> dict[str, dict[str, Any]]:
  path = data.benchmark_path("mt_bench_x", lang.upper(), "judge_prompts.jsonl")
  return {row["name"]: row for _, row in data.read_jsonl(
      path, ("name", "type", "system_prompt", "prompt_template", "output_format"))}


def _load_mt_bench_x(lang: str, split: str) -> list[generation.Request]:
  del split
  registry.check_language(MT_BENCH_X, lang)
  refs = mt_bench_x_references(lang)
  return [generation.Request(i, render("mt_bench_x", q["turns"][0]),
                             (refs.get(q["question_id"], [""])[0],))
          for i, q in enumerate(mt_bench_x_questions(lang))]


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
    "mt_bench_x", MT_BENCH_X_LANGUAGES, ("test",), "test", _load_mt_bench_x, _metrics)
BETTER_ALPACA_TEST = generation.GenerationBenchmark(
    "better_alpaca_test", BETTER_ALPACA_LANGUAGES, ("test",), "test", _load_better_alpaca, _metrics)
generation.register_generation_benchmark(MT_BENCH_X)
generation.register_generation_benchmark(BETTER_ALPACA_TEST)
