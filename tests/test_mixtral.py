"""Mixtral (MixtralForCausalLM): a mixture of experts against transformers on a tiny random
checkpoint (2 layers, 4 experts, top-2, d_model 32), its load-balancing loss, expert
parallelism on 8 simulated devices, and the published 8x7B shape."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import dataclasses

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import torch
import transformers

from linguamix.testing import train_helpers
from linguamix.models import decoder
from linguamix.models.hf import decoder_io
from linguamix.cli import train as train_main

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_DIR = REPO / "linguamix" / "gin" / "models"

VOCAB = 96
HF_CONFIG = transformers.MixtralConfig(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
    sliding_window=5, router_jitter_noise=0.1, output_router_logits=True, router_aux_loss_coef=0.02)


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
  torch.manual_seed(0)
  hf_model = transformers.MixtralForCausalLM(HF_CONFIG).eval()
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():  # HF inits norms to ones; random values test their mapping too
    for p in hf_model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
  directory = tmp_path_factory.mktemp("mixtral")
  hf_model.save_pretrained(directory)
  arch, cfg, params = decoder_io.load_hf(directory)
  return hf_model, directory, arch, cfg, params


def _model(cfg, **kwargs):
  return decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2), **kwargs)


def _padded_batch():
  """Two rows, the second padded after 7 tokens (segment 0 = padding)."""
  ids = np.random.default_rng(0).integers(3, VOCAB, size=(2, 12))
  targets = ids[:, 1:].copy()
  targets[1, 7:] = 0
  weights = (targets > 0) & (np.arange(11) >= 3)
  return {"decoder_input_tokens": jnp.asarray(ids[:, :-1]), "decoder_target_tokens": jnp.asarray(targets),
          "decoder_loss_weights": jnp.asarray(weights, jnp.float32)}


def test_config_translation(mixtral):
  _, _, arch, cfg, _ = mixtral
  assert arch.name == "MixtralForCausalLM"
  assert (cfg.num_experts, cfg.experts_per_token, cfg.sliding_window) == (4, 2, 5)
  assert (cfg.router_aux_loss_coef, cfg.router_jitter_noise, cfg.rope_base) == (0.02, 0.1, 1e6)


def test_a_missing_or_misshapen_expert_tensor_is_named(mixtral):
  from linguamix.models.hf import tensors
  _, directory, arch, cfg, _ = mixtral
  hf_tensors = tensors.read_safetensors(directory)
  name = "model.layers.1.block_sparse_moe.experts.2.w3.weight"
  with pytest.raises(KeyError, match=rf"tensor {re.escape(name)} is missing \(needed for layers_1/mlp/wi_1\)"):
    decoder_io.params_from_hf(arch, cfg, {k: v for k, v in hf_tensors.items() if k != name})
  with pytest.raises(ValueError, match=rf"tensor {re.escape(name)} has shape \(47, 32\) but the config implies "
                                       r"\(48, 32\)"):
    decoder_io.params_from_hf(arch, cfg, {**hf_tensors, name: hf_tensors[name][:47]})


@pytest.mark.parametrize("dispatch", decoder.MOE_DISPATCHES)
def test_logits_scores_and_aux_loss_match_transformers(mixtral, dispatch):
  hf_model, _, _, cfg, params = mixtral
  model = _model(dataclasses.replace(cfg, moe_dispatch=dispatch))
  batch = _padded_batch()
  ids = np.asarray(batch["decoder_input_tokens"])
  real = np.asarray(batch["decoder_target_tokens"]) > 0
  with torch.no_grad():
    out = hf_model(torch.as_tensor(ids), attention_mask=torch.as_tensor(real, dtype=torch.long))
  ref = out.logits.numpy()
  np.testing.assert_allclose(np.asarray(model.logits(params, batch))[real], ref[real], atol=1e-4, rtol=1e-4)
  logp = torch.log_softmax(torch.as_tensor(ref, dtype=torch.float64), -1).numpy()
  targets = np.asarray(batch["decoder_target_tokens"])
  tok_logp = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  ref_score = (tok_logp * np.asarray(batch["decoder_loss_weights"])).sum(-1)
  np.testing.assert_allclose(model.score_batch(params, batch), ref_score, rtol=1e-5, atol=1e-4)
  # transformers' aux_loss counts the tokens its attention mask keeps: padding is left out
  np.testing.assert_allclose(model.router_aux_loss(params, batch), float(out.aux_loss), rtol=1e-5)
  loss, metrics = jax.jit(model.loss_fn)(params, batch, None)
  np.testing.assert_allclose(metrics["router_aux_loss"], float(out.aux_loss), rtol=1e-5)
  np.testing.assert_allclose(loss, metrics["cross_ent_loss"] + 0.02 * float(out.aux_loss), rtol=1e-6)


def test_aux_loss_without_padding_and_under_scan_matches_transformers(mixtral):
  hf_model, directory, _, _, _ = mixtral
  _, cfg, params = decoder_io.load_hf(directory, scan_layers=True, remat_policy="full")
  ids = np.random.default_rng(1).integers(3, VOCAB, size=(3, 9))
  batch = {"decoder_input_tokens": jnp.asarray(ids[:, :-1]), "decoder_target_tokens": jnp.asarray(ids[:, 1:])}
  with torch.no_grad():
    out = hf_model(torch.as_tensor(ids[:, :-1]))
  np.testing.assert_allclose(_model(cfg).router_aux_loss(params, batch), float(out.aux_loss), rtol=1e-5)
  np.testing.assert_allclose(_model(cfg).logits(params, batch), out.logits.numpy(), atol=1e-4, rtol=1e-4)


def test_router_jitter_acts_in_training_only(mixtral):
  _, _, _, cfg, params = mixtral
  batch = _padded_batch()
  rng = jax.random.PRNGKey(1)
  jittered = _model(cfg).loss_fn(params, batch, rng)[0]
  assert abs(float(jittered) - float(_model(cfg).loss_fn(params, batch, None)[0])) > 1e-4
  plain = dataclasses.replace(cfg, router_jitter_noise=0.0)
  np.testing.assert_allclose(_model(plain).loss_fn(params, batch, rng)[0],
                             _model(plain).loss_fn(params, batch, None)[0], rtol=1e-6)


@pytest.mark.parametrize("dispatch", decoder.MOE_DISPATCHES)
def test_greedy_decoding_matches_transformers_generate(mixtral, dispatch):
  hf_model, _, _, cfg, params = mixtral
  model = _model(dataclasses.replace(cfg, moe_dispatch=dispatch), start_token="none")
  context = np.random.default_rng(4).integers(3, VOCAB, size=5).tolist()
  length = 12
  tokens = np.asarray(context + [3] * 6 + [0] * (length - 11))
  batch = {"decoder_input_tokens": jnp.asarray(np.concatenate([[0], tokens[:-1]])[None]),
           "decoder_target_tokens": jnp.asarray(tokens[None]),
           "decoder_causal_attention": jnp.asarray((np.arange(length) <= len(context))[None], jnp.int32)}
  out = np.asarray(model.predict_batch(params, batch, eos_id=-1))[0, :6]
  ids = torch.as_tensor([context])
  with torch.no_grad():
    ref = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                            do_sample=False, pad_token_id=0)[0, ids.shape[1]:].numpy()
  np.testing.assert_array_equal(out, ref)


def test_export_reloads_in_transformers(mixtral, tmp_path):
  hf_model, directory, arch, cfg, params = mixtral
  decoder_io.save_hf(tmp_path, arch, cfg, params)
  written = json.loads((tmp_path / "config.json").read_text())
  assert (written["num_local_experts"], written["num_experts_per_tok"], written["sliding_window"]) == (4, 2, 5)
  assert (written["output_router_logits"], written["router_aux_loss_coef"]) == (True, 0.02)
  # the names transformers' save_pretrained writes (block_sparse_moe.experts.E.w1 ..., one tensor per expert)
  from safetensors import safe_open
  names = [sorted(safe_open(str(d / "model.safetensors"), "np").keys()) for d in (tmp_path, directory)]
  assert names[0] == names[1] and "model.layers.1.block_sparse_moe.experts.3.w2.weight" in names[0]
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  assert type(reloaded) is transformers.MixtralForCausalLM
  ids = torch.as_tensor(np.random.default_rng(1).integers(3, VOCAB, size=(2, 10)))
  with torch.no_grad():
    np.testing.assert_allclose(reloaded(ids).logits.numpy(), hf_model(ids).logits.numpy(), atol=1e-5)
  for a, b in zip(reloaded.state_dict().values(), hf_model.state_dict().values()):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


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
from linguamix.cli import train as main
from linguamix.train import partitioning, trainer
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


def test_attention_lora_exports_to_peft_and_expert_lora_is_refused(mixtral, tmp_path):
  import peft
  from linguamix.models import lora
  from linguamix.models.hf import peft as peft_export
  _, directory, arch, cfg, params = mixtral
  with pytest.raises(ValueError, match="adapters on experts are not implemented"):
    model = _model(dataclasses.replace(cfg, lora=lora.LoraConfig(targets="attention/|mlp/")))
    jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 8)}))
  lora_cfg = dataclasses.replace(cfg, lora=lora.LoraConfig(targets=r"attention/(query|value|out)", rank=4))
  model = _model(lora_cfg)
  adapted = lora.add_adapters(params, model, jax.random.PRNGKey(1))
  # B starts at zero: random B values make the adapters change the logits
  adapted = jax.tree_util.tree_map_with_path(
      lambda p, x: jax.random.normal(jax.random.PRNGKey(2), x.shape) * 0.1
      if jax.tree_util.keystr(p).endswith("['b']") else x, adapted)
  batch = _padded_batch()
  want = np.asarray(model.logits(adapted, batch))
  assert np.abs(want - np.asarray(_model(cfg).logits(params, batch))).max() > 1e-3
  peft_export.write_adapter(tmp_path, arch, lora_cfg, adapted, str(directory))
  fresh = transformers.AutoModelForCausalLM.from_pretrained(directory)
  peft_model = peft.PeftModel.from_pretrained(fresh, tmp_path).eval()
  with torch.no_grad():
    got = peft_model(torch.as_tensor(np.asarray(batch["decoder_input_tokens"]))).logits.numpy()
  # without an attention mask transformers' row 1 sees its padding only after position 7
  np.testing.assert_allclose(got[:, :7], want[:, :7], atol=1e-4)
