"""GPT-NeoX (Pythia) and Qwen3 beyond the per-family parity of test_decoder_hf.py: Hub-style
Pythia checkpoints, Qwen3 LoRA as a PEFT adapter, and the sliding-window flags refused."""

import dataclasses
import json

import jax
import numpy as np
import peft
import pytest
import seqio
import torch
import transformers
from safetensors import numpy as st_numpy

import hf_helpers
from linguamix.models import decoder, lora
from linguamix.models.hf import decoder_io, tensors
from linguamix.models.hf import peft as peft_export

VOCAB = 96
_COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64)

pytestmark = pytest.mark.usefixtures("fast_init_compile")




def _ids(seed=0):
  return np.random.default_rng(seed).integers(3, VOCAB, size=(2, 10))


def _logits(model, params, ids):
  return np.asarray(model.logits(params, {"decoder_input_tokens": jax.numpy.asarray(ids),
                                          "decoder_target_tokens": jax.numpy.asarray(ids)}))


def test_pythia_hub_checkpoint_with_legacy_rotary_keys_and_buffers(tmp_path):
  """Pythia's config.json (transformers 4) says rotary_pct / rotary_emb_base, and its
  checkpoints carry the causal-mask and inverse-frequency buffers."""
  legacy = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", **_COMMON,
            "hidden_act": "gelu", "layer_norm_eps": 1e-5, "rotary_pct": 0.5, "rotary_emb_base": 1000,
            "use_parallel_residual": True, "tie_word_embeddings": False, "bos_token_id": 0,
            "eos_token_id": 0}
  hf_model = hf_helpers.randomize(transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{
      k: v for k, v in legacy.items() if k not in ("architectures", "model_type")})).eval())
  hf_model.save_pretrained(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(legacy))
  hf_tensors = tensors.read_safetensors(tmp_path)
  for i in range(2):
    prefix = f"gpt_neox.layers.{i}.attention."
    hf_tensors[prefix + "bias"] = np.tril(np.ones((64, 64), bool))[None, None]
    hf_tensors[prefix + "masked_bias"] = np.asarray(-1e9, np.float32)
    hf_tensors[prefix + "rotary_emb.inv_freq"] = np.ones(2, np.float32)
  st_numpy.save_file(hf_tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})

  arch, cfg, params = decoder_io.load_hf(tmp_path)
  assert (arch.name, cfg.rope_fraction, cfg.rope_base, cfg.parallel_residual) == ("GPTNeoXForCausalLM", 0.5, 1000.0, True)
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=0))
  with torch.no_grad():
    ref = hf_model(torch.as_tensor(_ids())).logits.numpy()
  np.testing.assert_allclose(_logits(model, params, _ids()), ref, atol=1e-4, rtol=1e-4)


def test_qwen3_lora_adapters_export_as_peft(tmp_path):
  hf_config = transformers.Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=16)
  hf_helpers.randomize(transformers.Qwen3ForCausalLM(hf_config)).save_pretrained(tmp_path / "base")
  arch, cfg, base_params = decoder_io.load_hf(tmp_path / "base")
  config = lora.LoraConfig(targets=r"attention/(query|key|value|out)|mlp/", rank=4, alpha=8.0)
  lora_model = decoder.DecoderOnlyModel(
      dataclasses.replace(cfg, lora=config), seqio.PassThroughVocabulary(VOCAB))
  params = lora.add_adapters(base_params, lora_model, jax.random.PRNGKey(1))
  # B starts at zero: make every adapter change the output
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.05 * np.random.default_rng(len(jax.tree_util.keystr(p))).standard_normal(x.shape)
      if lora.is_adapter(p) else x, params)
  want = _logits(lora_model, params, _ids(1))

  peft_export.write_adapter(tmp_path / "peft", arch, lora_model.config, params, str(tmp_path / "base"))
  written = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["target_modules"]
  assert {m.rsplit(".", 1)[-1] for m in written} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                     "up_proj", "down_proj"}
  fresh = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
  adapted = peft.PeftModel.from_pretrained(fresh, tmp_path / "peft").eval()
  with torch.no_grad():
    got = adapted(torch.as_tensor(_ids(1))).logits.numpy()
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def _qwen3_json(**flags):
  config = transformers.Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=16, **flags).to_dict()
  return {**config, "architectures": ["Qwen3ForCausalLM"]}


def test_qwen3_sliding_window_on_some_layers_is_refused_by_name():
  with pytest.raises(ValueError, match="max_window_layers"):
    decoder_io.config_from_hf(_qwen3_json(use_sliding_window=True, sliding_window=4, max_window_layers=1))
  # the window is off unless use_sliding_window says so, whatever sliding_window holds
  _, cfg = decoder_io.config_from_hf({**_qwen3_json(), "use_sliding_window": False, "sliding_window": 4})
  assert cfg.sliding_window is None and cfg.qk_norm
  _, cfg = decoder_io.config_from_hf(_qwen3_json(use_sliding_window=True, sliding_window=4, max_window_layers=0))
  assert cfg.sliding_window == 4
