"""The trainer on a recipe mixture: TRAIN_EPOCHS from one epoch's packed batches, and a
`kill -9` mid-epoch resumed bit for bit (tiny mT5, a 40-example Pinch recipe)."""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import seqio

import linguamix.mixtures  # noqa: F401  (registers pinch_config)

from linguamix.testing import train_helpers
from linguamix.cli import train as train_main

REPO = pathlib.Path(__file__).resolve().parents[1]
# pinch_bi_en_sw at a budget of 44 (gin, as a user would): 22 + 22 examples, an epoch is
# 5.5 batches of 8, so runs cross several epoch boundaries, most of them inside a batch.
RECIPE = """
import linguamix.mixtures
from linguamix import t5x_tasks
t5x_tasks.task_vocabulary.vocabulary = %VOCABULARY
linguamix.mixtures.pinch_config.budget = 44
MIXTURE_OR_TASK_NAME = 'pinch_bi_en_sw'
TASK_FEATURE_LENGTHS = {'inputs': 32, 'targets': 32}
"""
QUIET = ("--gin.trainer.train.log_period=1", "--gin.trainer.train.infer_eval_dataset_cfg=None",
         "--gin.trainer.train.train_eval_dataset_cfg=None", "--gin.trainer.train.progress_bar=False")


def _argv(tmp, model_dir, *bindings):
  return [f"--gin_file={train_helpers.write_gin(tmp, RECIPE)}", f'--gin.MODEL_DIR="{model_dir}"',
          *QUIET, *bindings]


def _losses(model_dir):
  out = {}
  for line in (model_dir / "metrics.jsonl").read_text().splitlines():
    rec = json.loads(line)
    if rec["split"] == "train":
      out[rec["step"]] = rec["loss"]
  return out


def _params(model_dir, step):
  import jax
  import orbax.checkpoint as ocp
  tree = ocp.PyTreeCheckpointer().restore(str(model_dir / f"checkpoint_{step}" / "state"))
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree["params"])}


def _packed_rows_of_one_epoch(seed: int) -> int:
  import gin
  from linguamix import t5x_tasks
  with gin.unlock_config():
    gin.bind_parameter("linguamix.mixtures.pinch_config.budget", 44)
    gin.bind_parameter("linguamix.t5x_tasks.task_vocabulary.vocabulary", train_helpers.VOCAB)
  try:
    lengths = {"inputs": 32, "targets": 32}
    ds = seqio.get_mixture_or_task("pinch_bi_en_sw").get_dataset(
        lengths, split="train", shuffle=True, seed=seed, num_epochs=1)
    assert sum(1 for _ in ds.as_numpy_iterator()) == 44
    return sum(1 for _ in seqio.EncDecFeatureConverter(pack=True)(ds, lengths).as_numpy_iterator())
  finally:
    gin.clear_config()
    del t5x_tasks


def test_train_epochs_sets_the_steps_from_one_epochs_packed_batches(tmp_path, capsys):
  rows = _packed_rows_of_one_epoch(seed=0)  # RANDOM_SEED = 0 in the tiny gin
  run = tmp_path / "run"
  assert train_main.main(_argv(tmp_path, run, "--gin.TRAIN_STEPS=None", "--gin.TRAIN_EPOCHS=2.5",
                               "--gin.LR_SCHEDULE='cosine'", "--gin.EVAL_PERIOD=1000")) == 0
  out = capsys.readouterr().out
  steps = math.ceil(2.5 * rows / 8)
  assert f"one epoch of pinch_bi_en_sw (seed 0) = 44 examples -> {rows:,} packed rows" in out
  assert f"TRAIN_STEPS = 0 + {steps} = {steps}" in out and f"done: step {steps} of {steps}" in out
  assert sorted(_losses(run)) == list(range(1, steps + 1))
  # TRAIN_STEPS wins when both are given; neither is an error.
  from linguamix.train import data as data_lib
  cfg = data_lib.DatasetConfig("pinch_bi_en_sw", {"inputs": 32, "targets": 32}, "train", 8, True)
  conv = seqio.EncDecFeatureConverter(pack=True)
  notes = []
  assert data_lib.train_steps(2, 2.5, cfg, conv, seed=0, log=notes.append) == 2
  assert notes == ["note: TRAIN_STEPS=2 is set, so TRAIN_EPOCHS=2.5 is ignored"]
  with pytest.raises(ValueError, match="set TRAIN_STEPS .* or TRAIN_EPOCHS"):
    data_lib.train_steps(None, None, cfg, conv, seed=0)


@pytest.mark.slow
def test_kill_9_mid_epoch_resumes_bit_exact_on_a_recipe_mixture(tmp_path):
  common = ("--gin.EVAL_PERIOD=1000", "--gin.trainer.train.checkpoint_period=3",
            "--gin.trainer.train.keep_checkpoints=100")
  killed = tmp_path / "killed"
  env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(
      [sys.executable, "-m", "linguamix.train", *_argv(tmp_path, killed, "--gin.TRAIN_STEPS=100000",
                                                       *common)],
      env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + 300
  while not (killed / "checkpoint_6" / "meta").exists():
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    assert time.time() < deadline, "no checkpoint within 300 s"
    time.sleep(0.05)
  time.sleep(0.3)  # past the checkpoint, mid-way through later steps
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rows = _packed_rows_of_one_epoch(seed=0)
  steps = sorted(int(p.name.split("_")[1]) for p in killed.glob("checkpoint_*")
                 if (p / "meta").exists())
  # Resume from a checkpoint inside an epoch (as if the kill came right after it).
  latest = max(s for s in steps if (s * 8) % rows)
  for s in steps:
    if s > latest:
      shutil.rmtree(killed / f"checkpoint_{s}")
  assert latest * 8 > rows  # past the first epoch
  total = latest + math.ceil(rows / 8) + 1  # the resumed part crosses an epoch boundary
  assert train_main.main(_argv(tmp_path, killed, f"--gin.TRAIN_STEPS={total}", *common)) == 0
  straight = tmp_path / "straight"
  assert train_main.main(_argv(tmp_path, straight, f"--gin.TRAIN_STEPS={total}", *common)) == 0
  a = _losses(straight)
  b = {s: v for s, v in _losses(killed).items() if s <= total}
  assert sorted(a) == sorted(b) == list(range(1, total + 1))
  assert [a[s] for s in a] == [b[s] for s in a]  # bit-exact loss curve: the same batches
  pa, pb = _params(straight, total), _params(killed, total)
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
