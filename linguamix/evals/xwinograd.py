"""XWinograd (en fr ja pt ru zh): pronoun resolution with partial scoring.

Release files `xwinograd/{code}/test.jsonl` (`sentence` with one `_`, `option1`,
`option2`, `answer` "1"/"2"; the release names Japanese `jp`). lm-eval's partial
scoring: context i = the sentence up to `_` with option i filled in; the continuation
(the text after `_`, stripped, after the " " delimiter) is scored under each context.
"""

from __future__ import annotations

from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry

RELEASE_CODES = {"en": "en", "fr": "fr", "ja": "jp", "pt": "pt", "ru": "ru", "zh": "zh"}
_FIELDS = ("sentence", "option1", "option2", "answer")


def load(lang: str, split: str) -> list[rank.Example]:
  registry.check_language(XWINOGRAD, lang)
  path = data.benchmark_path("xwinograd", RELEASE_CODES[lang], f"{split}.jsonl")
  examples = []
  for position, (line, row) in enumerate(data.read_jsonl(path, _FIELDS)):
    sentence = row["sentence"]
    label = data.label_index(path, line, str(row["answer"]), ("1", "2"))
    if "_" not in sentence:
      data.report_bad_row(path, line, "sentence has no '_' blank")
    elif label is not None:
      blank = sentence.index("_")
      examples.append(rank.partial_scoring(
          position, [sentence[:blank] + row[o] for o in ("option1", "option2")],
          sentence[blank + 1:].strip(), label))
  return examples


XWINOGRAD = registry.Benchmark(
    name="xwinograd", languages=tuple(RELEASE_CODES), splits=("test",),
    default_split="test", load=load)
registry.register_rank_benchmark(XWINOGRAD)
