"""Mixtral (MixtralForCausalLM): a mixture of experts against transformers on a tiny random
checkpoint (2 layers, 4 experts, top-2, d_model 32), its load-balancing loss, expert
parallelism on 8 simulated devices, and the published 8x7B shape."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

import train_helpers
from linguamix.models import decoder
from linguamix.train import main as train_main
from linguamix.train import partitioning, trainer

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_DIR = REPO / "linguamix" / "gin" / "models"

# ---------------------------------------------------------------- the published shape

# Mistral AI, "Mixtral of experts" (https://mistral.ai/news/mixtral-of-experts, 2023-12-11)
# and Jiang et al., "Mixtral of Experts" (arXiv:2401.04088): "46.7B total parameters but
# only uses 12.9B parameters per token". Exactly: transformers' MixtralForCausalLM for
# MixtralConfig() (the 8x7B shape) has 46,702,792,704 parameters.
PUBLISHED_TOTAL_B, PUBLISHED_ACTIVE_B = 46.7, 12.9
HF_TOTAL = 46_702_792_704


def _gin_model(name: str):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([str(GIN_DIR / f"{name}.gin")],
                                        ["DROPOUT_RATE = 0.0", "VOCABULARY = None"])
    return gin.query_parameter("%MODEL").scoped_configurable_fn()
  finally:
    gin.clear_config()


def test_gin_has_the_published_parameter_counts():
  model = _gin_model("mixtral_8x7b")
  cfg = model.config
  assert (cfg.num_experts, cfg.experts_per_token, cfg.scan_layers) == (8, 2, True)
  shapes = jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 8)}))
  flat = jax.tree_util.tree_leaves_with_path(shapes["params"])
  total = sum(int(np.prod(x.shape)) for _, x in flat)
  experts = sum(int(np.prod(x.shape)) for p, x in flat
                if any(f"['mlp']['{k}']" in jax.tree_util.keystr(p) for k in ("wi_0", "wi_1", "wo")))
  # a token runs k of the E experts (and everything else)
  active = total - experts * (cfg.num_experts - cfg.experts_per_token) // cfg.num_experts
  assert total == HF_TOTAL
  assert round(total / 1e9, 1) == PUBLISHED_TOTAL_B and round(active / 1e9, 1) == PUBLISHED_ACTIVE_B


# ---------------------------------------------------------------- expert parallelism

MOE_GIN = """
from linguamix.models import decoder
MODEL = @decoder.DecoderOnlyModel()
decoder.DecoderOnlyModel:
  config = @decoder.DecoderConfig()
  vocabulary = %VOCABULARY
decoder.DecoderConfig:
  vocab_size = 264
  d_model = 32
  num_layers = 2
  num_heads = 4
  num_kv_heads = 2
  mlp_dim = 48
  num_experts = 4
  experts_per_token = 2
  router_aux_loss_coef = 0.01
  scan_layers = True
  dtype = 'float32'
"""
COMMON = ("--gin.TRAIN_STEPS=2", "--gin.trainer.train.log_period=1",
          "--gin.trainer.train.infer_eval_dataset_cfg=None",
          "--gin.trainer.train.train_eval_dataset_cfg=None",
          "--gin.trainer.train.progress_bar=False",
          "--gin.train/data.DatasetConfig.shard_by='rows'")
_SHARDED = """
import json, sys
import gin
from linguamix.train import main, partitioning, trainer
gin_file, root, common = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
mesh = ["--gin.partitioning.Partitioner.data=2", "--gin.partitioning.Partitioner.fsdp=2",
        "--gin.partitioning.Partitioner.model=2"]
assert main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{root}/sharded"', *common, *mesh]) == 0
gin.clear_config()
gin.parse_config_files_and_bindings([gin_file], [])
model = gin.query_parameter("%MODEL").scoped_configurable_fn()
boxed, _ = trainer.abstract_params(model, {"inputs": 16, "targets": 16})
shardings = partitioning.Partitioner(data=2, fsdp=2, model=2).param_shardings(boxed)
mlp = shardings["layers"]["mlp"]
print(json.dumps({k: [a for a in mlp[k].spec] for k in ("wi_0", "wi_1", "wo")}
                 | {"router": [a for a in mlp["router"]["kernel"].spec]}))
"""


def _train_records(model_dir: pathlib.Path) -> list[dict]:
  recs = [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in recs if r["split"] == "train"]


@pytest.mark.slow
def test_expert_parallel_training_on_8_devices_matches_one_device(tmp_path):
  gin_file = train_helpers.write_gin(tmp_path, MOE_GIN)
  assert train_main.main([f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{tmp_path}/one"', *COMMON]) == 0
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{env.get('PYTHONPATH', '')}", JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  out = subprocess.run([sys.executable, "-c", _SHARDED, str(gin_file), str(tmp_path), json.dumps(COMMON)],
                       env=env, cwd=REPO, check=True, capture_output=True, text=True).stdout
  specs = json.loads(out.strip().splitlines()[-1])
  # [layers, expert, embed, mlp]: each `model` shard holds 2 of the 4 experts (mlp then stays
  # whole: `model` already splits this kernel), embed is FSDP-sharded
  assert specs["wi_0"] == specs["wi_1"] == [None, "model", "fsdp", None]
  assert specs["wo"] == [None, "model", None, "fsdp"]
  assert specs["router"] == [None, "fsdp", None]
  one, sharded = _train_records(tmp_path / "one"), _train_records(tmp_path / "sharded")
  assert len(one) == 2 and all(r["router_aux_loss"] > 0 for r in one)
  for key in ("loss", "router_aux_loss", "cross_ent_loss"):
    np.testing.assert_allclose([r[key] for r in sharded], [r[key] for r in one], rtol=2e-5, err_msg=key)
  # the trained loss carries 0.01 x the auxiliary loss
  np.testing.assert_allclose([r["loss"] for r in one],
                             [r["cross_ent_loss"] + r["z_loss"] + 0.01 * r["router_aux_loss"] for r in one],
                             rtol=1e-6)
