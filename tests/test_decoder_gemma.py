"""Gemma 2 and Gemma 3 (text) against transformers on tiny random checkpoints.

Sequences are longer than the sliding window and both layer kinds occur, so a window on
the wrong layers, a RoPE base on the wrong kind or a missing soft-cap shows in the logits.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import peft
import pytest
import seqio
import torch
import transformers

import hf_helpers
from linguamix.models import decoder, lora
from linguamix.models.hf import decoder_io
from linguamix.models.hf import peft as peft_export

VOCAB = 128
WINDOW = 4
_COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
               num_attention_heads=4, head_dim=16, sliding_window=WINDOW, max_position_embeddings=64,
               query_pre_attn_scalar=12)
# (class, config, scale of the random weights): tied embeddings at larger weights decode one
# token over and over, so Gemma 2 unties them (testing lm_head) and Gemma 3 keeps them small.
HF = {
    # soft-caps low enough to bite at these logit sizes; biases cover attention_bias (o_proj too)
    "gemma2": (transformers.Gemma2ForCausalLM, transformers.Gemma2Config(
        **_COMMON, num_key_value_heads=2, attention_bias=True, attn_logit_softcapping=3.0,
        final_logit_softcapping=5.0, tie_word_embeddings=False), 0.2),
    # attn_logit_softcapping is set to show it is inert: transformers' Gemma 3 never applies it
    "gemma3": (transformers.Gemma3ForCausalLM, transformers.Gemma3TextConfig(
        **_COMMON, num_key_value_heads=1, attn_logit_softcapping=3.0,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}), 0.05),
}

pytestmark = pytest.mark.usefixtures("fast_init_compile")




@pytest.fixture(scope="module", params=sorted(HF))
def family(request, tmp_path_factory):
  name = request.param
  cls, config, scale = HF[name]
  hf_model = hf_helpers.randomize(cls(config).eval(), scale)
  directory = tmp_path_factory.mktemp(name)
  hf_model.save_pretrained(directory)
  return name, hf_model, directory


def _load(directory, **overrides):
  arch, cfg, params = decoder_io.load_hf(directory, **overrides)
  return arch, cfg, params, decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2))


def _ids(b=2, length=16, seed=0):
  return hf_helpers.random_ids(VOCAB, b, length, seed)






def test_config_translation(family):
  name, _, directory = family
  _, cfg, _, _ = _load(directory)
  local = [k == "sliding_attention" for k in HF[name][1].layer_types]
  assert cfg.post_norms and cfg.local_window == WINDOW and list(cfg.local_layers) == local
  assert cfg.query_scale == pytest.approx(12 ** -0.5)
  if name == "gemma2":
    assert (cfg.attn_logit_softcap, cfg.final_logit_softcap, cfg.qk_norm) == (3.0, 5.0, False)
    assert cfg.qkv_bias and cfg.out_bias
  else:
    assert (cfg.attn_logit_softcap, cfg.final_logit_softcap, cfg.qk_norm) == (None, None, True)
    assert (cfg.rope_base, cfg.rope_type, cfg.rope_factor, cfg.rope_local_base) == (10000.0, "linear", 2.0, 50.0)


@pytest.mark.parametrize("scan", [False, True])
def test_logits_and_scores_match_transformers(family, scan):
  _, hf_model, directory = family
  _, cfg, params, model = _load(directory, scan_layers=scan)
  ids = _ids()
  batch = hf_helpers.lm_batch(ids)
  ref = hf_helpers.hf_logits(hf_model, ids[:, :-1])
  logits = np.asarray(jax.jit(model.logits)(params, batch))
  np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=1e-4)
  logp = torch.log_softmax(torch.as_tensor(ref, dtype=torch.float64), -1).numpy()
  ref_score = (np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0] * np.asarray(batch["decoder_loss_weights"])).sum(-1)
  np.testing.assert_allclose(jax.jit(model.score_batch)(params, batch), ref_score, rtol=1e-5, atol=1e-4)
  # chunked logit stats (training's path) soft-cap too
  chunked = decoder.DecoderOnlyModel(cfg, model.vocabulary, logits_chunk_length=4)
  np.testing.assert_allclose(chunked.score_batch(params, batch), ref_score, rtol=1e-5, atol=1e-4)
  # the window matters at this length: without it the sliding layers give other logits
  unwindowed = decoder.DecoderOnlyModel(dataclasses.replace(cfg, local_window=64), model.vocabulary)
  assert np.abs(np.asarray(unwindowed.logits(params, batch)) - ref).max() > 1e-2


@pytest.mark.parametrize("scan, prompt_len, seed", [(False, 3, 1), (True, 6, 2)])
def test_greedy_decoding_matches_transformers(family, scan, prompt_len, seed):
  """KV-cache decoding past the window: the cache holds every slot, the mask picks the window."""
  _, hf_model, directory = family
  _, _, params, model = _load(directory, scan_layers=scan)
  length, new = 20, 12
  context = _ids(1, prompt_len, seed)
  batch = {"decoder_input_tokens": jnp.asarray(np.pad(context, ((0, 0), (0, length - prompt_len)))),
           "decoder_causal_attention": jnp.asarray((np.arange(length) < prompt_len)[None], jnp.int32)}
  tokens = np.asarray(model.predict_batch(params, batch, eos_id=-1))[0, :new]
  with torch.no_grad():
    ids = torch.as_tensor(context)
    ref = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                            do_sample=False, pad_token_id=0)[0, prompt_len:].numpy()
  assert len(set(ref.tolist())) > 2  # not a degenerate repetition
  np.testing.assert_array_equal(tokens, ref)


def test_export_reloads_in_transformers(family, tmp_path):
  name, hf_model, directory = family
  arch, cfg, params, _ = _load(directory, scan_layers=True)
  original = json.loads((directory / "config.json").read_text())
  decoder_io.save_hf(tmp_path, arch, cfg, params,
                     extra_config={k: v for k, v in original.items() if k.endswith("token_id")})
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  assert type(reloaded) is HF[name][0]
  ids = _ids(seed=3)
  np.testing.assert_allclose(hf_helpers.hf_logits(reloaded, ids), hf_helpers.hf_logits(hf_model, ids), atol=1e-5)
  _, again, _, _ = _load(tmp_path, scan_layers=True)
  assert again == cfg


def test_peft_export_loads_in_peft(family, tmp_path):
  _, _, directory = family
  arch, cfg, params, _ = _load(directory)
  lora_cfg = lora.LoraConfig(targets=r"attention/(query|key|value|out)|mlp/", rank=2, alpha=4.0)
  model = decoder.DecoderOnlyModel(dataclasses.replace(cfg, lora=lora_cfg), seqio.PassThroughVocabulary(VOCAB))
  adapted = lora.add_adapters(params, model, jax.random.PRNGKey(1))
  # B starts at zero: random B too, so the adapters change the logits
  rng = np.random.default_rng(5)
  adapted = jax.tree_util.tree_map_with_path(
      lambda path, x: (rng.normal(size=x.shape) * 0.1).astype(np.float32) if path[-1].key == "b" else x,
      adapted)
  batch = hf_helpers.lm_batch(_ids(seed=4))
  want = np.asarray(model.logits(adapted, batch))
  peft_export.write_adapter(tmp_path, arch, model.config, adapted, str(directory))
  fresh = transformers.AutoModelForCausalLM.from_pretrained(directory)
  peft_model = peft.PeftModel.from_pretrained(fresh, tmp_path).eval()
  with torch.no_grad():
    got = peft_model(torch.as_tensor(np.array(batch["decoder_input_tokens"]))).logits.numpy()
  assert np.abs(want - np.asarray(decoder.DecoderOnlyModel(cfg, None).logits(params, batch))).max() > 1e-2
  np.testing.assert_allclose(got, want, atol=1e-4)


def _gemma3_dict(**changes):
  return {**HF["gemma3"][1].to_dict(), "architectures": ["Gemma3ForCausalLM"], **changes}


def test_gemma3_legacy_config_keys_translate_alike():
  """Configs written before transformers 5 (gemma-3-1b's on the Hub) name RoPE and the pattern differently."""
  new = _gemma3_dict(layer_types=None, sliding_window_pattern=2)
  new["rope_parameters"] = {"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                            "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}
  legacy = _gemma3_dict(layer_types=None, sliding_window_pattern=2, rope_parameters=None, rope_theta=10000.0,
                        rope_local_base_freq=50.0, rope_scaling={"rope_type": "linear", "factor": 2.0})
  _, from_new = decoder_io.config_from_hf(new)
  _, from_legacy = decoder_io.config_from_hf(legacy)
  assert from_new == from_legacy
  assert list(from_new.local_layers) == [True, False, True, False]


@pytest.mark.parametrize("changes, message", [
    (dict(architectures=["Gemma3ForConditionalGeneration"]), "Gemma3ForConditionalGeneration"),
    (dict(use_bidirectional_attention=True), "use_bidirectional_attention=True"),
    (dict(rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e4},
                           "sliding_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}),
     "sliding_attention.rope_type='linear'"),
])
def test_unimplemented_settings_are_refused_by_name(changes, message):
  with pytest.raises(ValueError, match=message):
    decoder_io.config_from_hf(_gemma3_dict(**changes))


def test_layer_types_pattern_validation():
  with pytest.raises(ValueError, match="local_window"):
    decoder.DecoderConfig(layer_types=("sliding_attention", "full_attention"))
  with pytest.raises(ValueError, match="sliding_window windows every layer"):
    decoder.DecoderConfig(layer_types=("full_attention",), sliding_window=4)
  with pytest.raises(ValueError, match="layer_types"):
    decoder.DecoderConfig(layer_types=("global",))
  cfg = decoder.DecoderConfig(num_layers=5, layer_types=["sliding_attention", "full_attention"], local_window=8)
  assert list(cfg.local_layers) == [True, False, True, False, True]


def test_fused_attention_with_softcap_takes_the_materialised_path():
  """The fused kernels have no soft-capping step: 'fused' must give the capped numbers, not drop the cap."""
  from linguamix.models import layers
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(1, 6, 4, 8)) * 2, jnp.float32) for _ in range(3))
  bias = layers.mask_bias(layers.attention_mask(jnp.ones((1, 6)), jnp.ones((1, 6)), causal=True))
  capped = [layers.dot_product_attention(q, k, v, bias_BxNxTxS=bias, implementation=impl, logit_softcap=1.0)
            for impl in ("materialised", "fused")]
  np.testing.assert_allclose(capped[1], capped[0], atol=1e-6)
  uncapped = layers.dot_product_attention(q, k, v, bias_BxNxTxS=bias)
  assert np.abs(np.asarray(uncapped - capped[0])).max() > 1e-2
