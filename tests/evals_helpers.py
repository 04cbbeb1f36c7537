"""Shared pieces of the evals tests: raw-format writers and a lookup scorer."""

from __future__ import annotations

import numpy as np
import seqio

from linguamix.models import base


def write_tsv(path, header, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join("\t".join(map(str, r)) for r in [header] + rows) + "\n",
                  encoding="utf-8")


class LookupScorer(base.BaseModel):
  """A deterministic 'model': score = table[(context, continuation)] read off the batch.

  Keys are the decoded texts, stripped (SentencePiece drops a leading space on decode).

  It decodes the batch the way a real model sees it (encoder inputs and decoder targets,
  or the prefix-LM concatenation split by the loss weights), so the pipeline under test
  (prompts, feature conversion, id regrouping, metrics) is the real one.
  """

  def __init__(self, vocab: seqio.Vocabulary, table, converter=seqio.EncDecFeatureConverter):
    self._vocab, self.table, self.feature_converter_cls = vocab, table, converter
    self.requests = []

  @property
  def vocabulary(self):
    return self._vocab

  def _decode(self, ids):
    return self._vocab.decode([int(i) for i in ids if i != 0])

  def score_batch(self, params, batch):
    weights = batch["decoder_loss_weights"]
    scores = []
    for b, tokens in enumerate(batch["decoder_target_tokens"]):
      if not weights[b].any():
        scores.append(0.0)  # batch padding
        continue
      if "encoder_input_tokens" in batch:
        context_ids = batch["encoder_input_tokens"][b]
      else:
        context_ids = tokens[(weights[b] == 0) & (tokens != 0)]
      key = (self._decode(context_ids).strip(), self._decode(tokens[weights[b] > 0]).strip())
      self.requests.append(key)
      scores.append(self.table[key])
    return np.array(scores, np.float32)

  def init_variables(self, rng, input_shapes):
    return {}

  def loss_fn(self, params, batch, dropout_rng):
    raise NotImplementedError

  def predict_batch_with_aux(self, params, batch, rng=None, **kw):
    raise NotImplementedError


class LookupGenerator(LookupScorer):
  """Generates table[decoded encoder input] (EncDec batches), EOS-terminated."""

  def predict_batch_with_aux(self, params, batch, rng=None, **kw):
    length = batch["decoder_target_tokens"].shape[1]
    out = np.zeros((len(batch["encoder_input_tokens"]), length), np.int32)
    for b, tokens in enumerate(batch["encoder_input_tokens"]):
      if tokens.any():
        ids = self._vocab.encode(self.table[self._decode(tokens)]) + [self._vocab.eos_id]
        out[b, :min(len(ids), length)] = ids[:length]
    return out, {"scores": np.zeros(len(out), np.float32)}
