"""`linguamix augment`: build sPhinX-style multilingual data with an LLM endpoint."""

from __future__ import annotations

import argparse
import logging
import sys

from linguamix.augment import client as client_lib
from linguamix.augment import prompt, run, validate


def _budgets(args) -> dict[str, int]:
  if args.budgets:
    out = {}
    for part in args.budgets.split(","):
      lang, _, number = part.strip().partition("=")
      if not number.strip().isdigit():
        raise ValueError(f"--budgets: expected LANG=N, got {part!r}")
      out[lang.strip()] = int(number)
    return out
  langs = args.langs.replace(",", " ").split() if args.langs else None
  if args.budget is not None:
    if not langs:
      raise ValueError("--budget N needs --langs (or give --budgets LANG=N,...)")
    return {lang: args.budget for lang in langs}
  from linguamix.mixtures import sphinx_tiers  # pylint: disable=g-import-not-at-top
  if langs is None:
    return {lang: n for lang, n in sphinx_tiers.budgets().items() if lang != "en"}
  return sphinx_tiers.budgets(langs=langs)


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="linguamix augment",
      description="Selective Translated Augmentation (sPhinX): translate the task-critical "
                  "parts of English Orca-style items into target languages with any "
                  "OpenAI-compatible chat endpoint; validate, cache, resume; write "
                  "OUT/{lang}.jsonl, OUT/rejects.jsonl and OUT/summary.json.",
      epilog="Re-running the same command costs no requests for finished items (cache "
             "under OUT/cache); a killed run resumes where it stopped.")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--input", metavar="FILE.jsonl",
                      help="English Orca-shaped JSONL: id, system_prompt, question, response")
  source.add_argument("--task", metavar="NAME",
                      help="a registered instruction task to translate (e.g. bactrian_x.en)")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--base-url", required=True,
                      help="endpoint base URL, e.g. https://api.openai.com/v1 "
                           "(requests go to BASE/chat/completions)")
  parser.add_argument("--model", required=True, help="model name sent to the endpoint")
  parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                      help="environment variable holding the API key (default %(default)s); "
                           "the key is never logged, cached or written")
  parser.add_argument("--langs", help="target languages, comma-separated ISO 639-1 codes "
                                      "(default: the 50 non-English sPhinX languages)")
  parser.add_argument("--budget", type=int, help="items per language (with --langs)")
  parser.add_argument("--budgets", help="per-language items, e.g. de=1000,sw=250 "
                                        "(default: the sPhinX tier table, 100k/50k/25k)")
  parser.add_argument("--seed", type=int, default=0, help="subset sampling seed")
  parser.add_argument("--workers", type=int, default=8, help="concurrent requests")
  parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
  parser.add_argument("--max-retries", type=int, default=6,
                      help="retries per request on 429/5xx/timeouts/malformed replies")
  parser.add_argument("--backoff", type=float, default=1.0,
                      help="first retry delay in seconds (doubles, with jitter)")
  parser.add_argument("--temperature", type=float, default=0.0)
  parser.add_argument("--max-tokens", type=int, default=None)
  parser.add_argument("--cache-dir", help="cache directory (default OUT/cache)")
  parser.add_argument("--min-length-ratio", type=float, default=validate.Checks.min_length_ratio)
  parser.add_argument("--max-length-ratio", type=float, default=validate.Checks.max_length_ratio)
  parser.add_argument("--task-prefix", default="sta",
                      help="register the output as SeqIO tasks PREFIX.LANG (default %(default)s)")
  parser.add_argument("--no-register", action="store_true",
                      help="skip registering (and reading back) the output as SeqIO tasks")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

  def fail(message: str, code: int) -> int:
    print(f"linguamix augment: error: {message}", file=sys.stderr)
    return code

  try:
    budgets = _budgets(args)
    items = run.read_orca_jsonl(args.input) if args.input else run.read_task(args.task)
    chat = client_lib.ChatClient(
        args.base_url, args.model, api_key_env=args.api_key_env, timeout=args.timeout,
        max_retries=args.max_retries, backoff=args.backoff, temperature=args.temperature,
        max_tokens=args.max_tokens)
  except (ValueError, OSError) as e:
    return fail(str(e), 2)
  checks = validate.Checks(args.min_length_ratio, args.max_length_ratio)
  try:
    summary = run.augment(items, budgets, client=chat, out_dir=args.out, seed=args.seed,
                          cache_dir=args.cache_dir, workers=args.workers, checks=checks,
                          progress=not args.no_progress)
  except ValueError as e:
    return fail(str(e), 2)
  except client_lib.EndpointError as e:
    return fail(f"{e}; finished items are cached and written under {args.out}", 1)
  print(_table(summary))
  if not args.no_register:
    names = run.register_tasks(args.out, args.task_prefix)
    print(f"registered SeqIO tasks: {' '.join(names)} "
          f"(in Python: linguamix.augment.register_tasks({args.out!r}, {args.task_prefix!r}))")
  if not summary["complete"]:
    return fail(f"{summary['totals']['failed']} item(s) failed on endpoint errors "
                f"(see {args.out}/rejects.jsonl); run the same command again to retry them", 1)
  return 0


def _table(summary) -> str:
  lines = [f"{'lang':<6}{'budget':>8}{'accepted':>10}{'rejected':>10}{'failed':>8}  reasons"]
  for lang, e in summary["languages"].items():
    reasons = ", ".join(f"{k} {n}" for k, n in sorted(e["reasons"].items()))
    lines.append(f"{lang:<6}{e['budget']:>8}{e['accepted']:>10}{e['rejected']:>10}"
                 f"{e['failed']:>8}  {reasons}")
  run_ = summary["this_run"]
  lines.append(f"this run: {run_['requests']} requests, {run_['cache_hits']} cache hits, "
               f"{run_['prompt_tokens']} prompt + {run_['completion_tokens']} completion "
               f"tokens, {run_['seconds']} s; prompt {summary['prompt_version']}, "
               f"model {summary['model']}")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
