"""`linguamix study --executor slurm` against a real one-node SLURM cluster (slurmctld,
slurmd and munged from Debian's slurm-wlm and munge; see linguamix/testing/slurm_cluster.py): the smoke
grid end to end in split job arrays, a training task stopped with SIGTERM requeued and
finishing bit-exact, a failing run retried a bounded number of times while the others
finish, `--status`, and a resubmission that sends only the failed run. Without the SLURM
binaries these tests are skipped with the reason."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

from linguamix import cli
from linguamix import studies
from linguamix.studies import run_commands, slurm as slurm_lib

from linguamix.testing.slurm_cluster import MAX_ARRAY_SIZE

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def jobs_env(monkeypatch):
  """The jobs inherit this environment (sbatch --export=ALL): this checkout first."""
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _queue(cluster) -> list[str]:
  return cluster.run("squeue", "--noheader", "--array", "--format=%i %j %T").splitlines()


def _error_lines(err: str) -> list[str]:
  return [l for l in err.splitlines() if "error:" in l]


# --- resources: sbatch's own options -----------------------------------------------------

def test_resources_are_checked_against_sbatch_help(slurm):
  known = slurm_lib.sbatch_options()
  assert known["partition"] and known["gres"] and known["time"] and known["cpus-per-task"]
  assert known["requeue"] is False and known["exclusive"] is True  # --exclusive[=user]
  parsed = slurm_lib.parse_resources(
      ["partition=gpu,time=24:00:00", "train:gres=gpu:4,cpus-per-task=16,nodelist=n1,n2,exclusive",
       "eval:gres=gpu:1,time=1:00:00"], known)
  assert parsed["train"] == [("partition", "gpu"), ("time", "24:00:00"), ("gres", "gpu:4"),
                             ("cpus-per-task", "16"), ("nodelist", "n1,n2"), ("exclusive", None)]
  assert parsed["eval"] == [("partition", "gpu"), ("time", "1:00:00"), ("gres", "gpu:1")]
  assert parsed["report"] == [("partition", "gpu"), ("time", "24:00:00")]
  slurm_lib.check_resources(parsed, known)
  for spec, says in (("train:gpus_per_node=4", "--slurm train:gpus_per_node: not an sbatch option "
                      "(did you mean gpus-per-node?)"),
                     ("partition=a,colour=red", "--slurm train:colour: not an sbatch option "
                      "(sbatch --help lists them)"),
                     ("array=0-9", "--slurm train:array: set by linguamix study itself"),
                     ("eval:time", "--slurm eval:time: sbatch's --time needs a value"),
                     ("requeue=yes", "set by linguamix study itself"),
                     ("contiguous=1", "--slurm train:contiguous=1: sbatch's --contiguous takes no value")):
    with pytest.raises(slurm_lib.SlurmError, match=re.escape(says)):
      slurm_lib.check_resources(slurm_lib.parse_resources([spec], known), known)


# --- bad input: one error line, nothing submitted ----------------------------------------

def test_bad_input_is_one_error_line_and_submits_nothing(slurm, jobs_env, tmp_path, capsys,
                                                         monkeypatch):
  out = tmp_path / "pinch"
  base = ["study", "pinch", "--smoke", "--out", str(out), "--executor", "slurm"]
  cases = [
      (["--slurm", "train:gpus_per_node=4"],
       "linguamix study: error: --slurm train:gpus_per_node: not an sbatch option"),
      (["--slurm", "output=/tmp/x"], "--slurm train:output: set by linguamix study itself"),
      # sbatch's own refusal, as its last stderr line
      (["--slurm", "partition=nosuch"], "train_0.sh: sbatch: error: Batch job submission failed: Invalid partition name specified"),
      # the second sbatch refused: the training array the first one sent is cancelled
      (["--slurm", "eval:partition=nosuch"], "(the 1 job(s) this submission had sent were cancelled)"),
      # the same from a profile file of flags
      ([f"@{tmp_path / 'profile'}"], "eval_0.sh (the 1 job(s) this submission had sent were "
                                      "cancelled): sbatch: error: Batch job submission failed: "
                                      "Invalid partition name specified"),
  ]
  (tmp_path / "profile").write_text("--slurm=time=10\n--slurm=eval:partition=nosuch\n")
  for extra, says in cases:
    capsys.readouterr()
    assert cli.main(base + extra) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and says in lines[0], lines
    assert _queue(slurm) == []
  last = max((out / "slurm").glob("submission_*"), key=lambda p: int(p.name.split("_")[1]))
  assert "#SBATCH --time=10\n" in (last / "train_0.sh").read_text()  # from the profile
  rejected = sorted((out / "slurm").glob("submission_*/submit.sh"))
  assert rejected and "# rejected" in rejected[-1].read_text()
  assert not list((out / "slurm").glob("submission_*/jobs.json"))
  # no sbatch on PATH
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  assert cli.main(base) == 2
  lines = _error_lines(capsys.readouterr().err)
  assert len(lines) == 1 and "sbatch not found on PATH" in lines[0]
  monkeypatch.undo()
  monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
  # the folder of another study
  other = tmp_path / "sphinx"
  assert cli.main(["study", "sphinx", "--smoke", "--out", str(other), "--plan"]) == 0
  capsys.readouterr()
  assert cli.main(["study", "pinch", "--smoke", "--out", str(other), "--executor", "slurm"]) == 2
  lines = _error_lines(capsys.readouterr().err)
  assert len(lines) == 1 and f"{other} holds study 'sphinx' (its study.json), not 'pinch'" in lines[0]
  assert cli.main(["study", "pinch", "--out", str(tmp_path / "none"), "--status"]) == 2
  assert "no study here" in capsys.readouterr().err
  assert _queue(slurm) == [] and not (other / "slurm").exists()


# --- the task wrapper: requeue after a preemption signal, not after scancel ------------

STAGE = """import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # as the trainer: checkpoint, exit 143
print("attempt", os.environ.get("SLURM_RESTART_COUNT", "0"), flush=True)
time.sleep(300)
"""


def test_sigterm_requeues_the_task_and_scancel_ends_it(slurm, jobs_env, tmp_path, capsys):
  out = tmp_path / "sphinx"
  assert cli.main(["study", "sphinx", "--smoke", "--out", str(out), "--plan"]) == 0
  (tmp_path / "stage.py").write_text(STAGE)
  task = [sys.executable, "-m", "linguamix.studies.slurm_task", "--out", str(out), "--stage",
          "train", "--run", "sphinx_tiers", "--", sys.executable, str(tmp_path / "stage.py")]
  job = slurm.run("sbatch", "--parsable", "--requeue", "--open-mode=append",
                  f"--output={tmp_path}/job.out", f"--wrap=exec {shlex.join(task)}").strip()
  log = out / "slurm" / "logs" / "sphinx_tiers" / "train.log"
  text = lambda p: p.read_text() if p.exists() else ""  # noqa: E731
  _wait("the stage", lambda: "attempt 0" in text(log), 60)
  slurm.run("scancel", "--signal=TERM", "--full", job)  # a preemption notice
  _wait("the requeued stage", lambda: "attempt 1" in text(log), 120)
  assert "stopped on SIGTERM (exit 143): requeued" in text(tmp_path / "job.out")
  slurm.run("scancel", job)  # the user's cancel: the same SIGTERM, but the job stays cancelled
  _wait("the cancelled job", lambda: _queue(slurm) == [], 60)
  time.sleep(7)  # longer than a requeued job waits to start again
  assert _queue(slurm) == [] and text(log).count("attempt") == 2
  assert "not requeued" in text(tmp_path / "job.out")
  failed = json.loads((out / "runs" / "sphinx_tiers" / "failed.json").read_text())
  assert failed["exit_status"] == 143 and failed["reason"] == "stopped on SIGTERM, not requeued"
  capsys.readouterr()
  assert cli.main(["study", "sphinx", "--out", str(out), "--status"]) == 0
  status = capsys.readouterr().out
  assert "sphinx_tiers           train  failed: exit 143" in status
  assert "a rerun would submit: train+eval 2 (sphinx_tiers, sphinx_tiers_nolangit)" in status


# --- the smoke grid through SLURM ---------------------------------------------------------

def _wait(what: str, ready, timeout: float) -> None:
  deadline = time.time() + timeout
  while not ready():
    assert time.time() < deadline, f"{what}: not within {timeout} s"
    time.sleep(0.2)


def _lines(path: pathlib.Path) -> list[dict]:
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def _params(model_dir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
  import jax
  import orbax.checkpoint as ocp
  tree = ocp.PyTreeCheckpointer().restore(str(model_dir / f"checkpoint_{step}" / "state"))
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


STEPS = 100
BINDINGS = [f"--gin.TRAIN_STEPS={STEPS}", f"--gin.EVAL_PERIOD={STEPS}",
            "--gin.trainer.train.log_period=1"]


@pytest.mark.slow
def test_smoke_grid_through_slurm_preempted_failed_and_resubmitted(slurm, jobs_env, tmp_path,
                                                                   capsys):
  out = tmp_path / "pinch"
  # pinch_partial_p100 crashes on purpose, as on a broken file system: its metrics file is a
  # symbolic link to itself (ELOOP). (An empty checkpoint folder would not do: the trainer
  # sets a damaged checkpoint aside and starts again.)
  os.makedirs(out / "runs" / "pinch_partial_p100")
  os.symlink("metrics.jsonl", out / "runs" / "pinch_partial_p100" / "metrics.jsonl")
  argv = ["study", "pinch", "--smoke", "--out", str(out), "--executor", "slurm",
          "--slurm", "time=30", "--retries", "1", *BINDINGS]
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out
  assert "submitting train+eval 3 (pinch_p0, pinch_p100, pinch_partial_p100)" in printed
  sub = out / "slurm" / "submission_1"
  record = json.loads((sub / "jobs.json").read_text())
  # MaxArraySize 2: three runs in two training arrays, each with its evaluation array.
  assert [(j["stage"], len(j["runs"])) for j in record["jobs"]] == [
      ("train", 2), ("eval", 2), ("train", 1), ("eval", 1), ("report", 0)]
  assert "#SBATCH --array=0-1\n" in (sub / "train_0.sh").read_text()
  assert "#SBATCH --time=30\n" in (sub / "eval_1.sh").read_text()
  train0, eval0 = record["jobs"][0]["job"], record["jobs"][1]["job"]
  shown = slurm.run("scontrol", "show", "job", f"{eval0}_0")
  assert f"Dependency=aftercorr:{train0}" in shown
  assert (f"--dependency=afterany:{':'.join(j['job'] for j in record['jobs'][:4])}"
          in (sub / "submit.sh").read_text())

  # The reference: pinch_p0's training command as the array task runs it, straight through.
  straight = tmp_path / "straight"
  cfg = run_commands.load_config(str(out))
  p0 = studies.STUDIES["pinch"].grid(pattern="pinch_p0")[0]
  ref_args = [a.replace(cfg.run_dir(p0), str(straight)) for a in run_commands.train_args(cfg, p0)]
  reference = subprocess.Popen([sys.executable, "-m", "linguamix.train", *ref_args],
                               env={**os.environ, **run_commands.env(cfg)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)

  # Preempt pinch_p0's training: SIGTERM to the task's processes, as a scheduler sends it.
  killed = out / "runs" / "pinch_p0"
  _wait("pinch_p0's first steps", lambda: len(_lines(killed / "metrics.jsonl")) >= 2, 600)
  slurm.run("scancel", "--signal=TERM", "--full", record["runs"]["pinch_p0"]["train"])

  _wait("the grid", lambda: _queue(slurm) == [], 900)
  assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]

  log = (out / "slurm" / "logs" / "pinch_p0" / "train.log").read_text()
  assert "preempted: SIGTERM at step" in log, log[-3000:]
  assert "(restart 0)" in log and "(restart 1)" in log  # the same task, requeued once
  stop = int(log.split("preempted: SIGTERM at step ")[1].split(":")[0])
  assert 2 <= stop < STEPS
  steps = [m["step"] for m in _lines(killed / "metrics.jsonl") if m["split"] == "train"]
  assert steps == list(range(1, STEPS + 1))  # resumed after `stop`, nothing repeated
  loss = lambda d: [m["loss"] for m in _lines(d / "metrics.jsonl") if m["split"] == "train"]  # noqa: E731
  assert loss(killed) == loss(straight)
  pa, pb = _params(straight, STEPS), _params(killed, STEPS)
  assert pa.keys() == pb.keys()
  for k in pa:  # params, optimizer state and step, bit for bit
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)

  # The failing run: retried once (a crash, not a usage error), then failed.json; the others finished.
  failed = json.loads((out / "runs" / "pinch_partial_p100" / "failed.json").read_text())
  assert failed["stage"] == "train" and failed["attempts"] == 2 and failed["exit_status"] != 0
  partial_log = (out / "slurm" / "logs" / "pinch_partial_p100" / "train.log").read_text()
  assert partial_log.count("=== job") == 2
  for run in ("pinch_p0", "pinch_p100"):
    assert (out / "runs" / run / "eval" / "run.json").exists(), run
  report = (out / "report.md").read_text()  # the report job ran after all the others
  assert "2 of 3 runs evaluated" in report
  assert f"| pinch_partial_p100 | `pinch_partial_p100` | failed in train (exit {failed['exit_status']}" in report

  capsys.readouterr()
  assert cli.main(["study", "pinch", "--out", str(out), "--status"]) == 0
  status = capsys.readouterr().out.splitlines()
  rows = {l.split()[0]: l for l in status if l.startswith("pinch")}
  assert rows["pinch_partial_p100"].split()[1:3] == ["train", "failed:"]
  assert f"exit {failed['exit_status']}, 2 attempt(s)" in rows["pinch_partial_p100"]
  assert "done:" in rows["pinch_p0"] and "done:" in rows["pinch_p100"]
  assert "3 runs: 2 done, 1 failed" in status
  assert "a rerun would submit: train+eval 1 (pinch_partial_p100)" in status

  # Resubmitting the same command sends the failed run only.
  assert cli.main(argv) == 0
  assert "submitting train+eval 1 (pinch_partial_p100)" in capsys.readouterr().out
  again = json.loads((out / "slurm" / "submission_2" / "jobs.json").read_text())
  assert list(again["runs"]) == ["pinch_partial_p100"]
  assert [j["stage"] for j in again["jobs"]] == ["train", "eval", "report"]
  # ... and while it is in the queue, a third submission sends nothing.
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out
  assert "nothing to submit: 2 run(s) done, 1 in the queue" in printed
  assert not (out / "slurm" / "submission_3").exists()
  assert cli.main(["study", "pinch", "--out", str(out), "--status"]) == 0
  status = capsys.readouterr().out
  assert any(l.startswith("pinch_partial_p100") and ("pending" in l or "running" in l)
             for l in status.splitlines()), status
  assert "a rerun would submit: nothing" in status
  slurm.run("scancel", *[j["job"] for j in again["jobs"]])  # the next test waits for an empty queue
  _wait("the cancelled resubmission", lambda: _queue(slurm) == [], 120)


# --- the judge as a job: a loopback OpenAI-style endpoint ---------------------------------

@pytest.mark.slow
def test_judge_job_after_evaluations_on_a_loopback_endpoint(slurm, jobs_env, real_data, tmp_path,
                                                            capsys, monkeypatch):
  import http.server
  import threading
  from linguamix.evals import open_prompts
  from test_studies import _PairJudge
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))  # the job inherits it
  monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
  _PairJudge.requests = 0
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PairJudge)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  out = tmp_path / "pinch"
  argv = ["study", "pinch", "--model", "models/mt5_tiny.gin", "--init", "/ckpt", "--preset",
          "full", "--out", str(out), "--runs", "pinch_p0,pinch_p10", "--judge",
          f"http://127.0.0.1:{httpd.server_address[1]}/v1", "--judge-model", "j",
          "--executor", "slurm"]
  try:
    evals = studies.STUDIES["pinch"].evals
    for run in ("pinch_p0", "pinch_p10"):  # trained and evaluated: only the judge is missing
      d = out / "runs" / run
      os.makedirs(d / "checkpoint_1")
      (d / "summary.json").write_text("{}")
      for lang in ("en", "es", "it"):  # the answers as the evaluation writes them
        questions = open_prompts.mt_bench_x_questions(lang)
        path = open_prompts.answer_path(str(d / "eval"), lang, run)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
          for i, q in enumerate(questions):
            good = run == "pinch_p10" and i % 2 == 0
            record = open_prompts.answer_record(q["question_id"], run,
                                                ["GOODANSWER" if good else "MEHANSWER"] * 2)
            f.write(json.dumps(record) + "\n")
      (d / "eval" / "run.json").write_text(json.dumps({"tasks": list(evals)}))
    assert cli.main(argv) == 0
    assert "submitting judge 1 (pinch_p10)" in capsys.readouterr().out
    record = json.loads((out / "slurm" / "submission_1" / "jobs.json").read_text())
    assert [j["stage"] for j in record["jobs"]] == ["judge", "report"]
    _wait("the judge and the report", lambda: _queue(slurm) == [], 300)
    log = out / "slurm" / "logs" / "pinch_p10" / "judge.log"
    assert not (out / "runs" / "pinch_p10" / "failed.json").exists(), log.read_text()[-3000:]
    assert _PairJudge.requests == 3 * 80 * 2 * 2  # p10 against p0, 3 languages, 2 turns, 2 orders
    for lang in ("en", "es", "it"):
      verdict = json.loads((out / "runs" / "pinch_p10" / "judge" / f"pair_{lang}.json").read_text())
      assert verdict  # written by `linguamix judge` inside the job
    assert (out / "report.md").exists()
    assert cli.main(argv) == 0
    assert "nothing to submit: 2 run(s) done, 0 in the queue" in capsys.readouterr().out
  finally:
    httpd.shutdown()
    httpd.server_close()


# --- multi-host TPU launches -------------------------------------------------------------

def test_plan_tpu_runs_each_line_on_every_worker(tmp_path, capsys):
  out = tmp_path / "ba"
  assert cli.main(["study", "better_alpaca", "--model", "models/llama2_7b.gin", "--init",
                   "/mnt/shared/ckpt", "--out", str(out), "--plan", "--tpu", "v4-32-a",
                   "--zone", "us-central2-b", "--runs", "better_alpaca_mono_*"]) == 0
  plan = [l for l in (out / "commands.sh").read_text().splitlines() if not l.startswith("#")]
  launches = [shlex.split(l) for l in (out / "tpu.sh").read_text().splitlines()
              if l.startswith("gcloud")]
  assert len(launches) == len(plan) == 9
  for launch, line in zip(launches, plan):
    assert launch[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v4-32-a",
                          "--zone=us-central2-b", "--worker=all"]
    assert launch[8] == f"--command={line}" and len(launch) == 9
  assert cli.main(["study", "better_alpaca", "--model", "m.gin", "--init", "c", "--out",
                   str(out), "--plan", "--tpu", "v4-32-a"]) == 2
  assert "--tpu NAME needs --plan and --zone ZONE" in capsys.readouterr().err
