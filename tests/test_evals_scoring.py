"""A tiny real model's benchmark scores equal an independent computation from its logits.

For every prompt construction (XNLI and PAWS-X: empty context, whole-sentence choices;
XCOPA: context + continuation), the expected (context, continuation) strings are
written out here by hand from the spec tables, tokenized with SentencePiece directly
(lm-eval's HFLM rules; empty context -> BOS, else EOS; no EOS scored; causal: the whole
text split at the context, nothing before it (SentencePiece adds no BOS); seq2seq: the
context with mT5's tokenizer template (EOS last), the continuation alone) and scored
from the model's full logits, for a decoder-only model (prefix LM) and an
encoder-decoder model.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

import linguamix.evals  # noqa: F401
from linguamix.evals import runner
from linguamix.models import decoder
from linguamix.t5x_tasks import vocab as task_vocab
from evals_helpers import LookupScorer, write_tsv
from test_evals_benchmarks import XNLI_HEADER, _xnli_row
import test_evals_more

EXPECTED = {  # task -> per example: (gold, context, [continuation per choice])
    "xnli.de": [(0, "", [" Es regnet., richtig? Ja, Es ist nass.",
                         " Es regnet., richtig? Auch, Es ist nass.",
                         " Es regnet., richtig? Nein, Es ist nass."])],
    "paws_x.en": [(1, "", ["He left, then came back, right? No, he came back.",
                           "He left, then came back, right? Yes, he came back."])],
    "xcopa.it": [(1, "L'uomo aprì il rubinetto quindi",
                  [" il gabinetto si riempì d'acqua.", " l'acqua scorse dal beccuccio."])],
}
for _task, (_gold, _pairs) in test_evals_more.EXPECTED.items():  # one context per choice
  EXPECTED[_task] = [(_gold, _pairs[0][0], [cont for _, cont in _pairs])]
EXPECTED["xwinograd.ja"] = [(1, [ctx for ctx, _ in test_evals_more.EXPECTED["xwinograd.ja"][1]],
                             [" is too small."] * 2)]


@pytest.fixture
def root(tmp_path, monkeypatch):
  root = tmp_path / "data"
  write_tsv(root / "xnli" / "xnli.dev.tsv", XNLI_HEADER,
            [_xnli_row("de", "entailment", "Es regnet.", "Es ist nass.", 1)])
  write_tsv(root / "paws_x" / "en" / "test_2k.tsv", ["id", "sentence1", "sentence2", "label"],
            [[1, "He left , then came back .", "He came back .", 1]])
  (root / "xcopa" / "it").mkdir(parents=True)
  (root / "xcopa" / "it" / "test.it.jsonl").write_text(json.dumps({
      "premise": "L'uomo aprì il rubinetto.", "choice1": "Il gabinetto si riempì d'acqua.",
      "choice2": "L'acqua scorse dal beccuccio.", "question": "effect", "label": 1,
      "idx": 0, "changed": False}, ensure_ascii=False) + "\n", encoding="utf-8")
  test_evals_more.write_more(root)
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  return root


def _ids(sp, context, continuation, seq2seq):
  """lm-eval: causal continuation ids = ids of the whole text after the context's ids;
  seq2seq: the continuation alone, the context + EOS (T5's tokenizer template)."""
  prefix = sp.bos_id() if sp.bos_id() >= 0 else sp.eos_id()
  if not context:
    return [prefix], sp.encode(continuation)
  context_ids = sp.encode(context)
  if seq2seq:
    return context_ids + [sp.eos_id()], sp.encode(continuation)
  return context_ids, sp.encode(context + continuation)[len(context_ids):]


def _per_choice(contexts, continuations):
  """A context per choice (XWinograd's partial scoring) or one shared context."""
  return contexts if isinstance(contexts, list) else [contexts] * len(continuations)


def _pad(rows, length):
  return np.array([r + [0] * (length - len(r)) for r in rows], np.int32)


def _summed(logits_NxTxV, targets, starts):
  """Sum of log p(target) over each row's continuation span, in float64."""
  logp = np.asarray(jax.nn.log_softmax(np.asarray(logits_NxTxV, np.float64), axis=-1))
  return [float(sum(logp[n, start + k, t] for k, t in enumerate(cont)))
          for n, (cont, start) in enumerate(zip(targets, starts))]


def _decoder_scores(model, params, requests):
  # lm-eval's sequence: context then continuation, nothing before (no BOS added)
  tokens = [ctx + cont for ctx, cont in requests]
  batch = {"decoder_input_tokens": _pad([t[:-1] for t in tokens], 144),
           "decoder_target_tokens": _pad([t[1:] for t in tokens], 144)}
  return _summed(jax.jit(model.logits)(params, batch), [c for _, c in requests],
                 [len(ctx) - 1 for ctx, _ in requests])


def _encdec_scores(model, params, requests):
  from linguamix.models import mt5
  enc = _pad([ctx for ctx, _ in requests], 96)
  dec_in = _pad([[0] + cont[:-1] for _, cont in requests], 48)

  @jax.jit
  def logits(enc, dec_in):
    hidden, kernel = model.module.apply({"params": params}, enc, (enc > 0).astype(jnp.int32),
                                        dec_in, jnp.ones_like(dec_in), deterministic=True)
    return mt5.logits(hidden, kernel)
  return _summed(logits(enc, dec_in), [c for _, c in requests], [0] * len(requests))


def _tiny_decoder(vocabulary):
  model = decoder.DecoderOnlyModel(decoder.DecoderConfig(
      vocab_size=vocabulary.vocab_size, d_model=32, num_layers=2, num_heads=4, mlp_dim=64),
      vocabulary)
  init = jax.jit(lambda rng: model.init_variables(rng, {"decoder_input_tokens": (1, 8)}))
  params = nn.meta.unbox(init(jax.random.PRNGKey(1)))
  return model, params, _decoder_scores


def _tiny_encdec(vocabulary):
  from linguamix.models import encoder_decoder, mt5
  model = encoder_decoder.EncoderDecoderModel(mt5.MT5Config(
      vocab_size=vocabulary.vocab_size, emb_dim=32, num_heads=2, num_encoder_layers=2,
      num_decoder_layers=2, head_dim=16, mlp_dim=64, dtype="float32"), vocabulary)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = nn.meta.unbox(jax.jit(lambda rng: model.init_variables(rng, shapes))(
      jax.random.PRNGKey(2)))["params"]
  return model, params, _encdec_scores


@pytest.mark.parametrize("build", [_tiny_decoder, _tiny_encdec], ids=["decoder", "encdec"])
def test_scores_match_logits(root, tmp_path, build):
  vocabulary = task_vocab.VOCABULARY
  sp = spm.SentencePieceProcessor(model_file=task_vocab.SAMPLE_SPM)
  model, params, reference = build(vocabulary)
  seq2seq = reference is _encdec_scores
  out = tmp_path / "out"
  # Fixed lengths: one compilation for all three tasks.
  results = runner.evaluate(model, params, list(EXPECTED), str(out), batch_size=4,
                            sequence_length={"inputs": 96, "targets": 48})
  requests = [_ids(sp, ctx, cont, seq2seq) for examples in EXPECTED.values()
              for _, contexts, conts in examples
              for ctx, cont in zip(_per_choice(contexts, conts), conts)]
  want = iter(reference(model, params, requests))
  for task, examples in EXPECTED.items():
    lines = [json.loads(l) for l in (out / "scores" / f"{task}.jsonl").read_text().splitlines()]
    assert len(lines) == len(examples)
    for line, (gold, context, continuations) in zip(lines, examples):
      assert line["label"] == gold
      assert [c["targets"] for c in line["choices"]] == continuations
      expected = [next(want) for _ in continuations]
      np.testing.assert_allclose([c["score"] for c in line["choices"]], expected,
                                 rtol=1e-4, atol=1e-4)
      assert line["pred"] == int(np.argmax(expected))
      # lm-eval's acc_norm divides by len(choice): the continuation without its target
      # delimiter (" " for XNLI/XCOPA/..., "" for PAWS-X); with one context per choice
      # (XWinograd) the choices are those contexts.
      if isinstance(context, list):
        lengths = [len(c) for c in context]
      else:
        lengths = [len(c[1:]) if c.startswith(" ") else len(c) for c in continuations]
      norm = np.array(expected) / np.array(lengths)
      assert line["pred_norm"] == int(np.argmax(norm))
    assert results[task]["acc"] == 100.0 * (lines[0]["pred"] == examples[0][0])


def test_too_long_requests_fail(root, tmp_path):
  model = LookupScorer(task_vocab.VOCABULARY, {})
  with pytest.raises(Exception, match="targets longer than sequence_length"):
    runner.evaluate(model, None, "xnli.de", str(tmp_path), sequence_length={"inputs": 8, "targets": 8},
                    jit=False)


def test_generation_with_another_vocabulary_than_the_tasks_is_refused(tmp_path):
  """Generation feeds the task's token ids to the model: a byte-vocabulary model on tasks
  tokenized by SentencePiece would decode garbage, so it is refused before scoring."""
  import seqio
  model = LookupScorer(seqio.ByteVocabulary(), {})
  with pytest.raises(ValueError, match=r"task 'flores.en_de' tokenizes with a vocabulary of \d+ ids "
                                       r"that is not the model's \(259 ids\)"):
    runner.evaluate(model, None, "flores.en_de", str(tmp_path / "out"), jit=False)
  assert not (tmp_path / "out").exists()
