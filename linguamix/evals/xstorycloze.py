"""XStoryCloze (11 languages): pick the right ending of a four-sentence story.

Release files `xstory_cloze/{lang}/spring2016.val.{lang}.tsv.split_20_80_{train,eval}.tsv`
(columns InputStoryid, InputSentence1-4, RandomFifthSentenceQuiz1-2, AnswerRightEnding).
Context = the four sentences joined by spaces; choices the two endings; gold
AnswerRightEnding - 1. The field reports the `eval` file (1,511 stories): split
`validation` (and `default`); `train` (360) is offered too.
"""

from __future__ import annotations

from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry

LANGUAGES = ("ar", "en", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh")
_FILE_SPLIT = {"validation": "eval", "train": "train"}
_SENTENCES = [f"InputSentence{i}" for i in range(1, 5)]
_ENDINGS = ["RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2"]
_FIELDS = tuple(_SENTENCES + _ENDINGS + ["AnswerRightEnding"])


def load(lang: str, split: str) -> list[rank.Example]:
  registry.check_language(XSTORYCLOZE, lang)
  path = data.benchmark_path(
      "xstory_cloze", lang, f"spring2016.val.{lang}.tsv.split_20_80_{_FILE_SPLIT[split]}.tsv")
  examples = []
  for position, (line, row) in enumerate(data.read_tsv(path, _FIELDS)):
    label = data.label_index(path, line, row["AnswerRightEnding"], ("1", "2"))
    if label is not None:
      examples.append(rank.multiple_choice(
          position, " ".join(row[s] for s in _SENTENCES), [row[e] for e in _ENDINGS], label))
  return examples


XSTORYCLOZE = registry.Benchmark(
    name="xstorycloze", languages=LANGUAGES, splits=("train", "validation"),
    default_split="validation", load=load)
registry.register_rank_benchmark(XSTORYCLOZE)
