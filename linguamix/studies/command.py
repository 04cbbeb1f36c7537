"""`linguamix study NAME --model MODEL_GIN --init CKPT --out DIR [--runs PATTERN] [--plan]
[--smoke] [--judge ENDPOINT] [--report-only]`: a whole study as one command."""

from __future__ import annotations

import argparse
import json
import os
import sys

from linguamix import studies
from linguamix.studies import commands

CONFIG_FILE = "study.json"


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix study",
      description="A study's published grid of runs (docs/studies.md), each trained with the study's "
                  "gin preset (linguamix/gin/studies/) and evaluated on its benchmarks, then "
                  "OUT/report.md with its figures and OUT/results.csv. Runs are independent: "
                  "finished ones are skipped, a failed one is reported and the rest go on.",
      epilog="Any --gin.NAME=VALUE (or --gin_bindings='NAME = VALUE') is passed to every "
             "training command, after the preset: e.g. --gin.LEARNING_RATE=1e-4.")
  p.add_argument("name", choices=sorted(studies.STUDIES), help="the study")
  p.add_argument("--model", help="model gin (e.g. models/llama2_7b.gin); with --smoke the "
                                 f"default is {commands.SMOKE_MODEL}")
  p.add_argument("--init", help="the pretrained checkpoint every run fine-tunes "
                                "(INITIAL_CHECKPOINT_PATH; --smoke trains from scratch)")
  p.add_argument("--out", required=True, help="the study's folder (runs/, report.md, commands.sh)")
  p.add_argument("--runs", help="only the runs whose names match this glob (comma-separated globs)")
  p.add_argument("--preset", help="training preset of the study (default: its first); see --list")
  p.add_argument("--plan", action="store_true",
                 help="write OUT/commands.sh (one exact command line per run) and stop")
  p.add_argument("--smoke", action="store_true",
                 help="a reduced grid on the tiny default model, the bundled sample set and "
                      "bundled XCOPA: minutes on a CPU, the same figures")
  p.add_argument("--judge", metavar="ENDPOINT",
                 help="OpenAI-compatible base URL for the LLM judge (key: $OPENAI_API_KEY); "
                      "without it the judge is skipped, with a note in the report")
  p.add_argument("--judge-model", default="gpt-4", help="judge model name (default gpt-4)")
  p.add_argument("--report-only", action="store_true",
                 help="rebuild OUT/report.md from the runs' files; run nothing")
  p.add_argument("--list", action="store_true", help="print the grid (runs, mixtures) and presets")
  p.add_argument("--executor", choices=("subprocess", "inprocess"), default="subprocess",
                 help="subprocess: one python -m per stage, as in commands.sh (default); "
                      "inprocess: the same arguments in this Python (saves start-up time)")
  p.add_argument("--gin_bindings", action="append", default=[], help=argparse.SUPPRESS)
  return p


def _saved(out: str) -> dict | None:
  path = os.path.join(out, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def main(argv: list[str]) -> int:
  from linguamix.train import flags
  try:
    argv, dot = flags.split_gin_dot_flags(list(argv))
  except flags.UsageError as e:
    print(f"linguamix study: error: {e}", file=sys.stderr)
    return 2
  parser = _parser()
  args = parser.parse_args(argv)
  study = studies.STUDIES[args.name]
  bindings = tuple(args.gin_bindings) + tuple(dot)

  def error(message: str) -> int:
    print(f"linguamix study: error: {message}", file=sys.stderr)
    return 2

  saved = _saved(args.out)
  if args.report_only and saved:
    if saved["study"] != study.name:
      return error(f"{args.out} holds study {saved['study']!r}, not {study.name!r}")
    cfg = commands.Config(study=study, out=args.out, model_gin=saved["model"],
                          preset=saved["preset"], init=saved.get("init"), smoke=saved["smoke"],
                          bindings=tuple(saved.get("bindings", ())), judge=saved.get("judge"),
                          judge_model=saved.get("judge_model", args.judge_model))
  else:
    preset = args.preset or study.default_preset
    if preset not in study.presets:
      return error(f"--preset {preset!r}: study {study.name} has {', '.join(study.presets)}")
    model = args.model or (commands.SMOKE_MODEL if args.smoke else None)
    if not args.list and not args.report_only:
      if model is None:
        return error("--model MODEL_GIN is required (e.g. models/llama2_7b.gin); "
                     "--smoke uses the tiny default model")
      if not args.init and not args.smoke:
        return error("--init CKPT is required: the pretrained checkpoint every run fine-tunes "
                     "(linguamix convert writes one); --smoke trains the tiny model from scratch")
    cfg = commands.Config(study=study, out=args.out, model_gin=model or "",
                          preset=preset, init=args.init, smoke=args.smoke, bindings=bindings,
                          judge=args.judge, judge_model=args.judge_model)
  runs = study.grid(smoke=cfg.smoke, pattern=args.runs)
  if args.runs and not runs:
    return error(f"--runs {args.runs!r} matches none of the {len(study.grid(smoke=cfg.smoke))} "
                 f"runs of {study.name}{' --smoke' if cfg.smoke else ''} (see --list)")

  if args.list:
    print(f"{study.name}: {len(runs)} runs{' (smoke)' if cfg.smoke else ''}; presets: "
          + ", ".join(f"{k} ({v})" for k, v in study.presets.items()))
    for run in runs:
      print(f"  {run.name}" + (f"  (mixture {run.mixture})" if run.mixture != run.name else ""))
    return 0
  os.makedirs(args.out, exist_ok=True)
  if not args.report_only:
    with open(os.path.join(args.out, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump({"study": study.name, "model": cfg.model_gin, "preset": cfg.preset,
                 "init": cfg.init, "smoke": cfg.smoke, "bindings": list(cfg.bindings),
                 "judge": cfg.judge, "judge_model": cfg.judge_model}, f, indent=1)
  from linguamix.studies import report
  for note in report.preset_notes(cfg):
    print(f"note: {note}")
  if args.plan:
    path = commands.write_plan(cfg, runs)
    print(f"wrote {path} ({len(runs)} runs)")
    return 0
  failed = []
  if not args.report_only:
    from linguamix.studies import runner
    print(f"linguamix study {study.name}: {len(runs)} runs into {os.path.abspath(args.out)}/runs")
    statuses = runner.run_grid(cfg, runs, executor=args.executor)
    failed = [s for s in statuses if "stage" in s]
  path = report.build(cfg, runs)
  print(f"wrote {path}")
  if failed:
    print(f"{len(failed)} run(s) failed: " + ", ".join(f"{s['run']} ({s['stage']})" for s in failed),
          file=sys.stderr)
    return 1
  return 0
