"""LoRA adapters: zero-init equals the base, only adapters train, merge, and PEFT export."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import peft
import pytest
import seqio
import torch
import transformers

from linguamix.models import decoder, lora
from linguamix.models.hf import architectures, decoder_io
from linguamix.models.hf import peft as peft_export
from linguamix.train import optim

LORA = lora.LoraConfig(targets=r"attention/(query|value|out)|mlp/wo", rank=4, alpha=8.0)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  torch.manual_seed(0)
  config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, intermediate_size=64)
  hf_model = transformers.LlamaForCausalLM(config).eval()
  directory = tmp_path_factory.mktemp("llama")
  hf_model.save_pretrained(directory)
  arch, cfg, params = decoder_io.load_hf(directory)
  return hf_model, directory, arch, cfg, params


pytestmark = pytest.mark.usefixtures("fast_init_compile")


def _models(cfg):
  vocab = seqio.PassThroughVocabulary(96)
  return decoder.DecoderOnlyModel(cfg, vocab), decoder.DecoderOnlyModel(dataclasses.replace(cfg, lora=LORA), vocab)


def _batch(seed=0):
  ids = np.random.default_rng(seed).integers(3, 96, size=(2, 10))
  return {"decoder_input_tokens": jnp.asarray(ids[:, :-1]), "decoder_target_tokens": jnp.asarray(ids[:, 1:])}


def _train(model, params, steps=3):
  tx = optim.build("adamw", optax.constant_schedule(1e-2), trainable=model.trainable_mask(params))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    grads = jax.grad(lambda p: model.loss_fn(p, _batch(), None)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(steps):
    params, opt_state = step(params, opt_state)
  return params, opt_state


def test_zero_init_adapters_equal_base_and_only_adapters_train(base):
  _, _, _, cfg, base_params = base
  base_model, lora_model = _models(cfg)
  params = lora.add_adapters(base_params, lora_model, jax.random.PRNGKey(1))
  assert params["layers_0"]["attention"]["query"]["lora"]["b"].shape == (4, 4, 8)
  assert "lora" not in params["layers_0"]["attention"]["key"]
  np.testing.assert_array_equal(jax.jit(lora_model.logits)(params, _batch()),
                                jax.jit(base_model.logits)(base_params, _batch()))

  trained, opt_state = _train(lora_model, params)
  adapters, frozen = lora.split_params(trained)
  jax.tree.map(np.testing.assert_array_equal, frozen, base_params)
  assert np.abs(np.asarray(adapters["layers_0"]["attention"]["query"]["lora"]["b"])).max() > 0
  # optimizer moments exist for the adapter leaves only
  state_size = sum(x.size for x in jax.tree.leaves(opt_state) if hasattr(x, "size") and x.ndim)
  adapter_size = sum(x.size for x in jax.tree.leaves(adapters))
  assert state_size == 2 * adapter_size
  assert base_model.trainable_mask(base_params) is None  # full fine-tuning stays the default


def test_merged_weights_equal_adapter_plus_base_and_peft_loads_the_export(base, tmp_path):
  _, hf_dir, arch, cfg, base_params = base
  base_model, lora_model = _models(cfg)
  trained, _ = _train(lora_model, lora.add_adapters(base_params, lora_model, jax.random.PRNGKey(2)))
  want = np.asarray(jax.jit(lora_model.logits)(trained, _batch(1)))
  merged = lora.merge(trained, LORA)
  np.testing.assert_allclose(jax.jit(base_model.logits)(merged, _batch(1)), want, atol=1e-4)

  peft_export.write_adapter(tmp_path, arch, lora_model.config, trained, str(hf_dir))
  assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 4
  # a fresh base: peft injects its layers into the model it is given
  fresh = transformers.AutoModelForCausalLM.from_pretrained(hf_dir)
  peft_model = peft.PeftModel.from_pretrained(fresh, tmp_path).eval()
  with torch.no_grad():
    got = peft_model(torch.as_tensor(np.array(_batch(1)["decoder_input_tokens"]))).logits.numpy()
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_scanned_merge_matches_and_fused_families_refuse_peft_export():
  cfg = decoder.DecoderConfig(vocab_size=96, d_model=32, num_layers=2, num_heads=4, mlp_dim=64,
                              scan_layers=True, lora=LORA)
  model = decoder.DecoderOnlyModel(cfg, None)
  params = nn.meta.unbox(jax.jit(lambda r: model.init_variables(r, {"decoder_input_tokens": (1, 8)}))(
      jax.random.PRNGKey(0)))["params"]
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.1 if lora.is_adapter(p) else x, params)  # nonzero B
  merged_model = decoder.DecoderOnlyModel(dataclasses.replace(cfg, lora=None), None)
  np.testing.assert_allclose(jax.jit(merged_model.logits)(lora.merge(params, LORA), _batch()),
                             jax.jit(model.logits)(params, _batch()), atol=1e-4, rtol=1e-5)
  with pytest.raises(ValueError, match="BloomForCausalLM"):
    peft_export.write_adapter("/nonexistent", architectures.get("BloomForCausalLM"), cfg, params)


def test_convert_cli_merges_or_exports_adapters_of_a_checkpoint(base, tmp_path, capsys):
  import orbax.checkpoint as ocp

  from linguamix import cli

  _, hf_dir, _, cfg, base_params = base
  _, lora_model = _models(cfg)
  trained, _ = _train(lora_model, lora.add_adapters(base_params, lora_model, jax.random.PRNGKey(3)))
  want = np.asarray(jax.jit(lora_model.logits)(trained, _batch(2)))
  ckpt = tmp_path / "checkpoint_3"
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(ckpt / "state", {"params": trained})
  config = str(hf_dir / "config.json")
  assert cli.main(["convert", "export-hf", str(ckpt), str(tmp_path / "x"), "--config", config]) == 2
  assert "linguamix convert: error: " in (err := capsys.readouterr().err) and "LoRA adapters: pass --lora_alpha" in err
  assert not (tmp_path / "x").exists()
  ids = torch.as_tensor(np.array(_batch(2)["decoder_input_tokens"]))
  assert cli.main(["convert", "export-hf", str(ckpt), str(tmp_path / "merged"), "--config", config,
                   "--lora_alpha", "8"]) == 0
  merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
  assert cli.main(["convert", "export-peft", str(ckpt), str(tmp_path / "peft"), "--config", config,
                   "--lora_alpha", "8"]) == 0
  with torch.no_grad():
    np.testing.assert_allclose(merged(ids).logits.numpy(), want, atol=1e-4)
    fresh = transformers.AutoModelForCausalLM.from_pretrained(hf_dir)
    adapted = peft.PeftModel.from_pretrained(fresh, tmp_path / "peft").eval()
    np.testing.assert_allclose(adapted(ids).logits.numpy(), want, atol=1e-4)
