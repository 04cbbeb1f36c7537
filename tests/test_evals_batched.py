"""The one-loop scorer (`linguamix.evals.batched`) against SeqIO's own pipeline.

`evaluate` scores the requests of every rank-classification task in one length-sorted,
bucketed loop, a decoder-only model's requests of one example in one row (their shared
context once). Each request's log-likelihood must be the one its SeqIO task gives when
run request by request: the task's registered preprocessors (`Task.get_dataset`), the
model's feature converter at that request's exact length, one unpadded row per call to
`score_batch`.
And start-up must not grow with the languages: no per-task pipeline, and a decoder-only
model's packed rows compile once.
"""

import json
import shutil

import jax
import jax.monitoring
import numpy as np
import pytest
import seqio
import tensorflow as tf

import linguamix.evals  # noqa: F401
from linguamix.evals import batched
from linguamix.evals import registry
from linguamix.evals import requests
from linguamix.evals import runner
from linguamix.t5x_tasks import vocab as task_vocab
from test_evals_scoring import _tiny_decoder, _tiny_encdec
import test_evals_more

XCOPA_LANGS = ("it", "sw", "zh")
# The parity test's requests: a Latin and a CJK XCOPA language and the three one-row
# tasks' edge cases, over several batches of 8 and length buckets. Each distinct request
# length compiles the one-by-one reference once, the bulk of this file's time.
PARITY_XCOPA = ("sw", "zh")
OTHERS = ("xstorycloze.eu", "xwinograd.ja", "belebele.deu_Latn")


@pytest.fixture
def root(tmp_path, monkeypatch):
  """Real XCOPA files for three languages (Latin, Swahili, Chinese) and one-row
  XStoryCloze / XWinograd / Belebele files (one context per choice, a multi-line
  context)."""
  from linguamix.evals import data
  root = tmp_path / "data"
  for lang in XCOPA_LANGS:
    shutil.copytree(f"{data.BUNDLED_ROOT}/xcopa/{lang}", root / "xcopa" / lang)
  test_evals_more.write_more(root)
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  return root


def _one_by_one(model, params, task_name, num_examples):
  """{(idx, choice): (score, inputs text, targets text)} from the SeqIO task itself,
  one request per call, no padding."""
  model, fmt = requests.for_model(model)
  converter = model.feature_converter_cls(pack=False)
  score = jax.jit(model.score_batch)
  out = {}
  ds = registry.rank_task(task_name, fmt).get_dataset(
      sequence_length=None, split="default", shuffle=False, num_epochs=1)
  for row in ds.take(num_examples).as_numpy_iterator():
    lengths = {"inputs": len(row["inputs"]), "targets": len(row["targets"])}
    one = tf.data.Dataset.from_tensors({"inputs": row["inputs"], "targets": row["targets"]})
    batch = next(converter(one, lengths).batch(1).as_numpy_iterator())
    out[(int(row["idx"]), int(row["choice"]))] = (
        float(np.asarray(score(params, batch))[0]),
        row["inputs_pretokenized"].decode(), row["targets_pretokenized"].decode())
  return out


@pytest.mark.slow
@pytest.mark.parametrize("build", [_tiny_decoder, _tiny_encdec], ids=["decoder", "encdec"])
def test_batched_scores_equal_seqio_one_request_at_a_time(root, tmp_path, build):
  model, params, _ = build(task_vocab.VOCABULARY)
  names = [f"xcopa.{lang}" for lang in PARITY_XCOPA] + list(OTHERS)
  num_examples = 6  # rows (choices) per task: XCOPA's first 3 examples; 20 requests in all
  runner.evaluate(model, params, names, str(tmp_path / "out"), batch_size=8,
                  num_examples=num_examples)
  for name in names:
    want = _one_by_one(model, params, name, num_examples)
    lines = [json.loads(l) for l in (tmp_path / "out" / "scores" / f"{name}.jsonl")
             .read_text(encoding="utf-8").splitlines()]
    got = {(line["idx"], c): (choice["score"], choice["inputs"], choice["targets"])
           for line in lines for c, choice in enumerate(line["choices"])}
    assert got.keys() == want.keys(), name
    for key, (score, inputs, targets) in want.items():
      assert got[key][1:] == (inputs, targets), (name, key)
      # batch rows, bucket padding and padding rows change no score: equal to float32
      # rounding (XLA may tile a padded row's reductions differently)
      np.testing.assert_allclose(got[key][0], score, rtol=1e-6, atol=1e-5, err_msg=f"{name} {key}")


@pytest.mark.slow
def test_start_up_compiles_once_whatever_the_languages(root, tmp_path, monkeypatch):
  model, params, _ = _tiny_decoder(task_vocab.VOCABULARY)
  traced_shapes = []

  class Recording(type(model)):
    def _stats(self, params, batch, dropout_rng=None):
      traced_shapes.append(batch["decoder_input_tokens"].shape)  # runs once per trace
      return super()._stats(params, batch, dropout_rng)
  model.__class__ = Recording

  pipelines = []
  original = seqio.Task.get_dataset
  monkeypatch.setattr(seqio.Task, "get_dataset",
                      lambda self, *a, **k: pipelines.append(self.name) or original(self, *a, **k))
  compiles = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(duration)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    results = runner.evaluate(model, params, [f"xcopa.{lang}" for lang in XCOPA_LANGS],
                              str(tmp_path / "out"), batch_size=16, num_examples=300)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert all(results[f"xcopa.{lang}"]["num_examples"] == 150 for lang in XCOPA_LANGS)
  assert pipelines == []  # no SeqIO pipeline traced per language
  # a decoder-only model's requests, packed into rows of one width: one trace, one
  # compilation, whatever the languages and lengths
  assert len(traced_shapes) == len(compiles) == 1, (traced_shapes, compiles)
  assert batched.bucket(traced_shapes[0][1]) == traced_shapes[0][1]


@pytest.mark.parametrize("length,padded", [(1, 16), (16, 16), (17, 24), (24, 24), (25, 32),
                                           (33, 40), (64, 64), (65, 80), (129, 160), (1000, 1024)])
def test_buckets_pad_at_most_a_quarter(length, padded):
  assert batched.bucket(length) == padded
  assert batched.bucket(length) - length <= max(15, length // 4)
