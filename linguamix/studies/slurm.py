"""A study's grid through SLURM: job arrays, dependencies, requeue on preemption, status.

One submission (`linguamix study NAME --executor slurm`) writes `OUT/slurm/submission_K/`:

* `train_C.sh`: a job array, one task per run still to train (split into several arrays
  `C = 0, 1, ...` where the cluster's `MaxArraySize` is smaller than the grid);
* `eval_C.sh`: the matching evaluation array, each task started when the same task of
  `train_C` succeeded (`--dependency=aftercorr`); runs trained before only evaluate;
* `judge.sh` (with `--judge`): after every evaluation (`afterany`);
* `report.sh`: `linguamix study NAME --out OUT --report-only` after all of them (`afterany`);
* `submit.sh`: the exact `sbatch` lines that were run, with the job ids they returned, and
  `jobs.json` (job id and array index of each run's stages) that `--status` reads.

Every task runs its stage's exact command (the line `--plan` writes) under
`python -m linguamix.studies.slurm_task`, which skips a finished stage, appends the
command's output to `OUT/slurm/logs/RUN/STAGE.log`, requeues the task when the command
stopped on SIGTERM (exit 143: the trainer checkpointed; the requeued task resumes from
that checkpoint) unless the job was cancelled, requeues a failure at most `--retries`
times (never a usage error, exit 2: it would fail again), and otherwise writes the run's
`failed.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from typing import Mapping, Sequence

from linguamix.studies import run_commands
from linguamix.studies import grid
from linguamix.studies.base import Run

STAGES = ("train", "eval", "judge", "report")
# Options each job's script sets itself: from --slurm they would break the grid's bookkeeping.
OWN_OPTIONS = {"array", "dependency", "job-name", "output", "error", "open-mode", "requeue",
               "no-requeue", "kill-on-invalid-dep", "parsable", "wrap", "wait", "hold", "help",
               "usage", "version", "test-only"}
JOBS_FILE = "jobs.json"
TASK_MODULE = "linguamix.studies.slurm_task"


class SlurmError(Exception):
  """A problem the user fixes (a flag, the cluster's answer): one `error:` line."""


# --- resources ---------------------------------------------------------------------------

def parse_resources(specs: Sequence[str], known: Mapping[str, bool]
                    ) -> dict[str, list[tuple[str, str | None]]]:
  """`--slurm [STAGE:]KEY=VALUE,...` values -> per stage, the sbatch long options in order.

  Without a STAGE the options go to every stage; a later value of the same key wins. A
  piece without `=` is a flag when it names one of sbatch's options (`exclusive`), else
  the rest of the previous value's list (`nodelist=n1,n2`)."""
  out: dict[str, dict[str, str | None]] = {s: {} for s in STAGES}
  for spec in specs:
    stages = STAGES
    head, sep, rest = spec.partition(":")
    if sep and head in STAGES:
      stages, spec = (head,), rest
    pairs: list[list] = []
    for piece in spec.split(","):
      piece = piece.strip()
      key, eq, value = piece.partition("=")
      if eq and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
        pairs.append([key, value])
      elif pairs and pairs[-1][1] is not None and piece not in known:
        pairs[-1][1] += "," + piece
      elif piece:
        pairs.append([piece, None])
    for stage in stages:
      for key, value in pairs:
        out[stage][key] = value
  return {s: list(v.items()) for s, v in out.items()}


def sbatch_options(env: Mapping[str, str] | None = None) -> dict[str, bool]:
  """sbatch's long options, from its own `--help`: name -> whether it takes a value."""
  done = subprocess.run(["sbatch", "--help"], capture_output=True, text=True, env=env)
  if done.returncode != 0:
    raise SlurmError("`sbatch --help` failed: " + _last_line(done.stderr))
  found = {}
  for line in done.stdout.splitlines():
    m = re.match(r"\s+(?:-\w,?\s+)?--([a-z][a-z0-9-]*)(\[?=)?", line)
    if m:
      found[m.group(1)] = bool(m.group(2))
  return found


def check_resources(resources: Mapping[str, list[tuple[str, str | None]]],
                    known: Mapping[str, bool]) -> None:
  for stage, pairs in resources.items():
    for key, value in pairs:
      where = f"--slurm {stage + ':' if stage else ''}{key}"
      if key in OWN_OPTIONS:
        raise SlurmError(f"{where}: set by linguamix study itself (see OUT/slurm/*/*.sh)")
      if key not in known:
        near = key.lower().replace("_", "-")
        raise SlurmError(f"{where}: not an sbatch option (" + (
            f"did you mean {near}?" if near in known else "sbatch --help lists them") + ")")
      if value is None and known[key] and key not in _OPTIONAL_VALUE:
        raise SlurmError(f"{where}: sbatch's --{key} needs a value ({key}=VALUE)")
      if value is not None and not known[key]:
        raise SlurmError(f"{where}={value}: sbatch's --{key} takes no value")


# sbatch options whose value is optional (`--exclusive[=user]`, `--nice[=value]`, ...).
_OPTIONAL_VALUE = {"exclusive", "nice", "propagate", "export", "get-user-env", "wrap"}


def _sbatch_line(key: str, value: str | None) -> str:
  return f"#SBATCH --{key}" + ("" if value is None else f"={value}")


# --- the cluster -------------------------------------------------------------------------

def _last_line(text: str) -> str:
  lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
  return lines[-1] if lines else "(no output)"


def have(binary: str) -> bool:
  return shutil.which(binary) is not None


def require_sbatch() -> None:
  if not have("sbatch"):
    raise SlurmError("--executor slurm: sbatch not found on PATH (run on a SLURM login node, "
                     "or write the commands with --plan)")


def max_array_size(env: Mapping[str, str] | None = None) -> int:
  """The cluster's MaxArraySize (array indices run from 0 to MaxArraySize - 1)."""
  done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, env=env)
  if done.returncode != 0:
    raise SlurmError("`scontrol show config` failed: " + _last_line(done.stderr))
  m = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.M)
  return int(m.group(1)) if m else 1001


def queued(env: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
  """Job id (`123_4` for an array task, `123` otherwise) -> (state, reason) of every job in
  the queue (pending, running, requeued); finished jobs are not listed."""
  done = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T|%r"],
                        capture_output=True, text=True, env=env)
  if done.returncode != 0:
    raise SlurmError("`squeue` failed: " + _last_line(done.stderr))
  out = {}
  for line in done.stdout.splitlines():
    parts = line.strip().split("|")
    if len(parts) == 3:
      out[parts[0]] = (parts[1], parts[2])
  return out


def accounting(job_ids: Sequence[str], env: Mapping[str, str] | None = None
               ) -> dict[str, tuple[str, str]]:
  """Job id -> (state, exit code) from `sacct` for finished jobs; {} where the cluster
  keeps no accounting (then a run's own files tell what happened)."""
  if not job_ids or shutil.which("sacct") is None:
    return {}
  done = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                         "--format=JobID,State,ExitCode", f"--jobs={','.join(job_ids)}"],
                        capture_output=True, text=True, env=env)
  if done.returncode != 0:
    return {}
  out = {}
  for line in done.stdout.splitlines():
    parts = line.split("|")
    if len(parts) == 3:
      out[parts[0]] = (parts[1].split()[0] if parts[1] else "", parts[2])
  return out


# --- what a submission holds -------------------------------------------------------------

@dataclasses.dataclass
class Work:
  """The runs each stage would submit."""
  train: list[Run]        # trained then evaluated
  eval_only: list[Run]    # trained before: evaluated only
  judge: list[Run]        # whose judgements are missing (after their evaluation)
  in_queue: list[Run]     # still pending or running from an earlier submission: left alone
  done: list[Run]

  @property
  def empty(self) -> bool:
    return not (self.train or self.eval_only or self.judge)


def _judge_missing(cfg: run_commands.Config, run: Run, langs: Sequence[str]) -> bool:
  if not cfg.judge or run_commands.judge_baseline(cfg, run) is False:
    return False
  return any(not os.path.exists(_judge_out(cfg, run, lang)) for lang in langs)


def _judge_out(cfg, run, lang):
  args = run_commands.judge_args(cfg, run, lang, run_commands.judge_baseline(cfg, run) or None)
  return args[args.index("--out") + 1]


def plan(cfg: run_commands.Config, runs: Sequence[Run], in_queue: set[str]) -> Work:
  """What a submission would send: only what is missing or failed, never a finished stage
  and never a run whose earlier task is still in the queue."""
  langs = run_commands.judge_langs(cfg) if cfg.judge else []
  work = Work([], [], [], [], [])
  for run in runs:
    if run.name in in_queue:
      work.in_queue.append(run)
    elif not grid.train_done(cfg, run):
      work.train.append(run)
    elif not grid.eval_done(cfg, run):
      work.eval_only.append(run)
    elif _judge_missing(cfg, run, langs):
      work.judge.append(run)
    else:
      work.done.append(run)
  if cfg.judge:  # runs evaluated in this submission are judged too
    work.judge += [r for r in work.train + work.eval_only if _judge_missing(cfg, r, langs)]
  return work


def slurm_dir(cfg: run_commands.Config) -> str:
  return os.path.join(os.path.abspath(cfg.out), "slurm")


def log_path(cfg: run_commands.Config, run_name: str, stage: str) -> str:
  return os.path.join(slurm_dir(cfg), "logs", run_name, f"{stage}.log")


def submissions(cfg: run_commands.Config) -> list[dict]:
  """Every earlier submission's jobs.json, oldest first."""
  root = slurm_dir(cfg)
  if not os.path.isdir(root):
    return []
  out = []
  names = [n for n in os.listdir(root) if re.fullmatch(r"submission_\d+", n)]
  for name in sorted(names, key=lambda n: int(n.split("_")[1])):  # submission_10 after _9
    path = os.path.join(root, name, JOBS_FILE)
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        out.append(json.load(f))
  return out


def run_jobs(cfg: run_commands.Config) -> dict[str, dict[str, str]]:
  """Run -> stage -> job id of its latest submission (array tasks as `JOB_INDEX`)."""
  out: dict[str, dict[str, str]] = {}
  for sub in submissions(cfg):
    for run, stages in sub["runs"].items():
      out[run] = dict(stages)
  return out


def runs_in_queue(cfg: run_commands.Config, queue: Mapping[str, tuple[str, str]]) -> set[str]:
  """The runs with a task of their latest submission still pending or running."""
  return {run for run, stages in run_jobs(cfg).items() if any(j in queue for j in stages.values())}


# --- the scripts -------------------------------------------------------------------------

def _header(name: str, out_pattern: str,
            options: Sequence[tuple[str, str | None]], extra: Sequence[str]) -> list[str]:
  lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={out_pattern}",
           "#SBATCH --open-mode=append"]
  lines += [f"#SBATCH {e}" for e in extra]
  lines += [_sbatch_line(k, v) for k, v in options]
  return lines


def _env_lines(cfg: run_commands.Config) -> list[str]:
  return [f"export {k}={shlex.quote(v)}" for k, v in run_commands.env(cfg).items()]


def _task_line(cfg: run_commands.Config, stage: str, run: str, retries: int,
               command: Sequence[str]) -> str:
  return shlex.join(["python", "-m", TASK_MODULE, "--out", os.path.abspath(cfg.out),
                     "--stage", stage, "--run", run, "--retries", str(retries), "--", *command])


def _array_script(cfg: run_commands.Config, stage: str, runs: Sequence[Run], name: str,
                  out_pattern: str, options, retries: int, parallelism: int | None) -> str:
  spec = f"0-{len(runs) - 1}" + (f"%{parallelism}" if parallelism else "")
  lines = _header(name, out_pattern, options, [f"--array={spec}", "--requeue"])
  lines += ["", f"# linguamix study {cfg.study.name}: {stage}, one array task per run.",
            "# A task's output: OUT/slurm/logs/RUN/" + stage + ".log (this job's own lines: "
            "the --output above).", "set -u"] + _env_lines(cfg)
  lines += ['case "$SLURM_ARRAY_TASK_ID" in']
  for i, run in enumerate(runs):
    if stage == "train":
      command = ["python", "-m", "linguamix.train", *run_commands.train_args(cfg, run)]
    else:
      command = ["python", "-m", "linguamix.eval", *run_commands.eval_args(cfg, run)]
    lines += [f"  {i})  # {run.name}", f"    exec {_task_line(cfg, stage, run.name, retries, command)}",
              "    ;;"]
  lines += ['  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac", ""]
  return "\n".join(lines)


def _judge_script(cfg: run_commands.Config, runs: Sequence[Run], name: str, out_pattern: str,
                  options, retries: int) -> str:
  lines = _header(name, out_pattern, options, ["--requeue"])
  lines += ["", f"# linguamix study {cfg.study.name}: LLM judgements of every evaluated run "
            "(a run not evaluated is skipped).", "set -u", "status=0",
            "trap 'exit 143' TERM  # after the judgement in flight (its task requeues the job)"]
  for run in runs:
    baseline = run_commands.judge_baseline(cfg, run)
    for lang in run_commands.judge_langs(cfg):
      command = ["python", "-m", "linguamix.cli", *run_commands.judge_args(cfg, run, lang, baseline or None)]
      lines.append(_task_line(cfg, "judge", run.name, retries, command) + " || status=1")
  lines += ["exit $status", ""]
  return "\n".join(lines)


def _report_script(cfg: run_commands.Config, name: str, out_pattern: str, options) -> str:
  lines = _header(name, out_pattern, options, [])
  lines += ["", f"# linguamix study {cfg.study.name}: OUT/report.md from the runs' files, "
            "after every job above.",
            "exec " + shlex.join(["python", "-m", "linguamix.cli", "study", cfg.study.name,
                                  "--out", os.path.abspath(cfg.out), "--report-only"]), ""]
  return "\n".join(lines)


def _chunks(runs: Sequence[Run], size: int) -> list[list[Run]]:
  return [list(runs[i:i + size]) for i in range(0, len(runs), size)]


def submit(cfg: run_commands.Config, work: Work, *, resources, retries: int = 1,
           parallelism: int | None = None, env: Mapping[str, str] | None = None,
           say=print) -> dict:
  """Writes the scripts, submits them with their dependencies, records the job ids.

  A rejected `sbatch` cancels what this submission already sent and raises SlurmError with
  sbatch's own message: a submission goes in whole or not at all."""
  size = max_array_size(env)
  root = slurm_dir(cfg)
  os.makedirs(root, exist_ok=True)
  number = 1 + max([int(n.split("_")[1]) for n in os.listdir(root)
                    if re.fullmatch(r"submission_\d+", n)] or [0])
  sub_dir = os.path.join(root, f"submission_{number}")
  os.makedirs(sub_dir)
  prefix = f"lmx-{cfg.study.name}"
  record = {"submission": number, "study": cfg.study.name, "jobs": [], "runs": {}}
  sent: list[str] = []
  lines = ["#!/bin/sh", f"# linguamix study {cfg.study.name}: submission {number}, "
           "the sbatch commands as run (job ids in the comments)."]

  def sbatch(script_name: str, text: str, dependency: str | None, kill_on_invalid: bool) -> str:
    path = os.path.join(sub_dir, script_name)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
    os.chmod(path, 0o755)
    argv = ["sbatch", "--parsable"]
    if dependency:
      argv.append(f"--dependency={dependency}")
      if kill_on_invalid:  # a failed training cancels its evaluation instead of a pending forever
        argv.append("--kill-on-invalid-dep=yes")
    argv.append(path)
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
      for job in sent:
        subprocess.run(["scancel", job], capture_output=True, env=env)
      lines.append(shlex.join(argv) + "  # rejected")
      _write(os.path.join(sub_dir, "submit.sh"), lines)
      raise SlurmError(f"sbatch rejected {path}" + (f" (the {len(sent)} job(s) this submission "
                       "had sent were cancelled)" if sent else "") + ": " + _last_line(done.stderr))
    job = done.stdout.strip().split(";")[0]
    sent.append(job)
    lines.append(shlex.join(argv) + f"  # job {job}")
    return job

  eval_jobs = []
  for c, chunk in enumerate(_chunks(work.train, size)):
    out = os.path.join(sub_dir, f"train_{c}_%A_%a.out")
    train = sbatch(f"train_{c}.sh", _array_script(cfg, "train", chunk, f"{prefix}-train", out,
                                                  resources["train"], retries, parallelism),
                   None, False)
    out = os.path.join(sub_dir, f"eval_{c}_%A_%a.out")
    evaluation = sbatch(f"eval_{c}.sh", _array_script(cfg, "eval", chunk, f"{prefix}-eval", out,
                                                      resources["eval"], retries, parallelism),
                        f"aftercorr:{train}", True)
    eval_jobs.append(evaluation)
    record["jobs"] += [{"job": train, "stage": "train", "runs": [r.name for r in chunk]},
                       {"job": evaluation, "stage": "eval", "runs": [r.name for r in chunk]}]
    for i, run in enumerate(chunk):
      record["runs"][run.name] = {"train": f"{train}_{i}", "eval": f"{evaluation}_{i}"}
  for c, chunk in enumerate(_chunks(work.eval_only, size)):
    out = os.path.join(sub_dir, f"evalonly_{c}_%A_%a.out")
    evaluation = sbatch(f"evalonly_{c}.sh", _array_script(cfg, "eval", chunk, f"{prefix}-eval",
                                                          out, resources["eval"], retries,
                                                          parallelism), None, False)
    eval_jobs.append(evaluation)
    record["jobs"].append({"job": evaluation, "stage": "eval", "runs": [r.name for r in chunk]})
    for i, run in enumerate(chunk):
      record["runs"][run.name] = {"eval": f"{evaluation}_{i}"}
  after = list(sent)
  if work.judge:
    dep = "afterany:" + ":".join(eval_jobs) if eval_jobs else None
    judge = sbatch("judge.sh", _judge_script(cfg, work.judge, f"{prefix}-judge",
                                             os.path.join(sub_dir, "judge_%j.out"),
                                             resources["judge"], retries), dep, False)
    record["jobs"].append({"job": judge, "stage": "judge", "runs": [r.name for r in work.judge]})
    for run in work.judge:
      record["runs"].setdefault(run.name, {})["judge"] = judge
    after.append(judge)
  report = sbatch("report.sh", _report_script(cfg, f"{prefix}-report",
                                              os.path.join(sub_dir, "report_%j.out"),
                                              resources["report"]),
                  "afterany:" + ":".join(after) if after else None, False)
  record["jobs"].append({"job": report, "stage": "report", "runs": []})
  _write(os.path.join(sub_dir, "submit.sh"), lines)
  with open(os.path.join(sub_dir, JOBS_FILE), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  for run in work.train + work.eval_only:  # a new attempt: the retry count starts again
    for stage in ("train", "eval"):
      _remove(attempts_path(cfg, run.name, stage))
  say(f"submitted {sub_dir}: " + ", ".join(f"{j['stage']} {j['job']}"
                                           + (f" ({len(j['runs'])} runs)" if j['runs'] else "")
                                           for j in record["jobs"]))
  return record


def _write(path: str, lines: Sequence[str]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def _remove(path: str) -> None:
  if os.path.exists(path):
    os.remove(path)


def attempts_path(cfg: run_commands.Config, run: str, stage: str) -> str:
  return os.path.join(slurm_dir(cfg), "attempts", f"{run}.{stage}.json")


# --- status ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Row:
  run: str
  stage: str
  state: str     # pending, running, ... (the queue's), done, failed, to do
  detail: str = ""


def status(cfg: run_commands.Config, runs: Sequence[Run], env: Mapping[str, str] | None = None
           ) -> tuple[list[Row], Work]:
  """Per run its stage and state, from the queue, accounting and the run's files; and the
  work a rerun would submit."""
  queue = queued(env)
  jobs = run_jobs(cfg)
  finished = [job for stages in jobs.values() for job in stages.values() if job not in queue]
  acct = accounting(finished, env)
  rows = []
  for run in runs:
    stages = jobs.get(run.name, {})
    row = None
    for stage in ("train", "eval", "judge"):
      job = stages.get(stage)
      if job and job in queue:
        state, reason = queue[job]
        row = Row(run.name, stage, state.lower(),
                  f"job {job}" + (f", {reason}" if reason and reason != "None" else ""))
        break
    rows.append(row or _file_state(cfg, run, stages, acct))
  return rows, plan(cfg, runs, runs_in_queue(cfg, queue))


def _file_state(cfg, run, stages, acct) -> Row:
  failed = os.path.join(cfg.run_dir(run), "failed.json")
  if os.path.exists(failed):
    with open(failed, encoding="utf-8") as f:
      rec = json.load(f)
    attempts = f", {rec['attempts']} attempt(s)" if rec.get("attempts") else ""
    return Row(run.name, rec["stage"], "failed", f"exit {rec['exit_status']}{attempts}; log {rec['log']}")
  if grid.eval_done(cfg, run):
    return Row(run.name, "eval", "done", "trained and evaluated")
  stage = "eval" if grid.train_done(cfg, run) else "train"
  what = "trained, not evaluated" if stage == "eval" else "not trained"
  job = stages.get(stage)
  if job and job in acct:
    return Row(run.name, stage, "to do", f"{what}: job {job} {acct[job][0].lower()} (exit {acct[job][1]})")
  if job:
    return Row(run.name, stage, "to do", f"{what}: job {job} left the queue without a result")
  return Row(run.name, stage, "to do", f"{what}: never submitted")
