"""HfTokenizerVocabulary round-trips text exactly as transformers' fast tokenizer does."""

import json

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from linguamix.models.hf_vocabulary import HfTokenizerVocabulary

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
CORPUS = ["The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs springt über den Hund.",
          "Le renard brun rapide saute par-dessus le chien paresseux.", "Mbweha mwepesi wa kahawia anaruka.",
          "敏捷的棕色狐狸跳过了懒狗。", "Быстрая коричневая лиса прыгает через ленивую собаку."] * 5
TEXTS = ["Hello  world!", "  leading spaces and trailing  ", "über naïve café — “quotes”", "狐狸 🦊 emoji",
         "line\nbreak\ttab", "Swahili: Habari ya asubuhi?", ""]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
      vocab_size=300, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
  directory = tmp_path_factory.mktemp("tok")
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": "<pad>", "unk_token": "<unk>"}))
  return directory


@pytest.fixture(scope="module")
def hf(tokenizer_dir):
  return transformers.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"),
                                              bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                              unk_token="<unk>")


def test_round_trip_matches_transformers(tokenizer_dir, hf):
  vocab = HfTokenizerVocabulary(str(tokenizer_dir))
  assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
  assert vocab.vocab_size == len(hf)
  for text in TEXTS:
    ids = vocab.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False)
    assert vocab.decode(ids) == hf.decode(ids, skip_special_tokens=True) == text
    # SeqIO decoding stops at EOS and ignores the padding after it
    assert vocab.decode(ids + [vocab.eos_id, 0, 0]) == text
  with_bos = HfTokenizerVocabulary(str(tokenizer_dir), add_special_tokens=True)
  assert with_bos.encode("Hello") == hf.encode("Hello") == [1] + vocab.encode("Hello")


def test_tf_ops_in_a_seqio_pipeline(tokenizer_dir):
  vocab = HfTokenizerVocabulary(str(tokenizer_dir))
  ds = tf.data.Dataset.from_tensor_slices({"targets": TEXTS[:-1]})
  ds = seqio.preprocessors.tokenize(ds, {"targets": seqio.Feature(vocab, add_eos=True)})
  ds = seqio.preprocessors.append_eos(ds, {"targets": seqio.Feature(vocab, add_eos=True)})
  for text, ex in zip(TEXTS, ds.as_numpy_iterator()):
    assert ex["targets"].tolist() == vocab.encode(text) + [vocab.eos_id]
  rows = [vocab.encode("Hello  world!") + [vocab.eos_id, 7], vocab.encode("café")]
  batch = np.zeros((2, max(map(len, rows))), np.int32)
  for i, row in enumerate(rows):
    batch[i, :len(row)] = row
  batch = tf.constant(batch)
  decoded = vocab.decode_tf(batch).numpy()
  assert decoded.shape == (2,)
  assert [d.decode() for d in decoded] == [vocab.decode(row) for row in batch.numpy().tolist()]
  ragged = vocab.encode_tf(tf.constant(["Hello", "café"]))
  assert ragged.to_list() == [vocab.encode("Hello"), vocab.encode("café")]


def test_unknown_special_token_is_named(tokenizer_dir):
  with pytest.raises(ValueError, match=r"eos_token '<\|end\|>' is not in"):
    HfTokenizerVocabulary(str(tokenizer_dir / "tokenizer.json"), eos_token="<|end|>")


def test_an_id_zero_eos_the_files_do_not_name_is_refused(tokenizer_dir):
  """Checkpoints are converted by the tokenizer's files: an argument making id 0 (here
  `<pad>`) the EOS would give the model and the vocabulary different ids."""
  assert HfTokenizerVocabulary(str(tokenizer_dir / "tokenizer.json")).moved_zero_id is None
  with pytest.raises(ValueError, match=r"eos_token '<pad>' is id 0, SeqIO's padding"):
    HfTokenizerVocabulary(str(tokenizer_dir / "tokenizer.json"), eos_token="<pad>")
