"""`linguamix judge`: MT-Bench-X judgements with `linguamix.evals.judge`."""

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
  return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
  import json
  import sys

  from linguamix import atomic
  from linguamix.augment import client as client_lib
  from linguamix.evals import consistency, judge, open_prompts
  try:
    questions = open_prompts.mt_bench_x_questions(args.lang)
    prompts = open_prompts.mt_bench_x_judge_prompts(args.lang)
    references = open_prompts.mt_bench_x_references(args.lang)
    answers_a = judge.load_answers(args.answers, questions)
    model_a = judge.model_of(args.answers)
    client = judge.judge_client(args.judge_model, args.base_url)
    if args.answers_b:
      answers_b = judge.load_answers(args.answers_b, questions)
      model_b = judge.model_of(args.answers_b)
      result = judge.pairwise(client, args.lang, questions, answers_a, answers_b, prompts,
                              references, args.cache, model_a, model_b, args.workers)
      path = judge.judgment_path(args.answers, args.judge_model, "pair")
      judge.write_judgments(path, result["judgments"], lambda j: (
          j.get("model_1"), j.get("model_2"), j["judge"][0]) == (model_a, model_b, args.judge_model))
      print(f"mt_bench_x.{args.lang}: {model_a} vs {model_b}, judge {args.judge_model}, both orders")
      print("| turn | wins 1 | wins 2 | ties (incl. order disagreements) | errors | win rate 1 |\n"
            "|---|---|---|---|---|---|")
      for r in result["table"]:
        print(f"| {r['turn']} | {r['wins_1']} | {r['wins_2']} | {r['ties']} | {r['num_errors']} | "
              f"{judge.format_score(r['win_rate_1'])} |")
    else:
      result = judge.single(client, args.lang, questions, answers_a, prompts, references,
                            args.cache, model_a, args.workers)
      path = judge.judgment_path(args.answers, args.judge_model, "single")
      judge.write_judgments(path, result["judgments"],
                            lambda j: (j.get("model"), j["judge"][0]) == (model_a, args.judge_model))
      print(f"mt_bench_x.{args.lang}: {model_a}, judge {args.judge_model}, {len(questions)} "
            f"questions x {len(judge.TURNS)} turns")
      print(judge.markdown_single(result["table"]))
      print(f"score {judge.format_score(result['score'])} (mean of both turns); {result['num_unparsed']} "
            "judgements without a rating (-1, left out of the means)")
    print(f"wrote {path}")
    result["consistency"] = {
        str(turn): consistency.language_consistency(
            (args.lang, answers_a[q["question_id"]][turn - 1]) for q in questions)[args.lang]["consistency"]
        for turn in judge.TURNS}
    print("language consistency of " + model_a + ": " + ", ".join(
        f"turn {t} {v:.1f}%" for t, v in result["consistency"].items()))
  except (client_lib.ChatError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.out:
    summary = {k: v for k, v in result.items() if k != "judgments"}
    summary.update(lang=args.lang, judgments_file=path, judge_model=args.judge_model)
    with atomic.atomic_write(args.out) as f:
      json.dump(summary, f, indent=2, ensure_ascii=False)
    print(f"wrote {args.out}")
  return 0
