"""One stage of one run inside a SLURM job: `python -m linguamix.studies.slurm_task --out OUT
--stage STAGE --run RUN --retries N -- COMMAND...` (the lines OUT/slurm/*/*.sh run).

Skips a stage whose result exists; otherwise runs COMMAND with its output appended to
OUT/slurm/logs/RUN/STAGE.log. Exit 143 (stopped on SIGTERM; the trainer wrote a checkpoint
first) requeues the job, which resumes from that checkpoint. Another failure requeues it at
most N times (exit 2, a usage error, never: it would fail again), then writes the run's
failed.json as `linguamix study` does and exits with the command's status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

EXIT_PREEMPTED = 128 + signal.SIGTERM
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m linguamix.studies.slurm_task",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True)
  p.add_argument("--stage", required=True, choices=("train", "eval", "judge"))
  p.add_argument("--run", required=True)
  p.add_argument("--retries", type=int, default=1)
  p.add_argument("command", nargs=argparse.REMAINDER)
  return p


def _done(cfg, run, stage: str, command: list[str]) -> str | None:
  """Why the stage need not run, or None."""
  from linguamix.studies import grid
  if stage == "train" and grid.train_done(cfg, run):
    return "trained already"
  if stage == "eval" and grid.eval_done(cfg, run):
    return "evaluated already"
  if stage == "judge":
    if not grid.eval_done(cfg, run):
      return "not evaluated: nothing to judge"
    if "--out" in command and os.path.exists(command[command.index("--out") + 1]):
      return "judged already"
  return None


def _job_state(job: str) -> tuple[str, str]:
  done = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
  state, reason = re.search(r"JobState=(\S*)", done.stdout), re.search(r"Reason=(\S*)", done.stdout)
  return (state.group(1) if state else "", reason.group(1) if reason else "")


def _requeue(why: str) -> bool:
  """Requeues this job after a signal that left it running (a preemption notice, `scancel
  --signal=TERM`) or at its time limit (the stage goes on in a new allocation from its
  checkpoint); not after `scancel`, which sends the same SIGTERM: a cancelled job stays so."""
  job = os.environ.get("SLURM_JOB_ID")
  if not job:
    return False
  state, reason = _job_state(job)
  if state != "RUNNING" and reason != "TimeLimit":
    print(f"{why}; job {job} is {state or 'gone'} ({reason}): not requeued", flush=True)
    return False
  done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
  if done.returncode != 0:
    print(f"{why}; scontrol requeue {job} failed: {done.stderr.strip()}", flush=True)
    return False
  print(f"{why}: requeued", flush=True)
  return True


def main(argv: list[str]) -> int:
  from linguamix.studies import grid, run_commands, slurm
  from linguamix.studies.base import Run
  args = _parser().parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  cfg = run_commands.load_config(args.out)
  if cfg is None or not command:
    print(f"{_parser().prog}: error: no {args.out}/study.json or no command", file=sys.stderr)
    return EXIT_USAGE
  run = Run(args.run, args.run)
  job = os.environ.get("SLURM_JOB_ID", "-")
  if os.environ.get("SLURM_ARRAY_JOB_ID"):
    job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
  skip = _done(cfg, run, args.stage, command)
  if skip:
    print(f"{args.run} {args.stage}: {skip}", flush=True)
    return 0
  os.makedirs(cfg.run_dir(run), exist_ok=True)
  failed = os.path.join(cfg.run_dir(run), "failed.json")
  if os.path.exists(failed):
    os.remove(failed)  # a new attempt
  log = slurm.log_path(cfg, args.run, args.stage)
  os.makedirs(os.path.dirname(log), exist_ok=True)
  restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
  with open(log, "a", encoding="utf-8") as f:
    f.write(f"=== job {job} (restart {restarts}) on {socket.gethostname()} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n$ {' '.join(command)}\n")
    f.flush()
    child = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT)
    # SLURM signals every process of the job; pass it on too, in case only we received it.
    signal.signal(signal.SIGTERM, lambda *_: child.poll() is None and child.send_signal(signal.SIGTERM))
    rc = child.wait()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  rc = 128 - rc if rc < 0 else rc
  if rc == 0 and not _done(cfg, run, args.stage, command) and args.stage != "judge":
    rc = 1  # exited 0 without its result: a failure
  if rc == 0:
    print(f"{args.run} {args.stage}: done", flush=True)
    return 0
  if rc == EXIT_PREEMPTED:
    if _requeue(f"{args.run} {args.stage}: stopped on SIGTERM (exit 143)"):
      return rc
    grid._fail(cfg, run, args.stage, rc, log, job=job, reason="stopped on SIGTERM, not requeued")
    return rc
  counter = slurm.attempts_path(cfg, args.run, args.stage)
  os.makedirs(os.path.dirname(counter), exist_ok=True)
  failures = 1
  if os.path.exists(counter):
    with open(counter, encoding="utf-8") as f:
      failures += json.load(f)["failures"]
  with open(counter, "w", encoding="utf-8") as f:
    json.dump({"failures": failures, "last_exit_status": rc, "job": job}, f)
  if rc != EXIT_USAGE and failures <= args.retries:
    if _requeue(f"{args.run} {args.stage}: exit {rc}; retry {failures} of {args.retries}"):
      return rc
  grid._fail(cfg, run, args.stage, rc, log, attempts=failures, job=job)
  print(f"{args.run} {args.stage}: FAILED (exit {rc}, {failures} attempt(s)); see {log}", flush=True)
  return rc


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
