"""A tokenizer whose id 0 is a real token (GPT-2, Llama 3, Qwen2/3: `!`; Pythia: its EOS).

SeqIO reads id 0 as padding, so `HfTokenizerVocabulary` moves such a token to a fresh id
and the checkpoint converter moves the embedding and output rows to match. Checked here
against `transformers` (its tokenizer's ids and text, its models' log-probabilities over
the whole vocabulary), against the checkpoint's own tensors after an import/export round
trip, and in SeqIO's packed training rows (the moved token keeps its loss weight and
segment). Tokenizers and models are built here, tiny and random.
"""

import json

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf
import torch
import transformers
from safetensors.numpy import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from linguamix.models import convert, decoder, feature_converters
from linguamix.models.hf import decoder_io
from linguamix.models.hf_vocabulary import HfTokenizerVocabulary

import hf_helpers

CORPUS = ["Habari! Niliita jina lake!", "Hello world! What a day.", "Привет, мир! Как дела?",
          "नमस्ते दुनिया! आप कैसे हैं?", "你好，世界！今天好吗?", "Wow!! Really?! Yes!"] * 4
TEXTS = ["Niliita jina lake!", "! at the start", "Как дела?! ", "no bang here", "!!!", " 你好！"]
EOT = "<|endoftext|>"
# tokenizer_config.json of each style (Pythia's EOS is also its BOS and UNK)
STYLES = {
    "gpt2": {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT},
    "qwen2": {"bos_token": None, "eos_token": EOT, "pad_token": EOT},
    "pythia": {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT},
}


def byte_bpe(directory, style, vocab_size=400):
  """Byte-level BPE, no template; Pythia's `<|endoftext|>` is id 0, the others' `!` is."""
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=[EOT] if style == "pythia" else [],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  if style != "pythia":
    tok.add_special_tokens([EOT])
  directory.mkdir(parents=True, exist_ok=True)
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "PreTrainedTokenizerFast", **STYLES[style]}))
  return tok


@pytest.mark.parametrize("style", sorted(STYLES))
def test_vocabulary_moves_a_real_id_zero(style, tmp_path):
  tok = byte_bpe(tmp_path, style)
  assert tok.id_to_token(0) == ("<|endoftext|>" if style == "pythia" else "!")
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  vocab = HfTokenizerVocabulary(str(tmp_path))
  n = len(hf)
  assert vocab.moved_zero_id == n and vocab.vocab_size == n + 1
  assert vocab.eos_id == (n if style == "pythia" else hf.eos_token_id)
  for text in TEXTS:
    want = hf.encode(text, add_special_tokens=False)
    ids = vocab.encode(text)
    assert 0 not in ids and vocab.hf_ids(ids) == want
    assert ids == [n if i == 0 else i for i in want]
    assert vocab.decode(ids) == hf.decode(want, skip_special_tokens=True) == text
    assert vocab.decode(ids + [vocab.eos_id, 0, 0, 5]) == text  # stops at EOS
    assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids
  padded = tf.constant([vocab.encode("Wow!!") + [0, 0]])
  assert vocab.decode_tf(padded).numpy().tolist() == [b"Wow!!"]


def test_an_id_zero_that_is_padding_or_unknown_stays(tmp_path):
  """`<unk>` / `<pad>` at 0 (Llama 2, BLOOM, Gemma, T5): no move, ids as the tokenizer's."""
  for name, config in {"unk": {"unk_token": "<unk>", "eos_token": "</s>"},
                       "pad": {"pad_token": "<unk>", "eos_token": "</s>"}}.items():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    (tmp_path / name).mkdir()
    tok.save(str(tmp_path / name / "tokenizer.json"))
    (tmp_path / name / "tokenizer_config.json").write_text(json.dumps(config))
    vocab = HfTokenizerVocabulary(str(tmp_path / name))
    assert vocab.moved_zero_id is None and vocab.vocab_size == tok.get_vocab_size()
    assert vocab.encode("Hi!") == tok.encode("Hi!").ids


# (style, transformers class, rows past the tokenizer's ids, tied): Qwen2 and Pythia
# checkpoints have spare rows (one takes id 0's place); GPT-2's (and Llama 3's) has none,
# so import appends one and masks row 0.
CASES = {
    "qwen2_spare_rows": ("qwen2", transformers.Qwen2ForCausalLM, 7, True),
    "pythia_eos_zero": ("pythia", transformers.GPTNeoXForCausalLM, 5, False),
    "gpt2_full": ("gpt2", transformers.GPT2LMHeadModel, 0, True),
}


def _hf_model(cls, rows, tied, eos):
  small = dict(vocab_size=rows, tie_word_embeddings=tied, bos_token_id=eos, eos_token_id=eos)
  if cls is transformers.GPT2LMHeadModel:
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **small)
  elif cls is transformers.GPTNeoXForCausalLM:
    config = transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=64, **small)
  else:
    config = transformers.Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64,
                                      max_position_embeddings=64, **small)
  return hf_helpers.randomize(cls(config).eval())


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_checkpoint_rows_follow_the_vocabulary(case, tmp_path):
  style, cls, spare, tied = CASES[case]
  hf_dir = tmp_path / "hf"
  byte_bpe(hf_dir, style)
  vocab = HfTokenizerVocabulary(str(hf_dir))
  n = vocab.moved_zero_id
  hf_model = _hf_model(cls, n + spare, tied, vocab.hf_ids([vocab.eos_id])[0])
  hf_model.save_pretrained(hf_dir)
  _, cfg, params = decoder_io.load_hf(hf_dir)
  assert cfg.vocab_size == max(n + spare, n + 1) and cfg.mask_row_zero == (spare == 0)
  model = decoder.DecoderOnlyModel(cfg, vocab)

  eos = [vocab.eos_id]
  rows = [vocab.encode("Habari! Niliita jina lake!") + eos, vocab.encode("! Как дела! Yes!") + eos]
  length = max(map(len, rows))
  ids = np.stack([r + [vocab.eos_id] * (length - len(r)) for r in rows])
  hf_ids = np.vectorize(lambda i: 0 if i == n else i)(ids)
  assert (ids == n).sum() >= 2  # the `!`s (Pythia: the EOSs) are in there
  ours = np.asarray(jax.nn.log_softmax(model.logits({"params": params}, hf_helpers.lm_batch(ids)), -1))
  theirs = torch.log_softmax(torch.as_tensor(hf_helpers.hf_logits(hf_model, hf_ids[:, :-1])), -1).numpy()
  # the same distribution over the checkpoint's rows, each at its token's id
  order = np.arange(n + spare)
  order[0] = n
  if spare:
    order[n] = 0
  np.testing.assert_allclose(ours[..., order], theirs, atol=1e-4)
  if not spare:
    assert np.all(ours[..., 0] < -1e8)  # row 0 (padding) is out of the softmax
  # score_batch sums the targets' log-probs, the moved token's included
  batch = hf_helpers.lm_batch(ids)
  want = np.take_along_axis(theirs, hf_ids[:, 1:, None], -1)[..., 0]
  np.testing.assert_allclose(model.score_batch(params, batch),
                             (want * np.asarray(batch["decoder_loss_weights"])).sum(-1), atol=1e-3)
  # training through the masked row stays finite
  grads = jax.grad(lambda p: model.loss_fn(p, {**batch, "decoder_target_tokens": batch[
      "decoder_target_tokens"].at[:, -2:].set(0)}, None)[0])(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))

  # import-hf / export-hf give back the checkpoint's tensors and config
  convert.import_hf(str(hf_dir), str(tmp_path / "orbax"))
  recorded = json.loads((tmp_path / "orbax" / convert.HF_CONFIG_FILE).read_text())
  assert recorded[decoder_io.MOVED_KEY] == n
  convert.export_hf(str(tmp_path / "orbax"), str(tmp_path / "out"))
  before, after = load_file(str(hf_dir / "model.safetensors")), load_file(str(tmp_path / "out" / "model.safetensors"))
  assert sorted(before) == sorted(after)
  for name in before:
    np.testing.assert_array_equal(before[name], after[name], err_msg=name)
  exported = json.loads((tmp_path / "out" / "config.json").read_text())
  assert exported["vocab_size"] == n + spare and decoder_io.MOVED_KEY not in exported
  assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (hf_dir / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("style", ["gpt2", "pythia"])
def test_packed_training_rows_weight_the_id_zero_token(style, tmp_path):
  """Targets through SeqIO's tokenizer and linguamix's packing converter: every token the
  tokenizer produces, `!` and Pythia's EOS included, is a weighted, segmented position."""
  byte_bpe(tmp_path, style)
  vocab = HfTokenizerVocabulary(str(tmp_path))
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  texts = ["Habari!", "Wow!! Really?!", "Hello world! What a day.", "!"]
  features = {"targets": seqio.Feature(vocab, add_eos=True)}
  ds = tf.data.Dataset.from_tensor_slices({"targets": texts})
  ds = seqio.preprocessors.append_eos(seqio.preprocessors.tokenize(ds, features), features)
  converter = feature_converters.DecoderFeatureConverter(pack=True)
  rows = list(converter(ds, {"targets": 24}).as_numpy_iterator())
  targets = np.concatenate([r["decoder_target_tokens"] for r in rows])
  weights = np.concatenate([r["decoder_loss_weights"] for r in rows])
  segments = np.concatenate([r["decoder_segment_ids"] for r in rows])
  want = [i for t in texts for i in hf.encode(t, add_special_tokens=False) + [hf.eos_token_id]]
  moved = targets == vocab.moved_zero_id
  assert moved.sum() == want.count(0) > 0
  assert np.all(weights[moved] == 1) and np.all(segments[moved] > 0)
  assert weights.sum() == len(want)
  assert vocab.hf_ids(targets[weights > 0]) == want
