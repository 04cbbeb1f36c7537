"""Runs a study's grid one run after another; each run is an independent job.

A run whose training finished (`summary.json` beside a checkpoint) is not trained again;
one whose evaluation of the same tasks exists (`eval/run.json`) is not evaluated again.
A failed stage writes `failed.json` (stage, exit status, log) in the run's folder and
the next run goes on. A stage runs through an executor: `run_subprocess` (the default:
the exact commands of `--plan`, one Python per stage) or `InProcess(programs)` (the same
arguments through the same entry points in this Python, which saves the start-up of
each stage on a laptop CPU). The caller hands `InProcess` those entry points: this
library runs command lines, it does not know the command layer that parses them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys
import time
import traceback
from typing import Callable, Mapping, Sequence, TextIO

from linguamix import environ
from linguamix.studies import run_commands
from linguamix.studies.base import Run

STAGES = ("train", "eval", "judge")


def train_done(cfg: run_commands.Config, run: Run) -> bool:
  d = cfg.run_dir(run)
  return os.path.exists(os.path.join(d, "summary.json")) and bool(glob.glob(os.path.join(d, "checkpoint_*")))


def eval_done(cfg: run_commands.Config, run: Run) -> bool:
  path = os.path.join(cfg.eval_dir(run), "run.json")
  if not os.path.exists(path):
    return False
  with open(path, encoding="utf-8") as f:
    return list(json.load(f).get("tasks", [])) == list(cfg.evals)


# Runs `python -m MODULE ARGS` with `env` added, output to the open log; the exit status.
Executor = Callable[[str, Sequence[str], TextIO, Mapping[str, str]], int]

# The programs a study's stages run (`python -m` names): training, evaluation, the judge.
PROGRAMS = ("linguamix.train", "linguamix.eval", "linguamix.cli")


def run_subprocess(module: str, args: Sequence[str], log: TextIO,
                   env: Mapping[str, str]) -> int:
  """One Python per stage: the command line `--plan` writes."""
  return subprocess.call([sys.executable, "-m", module, *args], stdout=log,
                         stderr=subprocess.STDOUT, env={**os.environ, **env})


class InProcess:
  """Runs each stage's arguments through `programs[module]` (the function `python -m
  module` calls with its argv) in this Python, `env` set around it."""

  def __init__(self, programs: Mapping[str, Callable[[list[str]], int | None]]):
    missing = [m for m in PROGRAMS if m not in programs]
    if missing:
      raise ValueError(f"in-process executor: no entry point for {', '.join(missing)}")
    self.programs = dict(programs)

  def __call__(self, module: str, args: Sequence[str], log: TextIO,
               env: Mapping[str, str]) -> int:
    with environ.scoped(dict(env)), contextlib.redirect_stdout(log), \
        contextlib.redirect_stderr(log):
      try:
        return int(self.programs[module](list(args)) or 0)
      except SystemExit as e:  # argparse errors
        return int(e.code or 0) if not isinstance(e.code, str) else 2
      except Exception:  # noqa: BLE001 - a failed run is reported, the next one goes on
        traceback.print_exc(file=log)
        return 1


def execute(module: str, args: Sequence[str], log_path: str, env: Mapping[str, str],
            executor: Executor) -> int:
  """Runs `python -m module args` through `executor`, output appended to `log_path`
  after the command line itself; returns the exit status."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "a", encoding="utf-8") as log:
    log.write(f"$ python -m {module} " + " ".join(args) + "\n")
    log.flush()
    return executor(module, args, log, env)


def _fail(cfg, run, stage: str, rc: int, log: str, **extra) -> dict:
  record = {"run": run.name, "stage": stage, "exit_status": rc, "log": log,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
  with open(os.path.join(cfg.run_dir(run), "failed.json"), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  return record


def run_one(cfg: run_commands.Config, run: Run, executor: Executor, say=print) -> dict:
  """Trains, evaluates (and judges) one run unless done; returns its status record."""
  d = cfg.run_dir(run)
  os.makedirs(d, exist_ok=True)
  failed = os.path.join(d, "failed.json")
  if os.path.exists(failed):
    os.remove(failed)  # a new attempt
  env = run_commands.env(cfg)
  did = []
  if not train_done(cfg, run):
    log = os.path.join(d, "train.log")
    say(f"  {run.name}: training (log {log})")
    rc = execute("linguamix.train", run_commands.train_args(cfg, run), log, env, executor)
    if rc != 0 or not train_done(cfg, run):
      return _fail(cfg, run, "train", rc, log)
    did.append("trained")
  if not eval_done(cfg, run):
    log = os.path.join(d, "eval.log")
    say(f"  {run.name}: evaluating {', '.join(cfg.evals)}")
    rc = execute("linguamix.eval", run_commands.eval_args(cfg, run), log, env, executor)
    if rc != 0 or not eval_done(cfg, run):
      return _fail(cfg, run, "eval", rc, log)
    did.append("evaluated")
  return {"run": run.name, "status": ", ".join(did) if did else "skipped (done)"}


def run_judge(cfg: run_commands.Config, runs: Sequence[Run], executor: Executor,
              say=print) -> list[dict]:
  """Judgements for every evaluated run (after all runs: pairwise needs the baseline)."""
  out = []
  langs = run_commands.judge_langs(cfg)
  for run in runs:
    baseline = run_commands.judge_baseline(cfg, run)
    if baseline is False or not eval_done(cfg, run):
      continue
    for lang in langs:
      args = run_commands.judge_args(cfg, run, lang, baseline or None)
      if os.path.exists(args[args.index("--out") + 1]):
        continue
      log = os.path.join(cfg.run_dir(run), "judge.log")
      say(f"  {run.name}: judging mt_bench_x.{lang}")
      rc = execute("linguamix.cli", args, log, {}, executor)
      if rc != 0:
        out.append(_fail(cfg, run, f"judge {lang}", rc, log))
  return out


def run_grid(cfg: run_commands.Config, runs: Sequence[Run],
             executor: Executor = run_subprocess, say=print) -> list[dict]:
  statuses = []
  for i, run in enumerate(runs, 1):
    say(f"[{i}/{len(runs)}] {run.name}")
    status = run_one(cfg, run, executor, say)
    if "stage" in status:
      say(f"  {run.name}: FAILED in {status['stage']} (exit {status['exit_status']}); "
          f"see {status['log']}")
    statuses.append(status)
  if cfg.judge:
    statuses += run_judge(cfg, runs, executor, say)
  return statuses
