"""The trainer under faults: corrupt checkpoints (latest and initial), metrics after
resumes, and SIGTERM preemption (checkpoint at the current step, exit 143, bit-exact
resume)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from linguamix.testing import train_helpers
from linguamix.cli import train as train_main
from linguamix.train import preemption

REPO = pathlib.Path(__file__).resolve().parents[1]
QUIET = ("--gin.trainer.train.log_period=1", "--gin.trainer.train.infer_eval_dataset_cfg=None",
         "--gin.trainer.train.train_eval_dataset_cfg=None", "--gin.trainer.train.keep_checkpoints=100",
         "--gin.trainer.train.progress_bar=False", "--gin.EVAL_PERIOD=1000")


def _argv(tmp: pathlib.Path, model_dir: pathlib.Path, *bindings: str):
  gin_file = train_helpers.write_gin(tmp)
  return [f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{model_dir}"', *QUIET, *bindings]


def _flip(path: pathlib.Path, at: float = 0.5, n: int = 16) -> None:
  data = bytearray(path.read_bytes())
  start = int(len(data) * at)
  for i in range(start, min(start + n, len(data))):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def corrupt_index(ckpt: pathlib.Path) -> None:
  """Flips bytes of the OCDBT b-tree (CRC-32C checked by TensorStore)."""
  for p in (ckpt / "state" / "d").iterdir():
    _flip(p)


def corrupt_array(ckpt: pathlib.Path) -> None:
  """Changes the embedding's contents on disk, as flipped bits in an array chunk would
  (chunks carry no checksum: Orbax restores them silently); the index stays valid."""
  import orbax.checkpoint as ocp
  tree = ocp.PyTreeCheckpointer().restore(str(ckpt / "state"))
  tree["params"]["token_embedder"]["embedding"] = tree["params"]["token_embedder"]["embedding"] * -1
  shutil.rmtree(ckpt / "state")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(str(ckpt / "state"), tree)


def _jsonl_steps(model_dir: pathlib.Path, split: str = "train") -> list[int]:
  return [json.loads(l)["step"] for l in (model_dir / "metrics.jsonl").read_text().splitlines()
          if json.loads(l)["split"] == split]


def _tb_steps(model_dir: pathlib.Path, tag: str = "loss") -> list[int]:
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(model_dir / "train"), size_guidance={"tensors": 0},
                                           purge_orphaned_data=False)  # what the files hold
  acc.Reload()
  return [e.step for e in acc.Tensors(tag)]


def _params(model_dir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
  import jax
  import orbax.checkpoint as ocp
  tree = ocp.PyTreeCheckpointer().restore(str(model_dir / f"checkpoint_{step}" / "state"))
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def run3(tmp_path_factory) -> pathlib.Path:
  """A finished 3-step run with checkpoint_1..3 (reused, copied by each test)."""
  tmp = tmp_path_factory.mktemp("run3")
  assert train_main.main(_argv(tmp, tmp / "run", "--gin.TRAIN_STEPS=3",
                               "--gin.trainer.train.checkpoint_period=1")) == 0
  return tmp / "run"


def test_corrupt_latest_checkpoints_are_set_aside_and_steps_logged_once(run3, tmp_path, capsys):
  run = tmp_path / "run"
  shutil.copytree(run3, run)
  corrupt_array(run / "checkpoint_3")   # silent in Orbax: caught by the saved checksums
  corrupt_index(run / "checkpoint_2")   # caught by OCDBT's CRC-32C
  capsys.readouterr()
  assert train_main.main(_argv(tmp_path, run, "--gin.TRAIN_STEPS=4",
                               "--gin.trainer.train.checkpoint_period=1")) == 0
  captured = capsys.readouterr()
  warnings = [l for l in captured.err.splitlines() if l.startswith("warning: ")]
  assert len(warnings) == 2, captured.err + captured.out
  assert (f"{run}/checkpoint_3: array ['params']['token_embedder']['embedding'] does not match "
          "its checksum") in warnings[0]
  assert f"{run}/checkpoint_2: " in warnings[1] and "checksum verification failed" in warnings[1]
  assert f"restored {run}/checkpoint_1 (step 1" in captured.out
  # Moved aside, not deleted; the run went on from step 1 and wrote 2..4 afresh.
  assert (run / "corrupt" / "checkpoint_3" / "state").is_dir()
  assert (run / "corrupt" / "checkpoint_2" / "state").is_dir()
  assert sorted(int(p.name.split("_")[1]) for p in run.glob("checkpoint_*")) == [1, 2, 3, 4]
  # Each step once in metrics.jsonl and in the event files, though steps 2, 3 ran twice.
  assert _jsonl_steps(run) == [1, 2, 3, 4]
  assert _tb_steps(run) == [1, 2, 3, 4]
  # The redone steps equal the first run's (same batches from the same state).
  first = {json.loads(l)["step"]: json.loads(l)["loss"]
           for l in (run3 / "metrics.jsonl").read_text().splitlines()}
  again = {json.loads(l)["step"]: json.loads(l)["loss"]
           for l in (run / "metrics.jsonl").read_text().splitlines()}
  assert [first[s] for s in (1, 2, 3)] == [again[s] for s in (1, 2, 3)]


def test_corrupt_initial_checkpoint_names_path_and_array(run3, tmp_path, capsys):
  for corrupt, says in ((corrupt_array, "array ['params']['token_embedder']['embedding'] does not "
                                       "match its checksum"),
                        # the index itself is damaged: the file is named, no array can be
                        (corrupt_index, "index node cannot be decoded: DATA_LOSS")):
    init = tmp_path / corrupt.__name__ / "checkpoint_3"
    shutil.copytree(run3 / "checkpoint_3", init)
    corrupt(init)
    model_dir = tmp_path / corrupt.__name__ / "new"
    capsys.readouterr()
    rc = train_main.main(_argv(tmp_path, model_dir, "--gin.TRAIN_STEPS=4",
                               f"--gin.INITIAL_CHECKPOINT_PATH='{init}'"))
    err = capsys.readouterr().err
    assert rc == 2, err
    line = [l for l in err.splitlines() if "error:" in l]
    assert len(line) == 1 and "Traceback" not in err, err
    assert f"error: INITIAL_CHECKPOINT_PATH {init}: " in line[0] and says in line[0]
    if corrupt is corrupt_index:
      assert f"{init}/state/d/" in line[0] and "CRC-32C checksum verification failed" in line[0]
    assert not any(model_dir.glob("checkpoint_*"))


def test_eval_with_a_missing_benchmark_file_names_it(run3, tmp_path, capsys, monkeypatch):
  from linguamix.train import run_eval
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(tmp_path / "no_data"))
  capsys.readouterr()
  rc = train_main.eval_main([f"--gin_file={train_helpers.write_gin(tmp_path)}",
                             f'--gin.CHECKPOINT_PATH="{run3}/checkpoint_3"',
                             f'--gin.EVAL_OUTPUT_DIR="{tmp_path}/eval"', "--gin.EVAL_TASKS='xcopa.sw'"])
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if ": error: " in l]
  assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
  assert lines[0].startswith("python -m linguamix.eval: error: benchmark file not found: "
                             f"{tmp_path}/no_data/xcopa/sw/")
  assert not (tmp_path / "eval" / "run.json").exists()


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_resumes_bit_exact(tmp_path):
  killed, straight = tmp_path / "killed", tmp_path / "straight"
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}
  # No periodic checkpoint before step 1000: only the SIGTERM one.
  proc = subprocess.Popen(
      [sys.executable, "-m", "linguamix.train",
       *_argv(tmp_path, killed, "--gin.TRAIN_STEPS=100000", "--gin.trainer.train.checkpoint_period=1000")],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 180
  while not (killed / "metrics.jsonl").exists() or len(_jsonl_steps(killed)) < 3:
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    assert time.time() < deadline, "no training steps within 180 s"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)  # mid-epoch: an epoch of the tiny task is ~25 steps
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == preemption.EXIT_PREEMPTED == 143, err[-2000:]
  steps = [int(p.name.split("_")[1]) for p in killed.glob("checkpoint_*")]
  assert len(steps) == 1 and 3 <= steps[0] < 25
  stop = steps[0]
  line = [l for l in err.splitlines() if "preempted:" in l]
  assert line == [f"python -m linguamix.train: preempted: SIGTERM at step {stop}: wrote "
                  f"{killed}/checkpoint_{stop}; run the same command to resume (exit status 143)"]
  assert "Traceback" not in err
  total = stop + 3
  assert train_main.main(_argv(tmp_path, killed, f"--gin.TRAIN_STEPS={total}")) == 0
  assert train_main.main(_argv(tmp_path, straight, f"--gin.TRAIN_STEPS={total}")) == 0
  assert _jsonl_steps(killed) == _jsonl_steps(straight) == list(range(1, total + 1))
  assert _tb_steps(killed) == list(range(1, total + 1))
  losses = lambda d: [json.loads(l)["loss"] for l in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
  assert losses(killed) == losses(straight)
  pa, pb = _params(straight, total), _params(killed, total)
  assert pa.keys() == pb.keys()
  for k in pa:  # params, optimizer state and step, bit for bit
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
