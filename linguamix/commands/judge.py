"""`linguamix judge`; runs `linguamix.evals.judge.run`."""

from __future__ import annotations

import argparse

BASE_URL_ENV = "OPENAI_BASE_URL"  # = judge.BASE_URL_ENV (a test keeps them equal)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix judge",
      description="MT-Bench-X LLM judge, as FastChat's llm_judge does it, against an "
                  "OpenAI-compatible endpoint (base URL --base-url or "
                  f"${BASE_URL_ENV}, key from $OPENAI_API_KEY). Answers are the two-turn "
                  "conversations that evaluating mt_bench_x.{lang} writes, "
                  "EVAL_OUTPUT_DIR/data/mt_bench_{LANG}/model_answer/{model}.jsonl (FastChat's "
                  "answer format). One file: both turns graded 1-10 (turn 2 with the "
                  "multi-turn prompt); two files: compared per turn in both orders. The "
                  "judgements go to model_judgment/{judge-model}_single.jsonl (_pair.jsonl) "
                  "beside model_answer/, in FastChat's format (its show_result reads them); "
                  "a reply without a rating is kept there as -1, counted, and left out of "
                  "the means.")
  p.add_argument("--lang", required=True, help="MT-Bench-X language (de en es fr it)")
  p.add_argument("--answers", required=True,
                 help="model A's data/mt_bench_{LANG}/model_answer/{model}.jsonl")
  p.add_argument("--answers-b", help="model B's answer file: pairwise comparison instead of grading")
  p.add_argument("--judge-model", required=True,
                 help="model name the endpoint serves (also names the judgment file, e.g. gpt-4)")
  p.add_argument("--base-url", help=f"endpoint base URL (default ${BASE_URL_ENV})")
  p.add_argument("--cache", required=True, help="folder of finished judgements (resumable)")
  p.add_argument("--workers", type=int, default=8, help="concurrent requests")
  p.add_argument("--out", help="write the summary (per turn and category: mean, stderr, "
                               "count) as JSON here")
  return p


def main(argv: list[str]) -> int:
  args = parser().parse_args(argv)
  from linguamix.evals import judge
  return judge.run(args)
