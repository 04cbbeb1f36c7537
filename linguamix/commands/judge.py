"""`linguamix judge`; runs `linguamix.evals.judge.run`."""

from __future__ import annotations

import argparse

BASE_URL_ENV = "OPENAI_BASE_URL"  # = judge.BASE_URL_ENV (a test keeps them equal)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix judge",
      description="MT-Bench-X LLM judge against an OpenAI-compatible endpoint (base URL "
                  f"--base-url or ${BASE_URL_ENV}, key from $OPENAI_API_KEY). Answers are the "
                  "scores/mt_bench_x.{lang}.jsonl files that evaluation writes; one file grades "
                  "answers 1-10, two files compare them in both orders.")
  p.add_argument("--lang", required=True, help="MT-Bench-X language (de en es fr it)")
  p.add_argument("--answers", required=True, help="model A's scores/mt_bench_x.{lang}.jsonl")
  p.add_argument("--answers-b", help="model B's file: pairwise comparison instead of grading")
  p.add_argument("--judge-model", required=True, help="model name the endpoint serves")
  p.add_argument("--base-url", help=f"endpoint base URL (default ${BASE_URL_ENV})")
  p.add_argument("--cache", required=True, help="folder of finished judgements (resumable)")
  p.add_argument("--workers", type=int, default=8, help="concurrent requests")
  p.add_argument("--out", help="write the summary and every judgement as JSON here")
  return p


def main(argv: list[str]) -> int:
  args = parser().parse_args(argv)
  from linguamix.evals import judge
  return judge.run(args)
