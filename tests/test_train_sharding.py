"""Sharding is transparent: 8 simulated CPU devices on a data x FSDP x tensor-parallel
mesh, two processes over jax.distributed (loopback, gloo CPU collectives) and gradient
accumulation over microbatches give the losses of one device and one batch."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

import train_helpers
from linguamix.train import main as train_main

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMON = ("--gin.TRAIN_STEPS=2", "--gin.trainer.train.log_period=1",
          "--gin.trainer.train.infer_eval_dataset_cfg=None",
          "--gin.trainer.train.train_eval_dataset_cfg=None",
          "--gin.trainer.train.progress_bar=False",
          "--gin.train/data.DatasetConfig.shard_by='rows'")
# One mesh with all three axes > 1: batch over data x fsdp, weights over fsdp and model.
MESHES = {"data2_fsdp2_model2": (2, 2, 2)}

_MESH_SCRIPT = """
import json, sys
from linguamix.train import main
gin_file, root, meshes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
common = json.loads(sys.argv[4])
for name, (d, f, m) in meshes.items():
  rc = main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{root}/{name}"', *common,
                  f"--gin.partitioning.Partitioner.data={d}", f"--gin.partitioning.Partitioner.fsdp={f}",
                  f"--gin.partitioning.Partitioner.model={m}"])
  assert rc == 0, name
# 8 data-parallel devices cannot split a batch of 12: refused before compiling.
assert main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{root}/bad"', *common,
                  "--gin.BATCH_SIZE=12"]) == 2
"""


def _losses(model_dir: pathlib.Path) -> list[float]:
  recs = [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().splitlines()]
  return [r["loss"] for r in recs if r["split"] == "train"]


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{env.get('PYTHONPATH', '')}",
             JAX_PLATFORMS="cpu", **extra)
  return env


@pytest.fixture(scope="module")
def one_device_losses(tmp_path_factory) -> list[float]:
  tmp = tmp_path_factory.mktemp("one")
  gin_file = train_helpers.write_gin(tmp)
  assert train_main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{tmp}/run"', *COMMON]) == 0
  return _losses(tmp / "run")


@pytest.mark.slow
def test_meshes_on_8_devices_match_one_device(tmp_path, one_device_losses):
  gin_file = train_helpers.write_gin(tmp_path)
  subprocess.run(
      [sys.executable, "-c", _MESH_SCRIPT, str(gin_file), str(tmp_path), json.dumps(MESHES),
       json.dumps(COMMON)],
      env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"), cwd=REPO, check=True,
      stdout=subprocess.DEVNULL)
  assert len(one_device_losses) == 2
  for name in MESHES:
    np.testing.assert_allclose(_losses(tmp_path / name), one_device_losses, rtol=2e-5, err_msg=name)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, one_device_losses):
  gin_file = train_helpers.write_gin(tmp_path)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "linguamix.train", f"--gin_file={gin_file}",
       f'--gin.MODEL_DIR="{tmp_path}/run"', *COMMON],
      env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i), JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo"),
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
  np.testing.assert_allclose(_losses(tmp_path / "run"), one_device_losses, rtol=2e-5)
  assert (tmp_path / "run" / "checkpoint_2" / "state").is_dir()


def test_microbatches_accumulate_to_the_full_batch(tmp_path, one_device_losses):
  gin_file = train_helpers.write_gin(tmp_path)
  assert train_main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{tmp_path}/run"', *COMMON,
                          "--gin.trainer.train.num_microbatches=4"]) == 0
  np.testing.assert_allclose(_losses(tmp_path / "run"), one_device_losses, rtol=2e-5)
