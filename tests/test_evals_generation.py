"""XQuAD (EM/F1) and FLORES (chrF/BLEU) from files in their release formats."""

import json

import pytest
import sacrebleu

import linguamix.evals  # noqa: F401
from linguamix.evals import generation
from linguamix.evals import registry
from linguamix.evals import runner
from evals_helpers import LookupGenerator

XQUAD = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{
    "context": "Der Rhein fließt durch Basel.",
    "qas": [{"id": "q1", "question": "Wodurch fließt der Rhein?",
             "answers": [{"text": "Basel", "answer_start": 23}, {"text": "durch Basel", "answer_start": 17}]},
            {"id": "q2", "question": "Was fließt?",
             "answers": [{"text": "Der Rhein", "answer_start": 0}]}]}]}]}


@pytest.fixture
def root(tmp_path, monkeypatch):
  (tmp_path / "xquad").mkdir()
  (tmp_path / "xquad" / "xquad.de.json").write_text(json.dumps(XQUAD, ensure_ascii=False))
  for split in ("dev", "devtest"):
    d = tmp_path / "flores200" / split
    d.mkdir(parents=True)
    (d / f"eng_Latn.{split}").write_text("The cat sleeps.\nIt is raining today.\n")
    (d / f"deu_Latn.{split}").write_text("Die Katze schläft.\nHeute regnet es.\n")
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(tmp_path))
  return tmp_path


def test_xquad_and_flores_metrics(root, tmp_path):
  prompt = "Context: Der Rhein fließt durch Basel.\n\nQuestion: {}\n\nAnswer:"
  flores = "Translate the following text from English to German.\nEnglish: {}\nGerman:"
  table = {prompt.format("Wodurch fließt der Rhein?"): "durch Basel",  # EM with reference 2
           prompt.format("Was fließt?"): "Rhein",                       # F1 2/3, EM 0
           flores.format("The cat sleeps."): "Die Katze schläft.",
           flores.format("It is raining today."): "Es regnet heute."}
  vocab = registry.output_features()["targets"].vocabulary
  results = runner.evaluate(LookupGenerator(vocab, table), None, ["xquad.de", "flores.en_de"],
                            str(tmp_path / "out"), jit=False)
  assert results["xquad.de"]["em"] == 50.0
  # "rhein" vs "der rhein": "der" is not an English article: P 1, R 1/2.
  assert results["xquad.de"]["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
  hyps, refs = ["Die Katze schläft.", "Es regnet heute."], [["Die Katze schläft.", "Heute regnet es."]]
  assert results["flores.en_de"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score)
  assert results["flores.en_de"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score)
  lines = (tmp_path / "out" / "scores" / "flores.en_de.jsonl").read_text().splitlines()
  assert json.loads(lines[1]) == {"idx": 1, "inputs": flores.format("It is raining today."),
                                 "references": ["Heute regnet es."], "prediction": "Es regnet heute."}


def test_generation_bad_input(root):
  with pytest.raises(ValueError, match="flores has no language 'en_xx'"):
    runner._check_name("flores.en_xx")
  (root / "flores200" / "devtest" / "deu_Latn.devtest").write_text("Die Katze schläft.\n")
  with pytest.raises(ValueError, match="en: 2 lines but de: 1"):
    generation.load_flores("en_de", "test")
