"""Decoder families against transformers (PyTorch, CPU) on tiny random checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import torch
import transformers

import hf_helpers
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




@pytest.fixture(scope="module", params=sorted(HF_CONFIGS))
def family(request, tmp_path_factory):
  name = request.param
  torch.manual_seed(0)
  hf_model = hf_helpers.randomize(ARCHS[name](HF_CONFIGS[name]).eval())
  directory = tmp_path_factory.mktemp(name)
  hf_model.save_pretrained(directory)
  arch, cfg, params = decoder_io.load_hf(directory)
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2))
  return name, hf_model, directory, arch, cfg, params, model








def _ids(b=2, length=12, seed=0):
  return hf_helpers.random_ids(VOCAB, b, length, seed)


def test_logits_and_scores_match_transformers(family):
  _, hf_model, _, _, _, params, model = family
  ids = _ids()
  batch = hf_helpers.lm_batch(ids)
  ref = hf_helpers.hf_logits(hf_model, ids[:, :-1])
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
    logp = torch.log_softmax(torch.as_tensor(hf_helpers.hf_logits(hf_model, [ids[:-1]])[0], dtype=torch.float64), -1)
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
  np.testing.assert_allclose(hf_helpers.hf_logits(reloaded, ids), hf_helpers.hf_logits(hf_model, ids), atol=1e-5)


BEAMS = 3


@pytest.fixture(scope="module")
def llama_beams(tmp_path_factory):
  """A tiny Llama whose next-token distributions are flat enough for beams to diverge and
  to end at many lengths; our beam search (alpha 0, all K beams) on two prompts of different
  lengths in one batch; and transformers' beam search (length_penalty 0) on each alone."""
  hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      **_COMMON, num_key_value_heads=2, tie_word_embeddings=False)).eval()
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for p in hf_model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
  directory = tmp_path_factory.mktemp("llama_beams")
  hf_model.save_pretrained(directory)
  _, cfg, params = decoder_io.load_hf(directory)
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(VOCAB, eos_id=2), start_token="none",
                                   decode_method="beam", beam_size=BEAMS, alpha=0.0)
  rng = np.random.default_rng(5)
  contexts = [rng.integers(3, VOCAB, size=n).tolist() for n in (5, 2)]
  batch = _prefix_lm_batch(contexts, [[3]] * 2, length=6)
  ours = jax.jit(lambda p, b, eos: model.predict_batch_with_aux(p, b, eos_id=eos, return_all_beams=True))

  def theirs(context, eos_id):
    hf_model.generation_config.eos_token_id = eos_id
    ids = torch.as_tensor([context])
    budget = batch["decoder_input_tokens"].shape[1] - len(context)  # prompt + budget = our length + 1
    with torch.no_grad():
      out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget,
                              num_beams=BEAMS, num_return_sequences=BEAMS, do_sample=False,
                              length_penalty=0.0, early_stopping="never", pad_token_id=0,
                              output_scores=True, return_dict_in_generate=True)
    return out.sequences[:, ids.shape[1]:].numpy(), out.sequences_scores.numpy()

  def search(eos_id):
    tokens, aux = ours(params, batch, eos_id)
    return np.asarray(tokens), np.asarray(aux["scores"]), [theirs(c, eos_id if eos_id >= 0 else None)
                                                           for c in contexts]
  return hf_model, contexts, search, model, params, batch


def test_greedy_batch_of_prompt_lengths_equals_transformers_with_its_scores(llama_beams):
  hf_model, contexts, _, model, params, batch = llama_beams
  eos_id = 11
  tokens, aux = jax.jit(lambda p, b: model.predict_batch_with_aux(p, b, decode_method="greedy", eos_id=eos_id))(
      params, batch)
  hf_model.generation_config.eos_token_id = eos_id
  for row, context in enumerate(contexts):
    ids = torch.as_tensor([context])
    budget = tokens.shape[1] - len(context)
    with torch.no_grad():
      ref = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget,
                              do_sample=False, num_beams=1, pad_token_id=0)[0, ids.shape[1]:].tolist()
    hyp = _hypothesis(np.asarray(tokens[row]), eos_id, budget)
    assert hyp == _hypothesis(ref, eos_id, budget)
    logp = torch.log_softmax(torch.as_tensor(hf_helpers.hf_logits(hf_model, [context + list(hyp)[:-1]])[0],
                                             dtype=torch.float64), -1)
    np.testing.assert_allclose(aux["scores"][row], sum(float(logp[len(context) - 1 + i, t])
                                                       for i, t in enumerate(hyp)), rtol=1e-5, atol=1e-4)


def test_beam_search_without_eos_equals_transformers(llama_beams):
  """Without EOS every hypothesis runs to the length limit; both searches keep the best K
  non-finished of the 2K best continuations each step and return the K best at the end."""
  _, _, search, *_ = llama_beams
  tokens, scores, refs = search(-1)
  for row, (ref_tokens, ref_scores) in enumerate(refs):
    np.testing.assert_array_equal(tokens[row][:, :ref_tokens.shape[1]], ref_tokens)
    assert not tokens[row][:, ref_tokens.shape[1]:].any()
    np.testing.assert_allclose(scores[row], ref_scores, rtol=1e-5, atol=1e-4)


def _hypothesis(seq, eos_id, budget):
  seq = list(seq[:budget])  # transformers pads after EOS with EOS, ours with 0
  return tuple(seq[:seq.index(eos_id) + 1] if eos_id in seq else seq)


def test_beam_search_with_eos_finds_all_transformers_finds_and_scores_as_it_does(llama_beams):
  """Where the two differ, exactly: both keep the same live beams, but transformers lets a
  hypothesis finish at EOS only if it ranks among the K best of the 2K continuations, while
  ours (T5X's) keeps every EOS among the 2K. So ours sees a superset of transformers'
  finished hypotheses: its k-th score is >= transformers' k-th, what transformers returns
  above our worst is ours too, and what only we return ends in EOS. Our scores are
  transformers' own log-likelihood of each hypothesis."""
  hf_model, contexts, search, *_ = llama_beams
  eos_id = 11  # with this seed it ends hypotheses both inside and beyond the K best
  tokens, scores, refs = search(eos_id)
  # the rules differ here: an EOS beyond the K best finishes a better hypothesis for us
  assert all(np.any(scores[row] > ref_scores + 1.0) for row, (_, ref_scores) in enumerate(refs))
  for row, (ref_tokens, ref_scores) in enumerate(refs):
    budget = tokens.shape[-1] - len(contexts[row])  # what each searched may emit
    ours = [_hypothesis(t, eos_id, budget) for t in tokens[row]]
    hf = [_hypothesis(t, eos_id, budget) for t in ref_tokens]
    assert np.all(scores[row] >= ref_scores - 1e-4)
    assert {h for h, s in zip(hf, ref_scores) if s > scores[row][-1] + 1e-4} <= set(ours)
    assert all(h[-1] == eos_id for h in set(ours) - set(hf))
    for hyp, score in zip(ours, scores[row]):
      ids = contexts[row] + list(hyp)
      logp = torch.log_softmax(torch.as_tensor(hf_helpers.hf_logits(hf_model, [ids[:-1]])[0], dtype=torch.float64), -1)
      first = len(contexts[row]) - 1  # the position predicting hyp[0]
      np.testing.assert_allclose(score, sum(float(logp[first + i, t]) for i, t in enumerate(hyp)),
                                 rtol=1e-5, atol=1e-4)
