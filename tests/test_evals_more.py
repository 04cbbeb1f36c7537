"""XStoryCloze, XWinograd (partial scoring) and Belebele from files in their release formats."""

import json

import pytest
import seqio

import linguamix.evals  # noqa: F401
from evals_helpers import write_tsv

STORY_HEADER = ["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3",
                "InputSentence4", "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2",
                "AnswerRightEnding"]
STORY = ["s1", "Ane went out.", "It rained.", "She had no umbrella.", "She got wet.",
         "She was happy.", "She went home to dry off.", "2"]
WINO = {"sentence": "The trophy doesn't fit into the suitcase because _ is too small.",
        "option1": "the trophy", "option2": "the suitcase", "answer": "2"}
BELE = {"link": "x", "question_number": 1, "flores_passage": "Ein Hund bellt.",
        "question": "Wer bellt?", "mc_answer1": "Eine Katze", "mc_answer2": "Ein Hund",
        "mc_answer3": "Niemand", "mc_answer4": "Ein Vogel", "correct_answer_num": "2",
        "dialect": "deu_Latn", "ds": "2023-05-03"}


def write_more(root):
  write_tsv(root / "xstory_cloze" / "eu" / "spring2016.val.eu.tsv.split_20_80_eval.tsv",
            STORY_HEADER, [STORY])
  (root / "xwinograd" / "jp").mkdir(parents=True)
  (root / "xwinograd" / "jp" / "test.jsonl").write_text(json.dumps(WINO) + "\n")
  (root / "belebele").mkdir(parents=True)
  (root / "belebele" / "deu_Latn.jsonl").write_text(json.dumps(BELE, ensure_ascii=False) + "\n")


# (gold, [(context, continuation) per choice]) built by hand from lm-evaluation-harness's task definitions.
EXPECTED = {
    "xstorycloze.eu": (1, [("Ane went out. It rained. She had no umbrella. She got wet.",
                            " She was happy."),
                           ("Ane went out. It rained. She had no umbrella. She got wet.",
                            " She went home to dry off.")]),
    "xwinograd.ja": (1, [("The trophy doesn't fit into the suitcase because the trophy",
                          " is too small."),
                         ("The trophy doesn't fit into the suitcase because the suitcase",
                          " is too small.")]),
    "belebele.deu_Latn": (1, [("P: Ein Hund bellt.\nQ: Wer bellt?\nA: Eine Katze\nB: Ein Hund\n"
                               "C: Niemand\nD: Ein Vogel\nAnswer:", f" {letter}")
                              for letter in "ABCD"]),
}


@pytest.fixture
def root(tmp_path, monkeypatch):
  write_more(tmp_path)
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(tmp_path))
  return tmp_path


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_prompts_from_spec(root, task):
  gold, pairs = EXPECTED[task]
  ds = seqio.get_mixture_or_task(task).get_dataset(None, split="default", shuffle=False)
  rows = list(ds.as_numpy_iterator())
  assert [(r["inputs_pretokenized"].decode(), r["targets_pretokenized"].decode()) for r in rows] == pairs
  assert {int(r["label"]) for r in rows} == {gold}


def test_bad_rows(root):
  (root / "xwinograd" / "jp" / "test.jsonl").write_text(json.dumps(dict(WINO, sentence="no blank")) + "\n")
  with pytest.raises(ValueError, match=r"test.jsonl:1: sentence has no '_' blank"):
    seqio.get_mixture_or_task("xwinograd.ja").get_dataset(None, split="test", shuffle=False)


def test_fields_holding_line_separators_are_text(root):
  """JSON Lines and TSV end a row at "\\n" only: U+2028 / U+0085 inside a field (as in
  scraped text) are part of it, as Hugging Face `datasets` (lm-eval's loader) reads them;
  CRLF files read the same as LF. Belebele's question is stripped, its passage is not."""
  story = list(STORY)
  story[1] = "Ane went\u0085out."
  write_tsv(root / "xstory_cloze" / "eu" / "spring2016.val.eu.tsv.split_20_80_eval.tsv",
            STORY_HEADER, [story])
  path = root / "xstory_cloze" / "eu" / "spring2016.val.eu.tsv.split_20_80_eval.tsv"
  path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
  bele = dict(BELE, flores_passage="Ein Hund\u2028bellt. ", question=" Wer bellt? ")
  (root / "belebele" / "deu_Latn.jsonl").write_text(json.dumps(bele, ensure_ascii=False) + "\n")
  rows = {}
  for task in ("xstorycloze.eu", "belebele.deu_Latn"):
    ds = seqio.get_mixture_or_task(task).get_dataset(None, split="default", shuffle=False)
    rows[task] = [r["inputs_pretokenized"].decode() for r in ds.as_numpy_iterator()]
  assert rows["xstorycloze.eu"] == ["Ane went\u0085out. It rained. She had no umbrella. She got wet."] * 2
  assert rows["belebele.deu_Latn"] == [
      "P: Ein Hund\u2028bellt. \nQ: Wer bellt?\nA: Eine Katze\nB: Ein Hund\nC: Niemand\n"
      "D: Ein Vogel\nAnswer:"] * 4
