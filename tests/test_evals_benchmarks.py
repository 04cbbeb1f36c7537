"""XNLI and PAWS-X from files in their exact release formats; metrics; outputs; bad input."""

import collections
import csv
import json

import gin
import numpy as np
import pytest
import seqio

import linguamix.evals  # noqa: F401
from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry
from linguamix.evals import runner
from evals_helpers import LookupScorer, write_tsv

XNLI_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
               "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID",
               "pairID", "genre", "label1", "label2", "label3", "label4", "label5",
               "sentence1_tokenized", "sentence2_tokenized", "match"]


def _xnli_row(lang, label, s1, s2, pair):
  return [lang, label, "(x)", "(y)", "(x)", "(y)", s1, s2, pair, pair, "fiction", label,
          label, label, label, label, s1, s2, "True"]


XNLI_DEV = [
    _xnli_row("de", "entailment", 'Er sagte "Hallo".', "Er grüßte.", 1),
    _xnli_row("en", "neutral", "He came.", "He came late.", 1),
    _xnli_row("de", "contradiction", "Es regnet.", "Es ist trocken.", 2),
    _xnli_row("en", "contradiction", "It rains.", "It is dry.", 2),
    _xnli_row("de", "neutral", "Sie liest.", "Sie liest ein Buch.", 3),
]
PAWS_EN = [["id", "sentence1", "sentence2", "label"],
           [1, "In 1995 , he was born in `` Paris '' .", "He was born in Paris in 1995 .", 1],
           [2, "It is n't ( really ) true ;", "This is not true .", 0]]
PAWS_DE = [["id", "sentence1", "sentence2", "label"],
           [1, "Er kam 1995 an.", "NS", 1],
           [2, "Sie ging.", "Sie ging weg.", 0]]


@pytest.fixture
def root(tmp_path, monkeypatch):
  root = tmp_path / "data"
  write_tsv(root / "xnli" / "xnli.dev.tsv", XNLI_HEADER, XNLI_DEV)
  write_tsv(root / "xnli" / "xnli.test.tsv", XNLI_HEADER, XNLI_DEV[:2])
  write_tsv(root / "paws_x" / "en" / "test_2k.tsv", PAWS_EN[0], PAWS_EN[1:])
  write_tsv(root / "paws_x" / "de" / "test_2k.tsv", PAWS_DE[0], PAWS_DE[1:])
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  return root


def _rows(task, split="default"):
  ds = seqio.get_mixture_or_task(task).get_dataset(None, split=split, shuffle=False)
  return [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in ex.items()}
          for ex in ds.as_numpy_iterator()]


def test_xnli_prompt_from_spec(root):
  rows = _rows("xnli.de")  # default split = validation
  assert [(r["idx"], r["choice"], r["label"]) for r in rows] == [
      (i, c, label) for i, label in enumerate((0, 2, 1)) for c in range(3)]
  # spec table, de: richtig / Ja / Auch / Nein; empty context, delimiter " ".
  assert [r["targets_pretokenized"] for r in rows[:3]] == [
      ' Er sagte "Hallo"., richtig? Ja, Er grüßte.',
      ' Er sagte "Hallo"., richtig? Auch, Er grüßte.',
      ' Er sagte "Hallo"., richtig? Nein, Er grüßte.']
  eos = registry.output_features()["inputs"].vocabulary.eos_id
  assert all(r["inputs_pretokenized"] == "" and list(r["inputs"]) == [eos] for r in rows)
  assert len(_rows("xnli.en", "test")) == 3


def test_paws_x_templates_from_spec(root):
  en = _rows("paws_x.en")
  # v0.4.9+: empty delimiter, detokenised, s1 loses its final ".", s2 lower-cased first.
  # lm-eval strips s1 before dropping the mark, not after: "true ;" -> "true ".
  assert [r["targets_pretokenized"] for r in en] == [
      "In 1995, he was born in `` Paris'', right? No, he was born in Paris in 1995.",
      "In 1995, he was born in `` Paris'', right? Yes, he was born in Paris in 1995.",
      "It isn't (really) true , right? No, this is not true.",
      "It isn't (really) true , right? Yes, this is not true."]
  assert [r["label"] for r in en[::2]] == [1, 0]
  legacy = _rows("paws_x_legacy.en")
  assert legacy[0]["targets_pretokenized"] == (
      " In 1995 , he was born in `` Paris '' ., right? Yes, He was born in Paris in 1995 .")
  de = _rows("paws_x.de")
  # The NS placeholder row keeps its place and is flagged.
  assert len(de) == 4 and de[0]["flag"] == "NS placeholder" and de[2]["flag"] == ""
  assert de[1]["targets_pretokenized"] == "Er kam 1995 an, richtig? Ja, nS"


def test_rank_metrics_ties_norm_and_f1():
  def t(idx, choice, label, length, n=2):
    return {"idx": idx, "choice": choice, "label": label, "num_choices": n,
            "length": length, "flag": ""}
  targets = [t(0, 0, 1, 2), t(0, 1, 1, 10),  # tie -> choice 0 (wrong); norm -> choice 1
             t(1, 1, 0, 4), t(1, 0, 0, 4)]   # rows out of order; choice 0 wins
  scores = [-4.0, -4.0, -9.0, -1.0]
  m = rank.rank_accuracy(targets, scores)
  assert m["acc"] == 50.0 and m["acc_norm"] == 100.0 and m["num_examples"] == 2
  assert rank.binary_f1(targets, scores)["f1"] == 0.0  # gold positive, predicted 0
  with pytest.raises(ValueError, match="example 0: choices \\[0\\] scored"):
    rank.rank_accuracy(targets[:1] + targets[2:], scores[:1] + scores[2:])


def test_whitespace_moves_to_continuation():
  ex = rank.multiple_choice(7, "Question: why?  ", ["A", "B"], 1)
  rows = list(rank.rank_classification(rank.to_dataset([ex])).as_numpy_iterator())
  assert [(r["inputs"], r["targets"], r["length"]) for r in rows] == [
      (b"Question: why?", b"   A", 1), (b"Question: why?", b"   B", 1)]  # acc_norm: len(choice)


def test_evaluate_writes_tables_and_scores(root, tmp_path):
  vocab = registry.output_features()["targets"].vocabulary

  class Table(dict):  # every request scores minus its continuation's length
    def __missing__(self, key):
      return -float(len(key[1]))
  out = tmp_path / "out"
  results = runner.evaluate(LookupScorer(vocab, Table()), None,
                            ["xnli.de", "xnli.en", "paws_x.en", "paws_x.de"], str(out), jit=False)
  # The shortest sentence wins: de "Ja" (gold 0, 2, 1 -> 1/3), en "No" (gold 1, 2 -> 1/2).
  assert results["xnli.de"]["acc"] == pytest.approx(100 / 3)
  assert results["xnli.en"]["acc"] == 50.0
  # PAWS-X gold (1, 0): en "No" beats "Yes" (always choice 0), de "Ja" beats "Nein".
  assert results["paws_x.en"]["acc"] == 50.0 and results["paws_x.en"]["f1"] == 0.0
  assert results["paws_x.de"]["acc"] == 50.0
  assert results["paws_x.de"]["f1"] == pytest.approx(200 / 3)  # P 1/2, R 1
  assert results["paws_x.de"]["num_flagged"] == 1

  with open(out / "summary.csv") as f:
    rows = {(r["family"], r["language"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}
  assert rows[("xnli", "avg_weighted", "acc")] == pytest.approx((100 / 3 * 3 + 50 * 2) / 5)
  assert rows[("xnli", "avg", "acc")] == pytest.approx((100 / 3 + 50) / 2)
  assert rows[("paws_x", "avg", "f1")] == pytest.approx(100 / 3)
  # Standard errors, lm-eval's: de correct (1, 0, 0): sd(ddof=1) sqrt(1/3) / sqrt(3) = 1/3;
  # en (0, 1): 1/2; the plain mean's sqrt(se_de^2 + se_en^2) / 2; the weighted mean's
  # pooled sqrt(((3-1) se_de^2 3 + (2-1) se_en^2 2) / (5 - 2) / 5).
  with open(out / "summary.csv") as f:
    full = {(r["family"], r["language"], r["metric"]): r for r in csv.DictReader(f)}
  se = {"de": 100 / 3, "en": 50.0}
  want = {"de": se["de"], "en": se["en"], "avg": np.hypot(se["de"], se["en"]) / 2,
          "avg_weighted": np.sqrt((2 * se["de"] ** 2 * 3 + se["en"] ** 2 * 2) / 3 / 5)}
  for lang, value in want.items():
    row = full[("xnli", lang, "acc")]
    assert float(row["stderr"]) == pytest.approx(value)
    assert float(row["ci_low"]) == pytest.approx(max(0, float(row["value"]) - 1.959964 * value))
    assert float(row["ci_high"]) == pytest.approx(min(100, float(row["value"]) + 1.959964 * value))
  assert full[("xnli", "de", "acc")]["num_examples"] == "3"
  md = (out / "summary.md").read_text()
  assert "### xnli" in md and "| acc | 33.33 ± 33.33 | 50.00 ± 50.00 | 41.67 ± 30.05 | 40.00 ± 27.89 |" in md
  assert "| examples | 3 | 2 | 5 | 5 |" in md
  record = json.loads((out / "metrics" / "xnli.de.json").read_text())
  assert record["language"] == "de" and record["num_examples"] == 3
  assert record["metrics"]["num_examples"] == 3 and isinstance(record["metrics"]["num_examples"], int)
  assert record["requests"] == {"lm_eval_version": "0.4.13", "backend": "seq2seq", "add_bos_token": None}
  lines = [json.loads(l) for l in (out / "scores" / "xnli.de.jsonl").read_text().splitlines()]
  assert [(l["idx"], l["label"], l["pred"], l["correct"]) for l in lines] == [
      (0, 0, 0, True), (1, 2, 0, False), (2, 1, 0, False)]
  first = lines[0]["choices"][0]
  assert first["targets"] == ' Er sagte "Hallo"., richtig? Ja, Er grüßte.'
  assert first["score"] == -len(first["targets"].strip()) and first["length"] == len(first["targets"]) - 1
  run = json.loads((out / "run.json").read_text())
  assert run["split"] == "default" and run["metrics"]["xnli.en"]["acc"] == 50.0


def test_bad_input(root, tmp_path):
  with pytest.raises(FileNotFoundError, match="paws_x/ko/test_2k.tsv"):
    _rows("paws_x.ko")
  with pytest.raises(ValueError, match="paws_x has no language 'it'"):
    runner._check_name("paws_x.it")
  # A row with an unknown label and one with an empty sentence.
  write_tsv(root / "paws_x" / "en" / "test_2k.tsv", PAWS_EN[0],
            PAWS_EN[1:] + [[3, "A b .", "C d .", 7], [4, "", "x", 0]])
  data.read_text.cache_clear()
  with pytest.raises(data.MalformedRowError, match=r"test_2k.tsv:5: field 'sentence1' is missing"):
    _rows("paws_x.en")
  write_tsv(root / "paws_x" / "de" / "test_2k.tsv", PAWS_DE[0], PAWS_DE[1:] + [[3, "a", "b", 7]])
  with pytest.raises(data.MalformedRowError, match=r"test_2k.tsv:4: label '7' not one of"):
    _rows("paws_x.de")
  data.read_text.cache_clear()
  with gin.unlock_config():
    gin.bind_parameter("skip_malformed_rows.skip", True)
  try:
    with data.counting(data.Skips()) as skips:
      assert len(_rows("paws_x.en")) == 4  # 2 good examples x 2 choices
      path = str(root / "paws_x" / "en" / "test_2k.tsv")
      assert len(_rows("paws_x_legacy.en")) == 4  # the same file parsed again: counted once
    assert skips.lines == {path: {4, 5}} and skips.counts() == {path: 2}
    assert len(_rows("paws_x.en")) == 4  # outside the block: skipped, not counted there
    assert skips.counts() == {path: 2}
  finally:
    gin.clear_config()


def test_each_evaluation_reports_its_own_skips(root, tmp_path):
  """Two evaluations in one process (the in-process study executor runs many) each
  write the malformed rows they skipped in their run.json, and only those."""
  write_tsv(root / "paws_x" / "en" / "test_2k.tsv", PAWS_EN[0],
            PAWS_EN[1:] + [[3, "A b .", "C d .", 7], [4, "", "x", 0]])
  data.read_text.cache_clear()
  bad = str(root / "paws_x" / "en" / "test_2k.tsv")
  scorer = LookupScorer(registry.output_features()["targets"].vocabulary,
                        collections.defaultdict(float))
  with gin.unlock_config():
    gin.bind_parameter("skip_malformed_rows.skip", True)
  try:
    runner.evaluate(scorer, None, ["paws_x.en", "paws_x_legacy.en"], str(tmp_path / "a"), jit=False)
    runner.evaluate(scorer, None, ["xnli.de", "paws_x.de"], str(tmp_path / "b"), jit=False)
    runner.evaluate(scorer, None, "paws_x.en", str(tmp_path / "c"), jit=False)
  finally:
    gin.clear_config()
  skipped = {run: json.loads((tmp_path / run / "run.json").read_text())["skipped_malformed_rows"]
             for run in "abc"}
  assert skipped == {"a": {bad: 2}, "b": {}, "c": {bad: 2}}


def test_eos_scored_only_when_asked(root):
  eos = registry.output_features()["targets"].vocabulary.eos_id
  assert all(r["targets"][-1] != eos for r in _rows("xnli.en"))
  with gin.unlock_config():
    gin.bind_parameter("score_eos.enabled", True)
  try:
    assert all(r["targets"][-1] == eos for r in _rows("xnli.en"))
  finally:
    gin.clear_config()
