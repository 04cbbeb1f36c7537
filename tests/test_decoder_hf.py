"""Decoder families against transformers (PyTorch, CPU) on tiny random checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import torch
import transformers

from linguamix.models import decoder
from linguamix.models.hf import decoder_io

VOCAB = 96
_COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64)
HF_CONFIGS = {
    "llama_gqa": transformers.LlamaConfig(
        **_COMMON, num_key_value_heads=2, tie_word_embeddings=False,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16}),
    "mistral_window": transformers.MistralConfig(**_COMMON, num_key_value_heads=2, sliding_window=4),
    "qwen2_bias": transformers.Qwen2Config(**_COMMON, num_key_value_heads=1, tie_word_embeddings=True),
    "gemma_tied": transformers.GemmaConfig(**_COMMON, num_key_value_heads=1, head_dim=16),
    "phi3_fused": transformers.Phi3Config(**_COMMON, num_key_value_heads=2, sliding_window=5,
                                          pad_token_id=0),
    "bloom_alibi": transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4),
    "gpt2": transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    # flags that once imported silently wrong or failed
    "gpt2_unscaled": transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4,
                                             n_positions=64, scale_attn_weights=False),
    "gemma_attention_bias": transformers.GemmaConfig(**_COMMON, num_key_value_heads=2, head_dim=8,
                                                     attention_bias=True),
    # Pythia's layout: parallel residual, a quarter of each head rotating, biases everywhere
    "neox_parallel": transformers.GPTNeoXConfig(**_COMMON, rotary_pct=0.25, use_parallel_residual=True),
    "neox_sequential": transformers.GPTNeoXConfig(
        **_COMMON, use_parallel_residual=False, attention_bias=False, hidden_act="gelu_new",
        rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}),
    "qwen3_qk_norm": transformers.Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=16),
    "qwen3_window_bias": transformers.Qwen3Config(
        **_COMMON, num_key_value_heads=1, head_dim=8, attention_bias=True, tie_word_embeddings=True,
        use_sliding_window=True, sliding_window=4, max_window_layers=0),
}
ARCHS = {"llama_gqa": transformers.LlamaForCausalLM, "mistral_window": transformers.MistralForCausalLM,
         "qwen2_bias": transformers.Qwen2ForCausalLM, "gemma_tied": transformers.GemmaForCausalLM,
         "phi3_fused": transformers.Phi3ForCausalLM, "bloom_alibi": transformers.BloomForCausalLM,
         "gpt2": transformers.GPT2LMHeadModel, "gpt2_unscaled": transformers.GPT2LMHeadModel,
         "gemma_attention_bias": transformers.GemmaForCausalLM, "neox_parallel": transformers.GPTNeoXForCausalLM,
         "neox_sequential": transformers.GPTNeoXForCausalLM, "qwen3_qk_norm": transformers.Qwen3ForCausalLM,
         "qwen3_window_bias": transformers.Qwen3ForCausalLM}


def _randomize(model):
  # HF inits biases and norms to constants; random values test their mapping too
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
  return model


@pytest.fixture(scope="module", params=sorted(HF_CONFIGS))
def family(request, tmp_path_factory):
  name = request.param
  torch.manual_seed(0)
  hf_model = _randomize(ARCHS[name](HF_CONFIGS[name]).eval())
  directory = tmp_path_factory.mktemp(name)
  hf_model.save_pretrained(directory)
  arch, cfg, params = decoder_io.load_hf(directory)
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2))
  return name, hf_model, directory, arch, cfg, params, model


def _ids(b=2, length=12, seed=0):
  return np.random.default_rng(seed).integers(3, VOCAB, size=(b, length))


def _hf_logits(hf_model, ids):
  with torch.no_grad():
    return hf_model(torch.as_tensor(ids)).logits.numpy()


def _batch(ids):
  return {"decoder_input_tokens": jnp.asarray(ids[:, :-1]), "decoder_target_tokens": jnp.asarray(ids[:, 1:]),
          "decoder_loss_weights": jnp.asarray((np.arange(ids.shape[1] - 1) >= 3)[None].repeat(len(ids), 0),
                                              jnp.float32)}


def test_logits_and_scores_match_transformers(family):
  _, hf_model, _, _, _, params, model = family
  ids = _ids()
  batch = _batch(ids)
  ref = _hf_logits(hf_model, ids[:, :-1])
  np.testing.assert_allclose(model.logits(params, batch), ref, atol=1e-4, rtol=1e-4)
  logp = torch.log_softmax(torch.as_tensor(ref, dtype=torch.float64), -1).numpy()
  tok_logp = np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]
  ref_score = (tok_logp * np.asarray(batch["decoder_loss_weights"])).sum(-1)
  np.testing.assert_allclose(model.score_batch(params, batch), ref_score, rtol=1e-5, atol=1e-4)


def _prefix_lm_batch(contexts, continuations, length=12):
  """Real SeqIO prefix-LM batches: DecoderFeatureConverter puts id 0 before each context."""
  import tensorflow as tf
  ds = tf.data.Dataset.from_generator(
      lambda: ({"inputs": c, "targets": t} for c, t in zip(contexts, continuations)),
      output_signature={"inputs": tf.TensorSpec([None], tf.int32),
                        "targets": tf.TensorSpec([None], tf.int32)})
  converted = seqio.DecoderFeatureConverter(pack=False)(ds, {"inputs": length, "targets": length})
  rows = list(converted.batch(len(contexts)).as_numpy_iterator())[0]
  return {k: jnp.asarray(v) for k, v in rows.items()}


@pytest.mark.parametrize("start_token", ["none", "bos"])
def test_start_token_scores_match_transformers_on_lm_eval_sequences(family, start_token):
  """`none`: the model sees context + continuation and nothing before them, as
  lm-evaluation-harness feeds causal models; `bos`: the prefix token (here EOS, the
  vocabulary has no BOS) first. Reference: transformers on exactly those ids."""
  _, hf_model, _, _, cfg, params, _ = family
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2),
                                   start_token=start_token)
  rng = np.random.default_rng(3)
  contexts = [rng.integers(3, VOCAB, size=n).tolist() for n in (5, 2)]
  continuations = [rng.integers(3, VOCAB, size=n).tolist() for n in (3, 4)]
  scores = np.asarray(model.score_batch(params, _prefix_lm_batch(contexts, continuations)))
  for score, ctx, cont in zip(scores, contexts, continuations):
    ids = ([2] if start_token == "bos" else []) + ctx + cont
    logp = torch.log_softmax(torch.as_tensor(_hf_logits(hf_model, [ids[:-1]])[0], dtype=torch.float64), -1)
    first = len(ids) - len(cont) - 1  # the position predicting cont[0]
    ref = sum(float(logp[first + i, tok]) for i, tok in enumerate(cont))
    np.testing.assert_allclose(score, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("start_token", ["none", "bos"])
def test_start_token_greedy_decoding_matches_transformers(family, start_token):
  _, hf_model, _, _, cfg, params, _ = family
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2),
                                   start_token=start_token)
  context = np.random.default_rng(4).integers(3, VOCAB, size=5).tolist()
  batch = _prefix_lm_batch([context], [[3] * 4])
  tokens = np.asarray(model.predict_batch(params, batch, eos_id=-1))[0, :4]
  ids = torch.as_tensor([([2] if start_token == "bos" else []) + context])
  with torch.no_grad():
    ref = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                            do_sample=False, pad_token_id=0)[0, ids.shape[1]:].numpy()
  np.testing.assert_array_equal(tokens, ref)


def test_export_reloads_in_transformers(family, tmp_path):
  name, hf_model, directory, arch, cfg, params, _ = family
  original = json.loads((directory / "config.json").read_text())
  decoder_io.save_hf(tmp_path, arch, cfg, params,
                     extra_config={k: v for k, v in original.items() if k.endswith("token_id")})
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  assert type(reloaded) is ARCHS[name]
  ids = _ids(seed=1)
  np.testing.assert_allclose(_hf_logits(reloaded, ids), _hf_logits(hf_model, ids), atol=1e-5)
