"""The tasks' vocabulary, chosen by the model gin rather than baked into task names.

Every task's output features hold one `DeferredVocabulary`; it resolves, on each use
and after gin parsing, to what `task_vocabulary.vocabulary` is bound to. Model gins:

    from linguamix import t5x_tasks
    VOCABULARY = @t5x_tasks.mt5_vocabulary()
    t5x_tasks.task_vocabulary.vocabulary = %VOCABULARY

Unbound, it is the small SentencePiece model trained on the bundled sample set.
"""

from __future__ import annotations

import os

import gin
import seqio

SAMPLE_SPM = os.path.join(os.path.dirname(__file__), "sample", "spm.model")
# mT5's (docs/models.md): SentencePiece model, 250,112 ids, no extra ids on top.
MT5_SPM = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"


@gin.configurable(module="linguamix.t5x_tasks")
def sample_vocabulary() -> seqio.SentencePieceVocabulary:
  """The bundled SentencePiece model (1,024 pieces, byte fallback) of the sample set."""
  return seqio.SentencePieceVocabulary(SAMPLE_SPM, extra_ids=0)


@gin.configurable(module="linguamix.t5x_tasks")
def mt5_vocabulary(path: str = MT5_SPM) -> seqio.SentencePieceVocabulary:
  """mT5's vocabulary (`mc4.250000.100extra`) from a local copy or gs://."""
  return seqio.SentencePieceVocabulary(path, extra_ids=0)


@gin.configurable(module="linguamix.t5x_tasks")
def task_vocabulary(vocabulary: seqio.Vocabulary | None = None) -> seqio.Vocabulary:
  return vocabulary if vocabulary is not None else sample_vocabulary()


# Texts of several scripts: two vocabularies that tokenize them alike are taken as one.
_PROBE = "Hello, world! Grüße aus Köln. Привет, мир! 你好，世界！ नमस्ते दुनिया"


def check_same_tokenization(what: str, task_vocab: seqio.Vocabulary,
                            vocabulary: seqio.Vocabulary | None) -> None:
  """ValueError naming `what` (the tasks) when their vocabulary tokenizes otherwise than the
  model's: training, scoring or decoding would use token ids of another tokenizer, silently."""
  if vocabulary is None:
    return
  if (task_vocab.vocab_size, list(task_vocab.encode(_PROBE))) != (
      vocabulary.vocab_size, list(vocabulary.encode(_PROBE))):
    raise ValueError(
        f"{what} tokenizes with a vocabulary of {task_vocab.vocab_size} ids that is not the "
        f"model's ({vocabulary.vocab_size} ids): bind the tasks' to the model's in the model "
        "gin (`t5x_tasks.task_vocabulary.vocabulary = %VOCABULARY`)")


_RESOLVED: dict = {}


def _key(vocab: seqio.Vocabulary):
  if isinstance(vocab, seqio.SentencePieceVocabulary):
    return ("spm", vocab.sentencepiece_model_file, vocab.extra_ids)
  return ("obj", id(vocab))


class DeferredVocabulary(seqio.Vocabulary):
  """A seqio.Vocabulary that delegates to `task_vocabulary()` at use time."""

  def __init__(self):
    super().__init__(extra_ids=0)

  @property
  def resolved(self) -> seqio.Vocabulary:
    vocab = task_vocabulary()
    # gin may build a fresh vocabulary object per call; keep one per model file so the
    # SentencePiece model loads once.
    return _RESOLVED.setdefault(_key(vocab), vocab)

  eos_id = property(lambda self: self.resolved.eos_id)
  pad_id = property(lambda self: self.resolved.pad_id)
  unk_id = property(lambda self: self.resolved.unk_id)
  vocab_size = property(lambda self: self.resolved.vocab_size)
  _base_vocab_size = property(lambda self: self.resolved.vocab_size)

  def encode(self, s):
    return self.resolved.encode(s)

  def decode(self, ids):
    return self.resolved.decode(ids)

  def encode_tf(self, s):
    return self.resolved.encode_tf(s)

  def decode_tf(self, ids):
    return self.resolved.decode_tf(ids)

  _encode, _decode = encode, decode
  _encode_tf, _decode_tf = encode_tf, decode_tf

  def __getattr__(self, name):  # e.g. `tokenizer`, `sp_model` of SentencePiece
    if name.startswith("__"):
      raise AttributeError(name)
    return getattr(self.resolved, name)

  def __eq__(self, other):
    return isinstance(other, DeferredVocabulary) or self.resolved == other

  def __hash__(self):
    return hash("linguamix.DeferredVocabulary")

  def __repr__(self):
    return f"DeferredVocabulary(-> {self.resolved!r})"


VOCABULARY = DeferredVocabulary()
