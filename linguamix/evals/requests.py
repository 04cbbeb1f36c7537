"""The token ids lm-evaluation-harness 0.4.13 scores, for any vocabulary and model kind.

lm-eval's `HFLM.loglikelihood` (read in its `api/model.py` and `models/huggingface.py`):
* a non-empty context: trailing whitespace moves to the continuation; the context is
  encoded with the tokenizer's default special tokens (its template: Llama-style BOS,
  T5-style EOS, or nothing) unless the text already starts with the prefix token's text;
  causal models take the continuation's ids from the encoded whole (context +
  continuation) after the context's ids, seq2seq models encode it alone, no specials;
* an empty context becomes the prefix token (BOS if the tokenizer has one, else EOS) —
  unless the continuation's own first token is that token: then that token is the context;
* `add_bos_token` (default None: the tokenizer's default) overrides the template: True
  encodes with special tokens and BOS, False without any.

A decoder-only model puts its start token (`DecoderOnlyModel.start_token`) before each
sequence: `bos` is the tokenizer's automatic BOS, so a request that starts with BOS
hands that token to the model's start slot. The eval derives the start token from the
tokenizer (`start_token`), and model gins set the same one for training.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from absl import logging
import seqio

from linguamix.models import hf_vocabulary

LM_EVAL_VERSION = "0.4.13"  # the lm-evaluation-harness whose requests these are
BACKENDS = {seqio.DecoderFeatureConverter: "causal", seqio.PrefixLMFeatureConverter: "causal",
            seqio.LMFeatureConverter: "causal", seqio.EncDecFeatureConverter: "seq2seq"}


def backend_of(converter_cls: type) -> str:
  """lm-eval's backend for a feature converter class or any subclass of one in BACKENDS
  (linguamix's converters subclass SeqIO's); `seq2seq` for others."""
  return next((BACKENDS[c] for c in converter_cls.__mro__ if c in BACKENDS), "seq2seq")


@dataclasses.dataclass(frozen=True)
class Format:
  """How requests are built: lm-eval's backend (`causal` | `seq2seq`), its `add_bos_token`
  override, and whether the model's start slot supplies BOS (None: derive from the
  tokenizer, as a model whose gin agrees does)."""
  backend: str = "causal"
  add_bos_token: bool | None = None
  start_is_bos: bool | None = None

  def record(self) -> dict:
    return {"lm_eval_version": LM_EVAL_VERSION, "backend": self.backend,
            "add_bos_token": self.add_bos_token}


def resolved(vocab: seqio.Vocabulary) -> seqio.Vocabulary:
  return getattr(vocab, "resolved", vocab)  # the tasks' deferred vocabulary


@functools.singledispatch
def special_ids(vocab: seqio.Vocabulary, backend: str,
                add_bos_token: bool | None) -> tuple[list[int], list[int]]:
  """(leading, trailing) ids the vocabulary's tokenizer adds to a text by default.

  A plain seqio vocabulary adds none."""
  del backend
  return ([bos_id(vocab)] if add_bos_token and bos_id(vocab) is not None else []), []


@special_ids.register
def _(vocab: hf_vocabulary.HfTokenizerVocabulary, backend, add_bos_token):
  del backend
  return vocab.default_special_ids(add_bos_token)


@special_ids.register
def _(vocab: seqio.SentencePieceVocabulary, backend, add_bos_token):
  # mT5's Hugging Face tokenizer (and T5X's inputs) end with EOS; a decoder-only model
  # over a SentencePiece vocabulary (T5X's) gets plain text.
  lead = [bos_id(vocab)] if add_bos_token and bos_id(vocab) is not None else []
  if add_bos_token is False:
    return [], []
  return lead, ([vocab.eos_id] if backend == "seq2seq" else [])


def bos_id(vocab: seqio.Vocabulary) -> int | None:
  try:
    bos = vocab.bos_id
  except (AttributeError, NotImplementedError):
    return None
  return int(bos) if bos is not None and bos >= 0 else None


def prefix_token_id(vocab: seqio.Vocabulary) -> int:
  """lm-eval's `prefix_token_id`: BOS if the vocabulary has one, else EOS."""
  vocab = resolved(vocab)
  bos = bos_id(vocab)
  if bos is not None:
    return bos
  if vocab.eos_id is None or vocab.eos_id < 0:
    raise ValueError(f"vocabulary {vocab} has neither BOS nor EOS for an empty context")
  return int(vocab.eos_id)


def start_token(vocab: seqio.Vocabulary, fmt: Format = Format()) -> str:
  """`bos` when the tokenizer starts a text with BOS by default, else `none` (context first)."""
  vocab = resolved(vocab)
  lead, _ = special_ids(vocab, fmt.backend, fmt.add_bos_token)
  return "bos" if lead and lead == [bos_id(vocab)] else "none"


def for_model(model, add_bos_token: bool | None = None):
  """(model to score with, Format): a decoder-only model's start token is the one its
  tokenizer implies (logged when it differs from the model's)."""
  fmt = Format(backend_of(model.feature_converter_cls), add_bos_token)
  if model.start_token is None:
    return model, dataclasses.replace(fmt, start_is_bos=False)
  want = start_token(model.vocabulary, fmt)
  if model.start_token != want:
    logging.info("scoring with start_token=%r (the tokenizer's default), not the model's %r",
                 want, model.start_token)
    model = model.with_start_token(want)
  return model, dataclasses.replace(fmt, start_is_bos=want == "bos")


def _prefix_text(vocab: seqio.Vocabulary, token_id: int) -> str | None:
  # lm-eval: `tokenizer.decode(prefix_token_id)`, special tokens kept
  if isinstance(vocab, hf_vocabulary.HfTokenizerVocabulary):
    return vocab.tokenizer.decode(vocab.hf_ids([token_id]), skip_special_tokens=False)
  return None


def pair_encoder(vocab: seqio.Vocabulary, fmt: Format = Format()
                 ) -> Callable[[str, str], tuple[list[int], list[int]]]:
  """`encode(context, continuation) -> (context_ids, continuation_ids)` as lm-eval builds
  them for `fmt`, minus a leading BOS when the model's start slot supplies it."""
  vocab = resolved(vocab)
  lead, trail = special_ids(vocab, fmt.backend, fmt.add_bos_token)
  prefix = prefix_token_id(vocab)
  prefix_text = _prefix_text(vocab, prefix)
  start_is_bos = (start_token(vocab, fmt) == "bos" if fmt.start_is_bos is None
                  else fmt.start_is_bos)
  bos = bos_id(vocab)
  encode = vocab.encode

  @functools.lru_cache(maxsize=8)  # the choices of an example share their context
  def template(text: str) -> list[int]:
    ids = list(encode(text))
    if prefix_text and text.startswith(prefix_text):
      return ids  # lm-eval: the text already starts with the prefix token
    return lead + ids + trail

  def pair(context: str, continuation: str) -> tuple[list[int], list[int]]:
    if context == "":
      cont = list(encode(continuation))
      if cont[:1] == [prefix]:
        ctx, cont = cont[:1], cont[1:]
      else:
        ctx = [prefix]
    else:
      spaces = len(context) - len(context.rstrip())
      if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
      ctx = list(template(context))
      if fmt.backend == "causal":
        cont = template(context + continuation)[len(ctx):]
      else:
        cont = list(encode(continuation))
    if start_is_bos and bos is not None and ctx[:1] == [bos]:
      ctx = ctx[1:]
    return ctx, cont
  return pair
