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

from linguamix.testing import train_helpers
from linguamix.cli import train as train_main

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
from linguamix.cli import train as main
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


# Optimizer state sharded like the parameters, leaf by leaf and device by device, on a
# fsdp=4 x model=2 mesh: expected shard shapes come from each parameter's own shards and
# optax's factoring rule, not from the partitioner's mapping of optimizer states.
_OPT_STATE_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np, flax.linen as nn
from optax._src import factorized
from linguamix.models import decoder
from linguamix.train import optim, partitioning, step as step_lib, trainer

cfg = decoder.DecoderConfig(vocab_size=512, d_model=128, num_layers=2, num_heads=4, num_kv_heads=2,
                            mlp_dim=256, dtype="float32", dropout_rate=0.0)
model = decoder.DecoderOnlyModel(cfg, None)
part = partitioning.Partitioner(data=1, fsdp=4, model=2)
boxed, shapes = trainer.abstract_params(model, {"inputs": 16, "targets": 16})
abstract = nn.unbox(boxed)
psh = part.param_shardings(boxed)
params = jax.jit(lambda r: nn.unbox(trainer._params_of(model.init_variables(r, shapes))),
                 out_shardings=psh)(jax.random.PRNGKey(0))
devices = jax.devices()
flat, _ = jax.tree_util.tree_flatten_with_path(params)
by_key = {jax.tree_util.keystr(p): x for p, x in flat}

def shard_shapes(x):
  return {s.device: s.data.shape for s in x.addressable_shards}

def param_of(path):
  key = jax.tree_util.keystr(path)
  hits = [k for k in by_key if key.endswith(k)]
  return by_key[max(hits, key=len)] if hits else None

def drop(shape, i):
  return shape[:i] + shape[i + 1:]

total = sum(x.nbytes for x in jax.tree.leaves(params))
per_device = {d: sum(int(np.prod(shard_shapes(x)[d])) * 4 for x in jax.tree.leaves(params)) for d in devices}
assert max(per_device.values()) < total / 4, (per_device, total)

# LoRA-style freezing: only the attention trains (optax.multi_transform's masked state).
trainable = jax.tree_util.tree_map_with_path(lambda p, _: "attention" in jax.tree_util.keystr(p), abstract)
for name, frozen in (("adamw", None), ("adamw", trainable), ("adafactor", None)):
  tx = optim.build(name, optim.schedule(), trainable=frozen)
  sh = step_lib.state_shardings(psh, tx, abstract, part)
  opt = jax.jit(tx.init, out_shardings=sh["opt_state"])(params)
  expected = {d: 0 for d in devices}
  checked = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(opt)[0]:
    key, p = jax.tree_util.keystr(path), param_of(path)
    if p is None or leaf.ndim == 0 or leaf.shape == (1,):  # counts, placeholders: replicated
      want = {d: leaf.shape for d in devices}
    elif name == "adamw":
      want = shard_shapes(p)
    else:
      d1, d0 = factorized._factored_dims(p.shape, True, 128) or (None, None)
      field = key.split("]", 1)[1].split("[", 1)[0]  # .v_row / .v_col / .v
      want = {d: (s if field == ".v" else drop(s, d0 if field == ".v_row" else d1))
              for d, s in shard_shapes(p).items()}
    got = shard_shapes(leaf)
    assert got == want, (name, key, got, want)
    checked += p is not None and leaf.ndim > 0 and leaf.shape != (1,)
    for d in devices:
      expected[d] += int(np.prod(want[d])) * leaf.dtype.itemsize
  assert checked >= len(by_key) - (0 if frozen is None else 8), (name, checked)
  got_bytes = {d: sum(s.data.nbytes for x in jax.tree.leaves(opt) for s in x.addressable_shards
                      if s.device == d) for d in devices}
  assert got_bytes == expected, (name, got_bytes, expected)
  if name == "adamw" and frozen is None:  # two moments per parameter, each sharded like it
    assert all(abs(got_bytes[d] - 2 * per_device[d]) <= 8 for d in devices), (got_bytes, per_device)

  # The compiled step's arguments per device are the sharded state, not the whole
  # optimizer state (gradient accumulation over 2 microbatches included).
  state = {"params": params, "opt_state": opt, "step": jax.device_put(jnp.int32(0), part.replicated())}
  step = step_lib.make_train_step(model, tx, optim.schedule(), part, sh, num_microbatches=2)
  batch = {k: jax.ShapeDtypeStruct((8, 32), jnp.int32, sharding=part.batch_sharding(2))
           for k in ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
                     "decoder_segment_ids", "decoder_positions")}
  abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, sh)
  rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=part.replicated())
  args = step.lower(abstract_state, batch, rng).compile().memory_analysis().argument_size_in_bytes
  state_bytes = per_device[devices[0]] + expected[devices[0]]
  assert state_bytes <= args <= state_bytes + 8 * 32 * 4 * 5 + 64, (name, args, state_bytes)
print("ok")
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


@pytest.mark.slow
def test_optimizer_state_sharded_like_params_on_8_devices():
  out = subprocess.run([sys.executable, "-c", _OPT_STATE_SCRIPT], cwd=REPO, capture_output=True,
                       text=True, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_microbatches_accumulate_to_the_full_batch(tmp_path, one_device_losses):
  gin_file = train_helpers.write_gin(tmp_path)
  assert train_main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{tmp_path}/run"', *COMMON,
                          "--gin.trainer.train.num_microbatches=4"]) == 0
  np.testing.assert_allclose(_losses(tmp_path / "run"), one_device_losses, rtol=2e-5)
