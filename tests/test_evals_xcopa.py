"""XCOPA on the real release files: prompt construction, counts, known accuracy."""

import json

import numpy as np
import pytest
import seqio

import linguamix.evals  # noqa: F401  (registers the tasks)
from linguamix.evals import registry
from linguamix.evals import runner
from evals_helpers import LookupScorer

# lm-evaluation-harness's XCOPA connectors (its xcopa utils.py): lang -> (cause, effect).
SPEC_CONNECTORS = {
    "et": ("sest", "seetõttu"), "ht": ("poukisa", "donk sa"), "id": ("karena", "maka"),
    "it": ("perché", "quindi"), "qu": ("imataq", "chaymi"), "sw": ("kwa sababu", "kwa hiyo"),
    "ta": ("காரணமாக", "எனவே"), "th": ("เพราะ", "ดังนั้น"), "tr": ("çünkü", "bu yüzden"),
    "vi": ("bởi vì", "vì vậy"), "zh": ("因为", "所以"),
}


@pytest.fixture
def data_root(real_data, monkeypatch):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  return real_data


def _expected(root, lang, file_split):
  """(idx, context, [continuation1, continuation2], label) straight from the spec."""
  out = []
  for line in (root / "xcopa" / lang / f"{file_split}.{lang}.jsonl").read_text("utf-8").splitlines():
    r = json.loads(line)
    connector = SPEC_CONNECTORS[lang][0 if r["question"] == "cause" else 1]
    context = r["premise"][:-1] + " " + connector
    conts = [" " + c[0].lower() + c[1:] for c in (r["choice1"], r["choice2"])]
    out.append((r["idx"], context, conts, r["label"]))
  return out


def _rows(task, split):
  ds = seqio.get_mixture_or_task(task).get_dataset(None, split=split, shuffle=False)
  return [(int(ex["idx"]), int(ex["choice"]), int(ex["label"]),
           ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode())
          for ex in ds.as_numpy_iterator()]


@pytest.mark.parametrize("lang", sorted(SPEC_CONNECTORS))
def test_every_example_matches_spec(data_root, lang):
  for split, file_split, count in (("test", "test", 500), ("validation", "val", 100)):
    expected = _expected(data_root, lang, file_split)
    assert len(expected) == count
    rows = _rows(f"xcopa.{lang}", split)
    assert len(rows) == 2 * count
    want = [(i, c, label, ctx, conts[c]) for i, ctx, conts, label in expected for c in (0, 1)]
    assert rows == want
  # "default" is the test split, as the field reports XCOPA.
  assert len(_rows(f"xcopa.{lang}", "default")) == 1000


def test_mixture_and_languages():
  mixture = seqio.get_mixture_or_task("xcopa")
  assert sorted(t.name for t in mixture.tasks) == [f"xcopa.{l}" for l in sorted(SPEC_CONNECTORS)]
  with pytest.raises(ValueError, match="xcopa has no language 'de'"):
    runner._check_name("xcopa.de")


@pytest.mark.parametrize("converter", [seqio.EncDecFeatureConverter, seqio.DecoderFeatureConverter])
def test_toy_model_gives_known_accuracy(data_root, tmp_path, converter):
  """The scorer prefers the gold choice except on every third example: acc is known."""
  expected = _expected(data_root, "it", "test")
  table, wrong = {}, 0
  for idx, ctx, conts, label in expected:
    flip = idx % 3 == 0
    wrong += flip
    for c, cont in enumerate(conts):
      # The gold choice scores higher unless flipped; the other choice is much longer
      # per character only on flipped examples, so acc_norm differs too.
      table[(ctx, cont.strip())] = -1.0 if (c == label) != flip else -2.0
  vocab = registry.output_features()["targets"].vocabulary
  model = LookupScorer(vocab, table, converter)
  results = runner.evaluate(model, None, "xcopa.it", str(tmp_path), batch_size=64, jit=False)
  assert len(model.requests) == 1000
  assert results["xcopa.it"]["acc"] == pytest.approx(100 * (500 - wrong) / 500)
  assert results["xcopa.it"]["num_examples"] == 500
