"""XCOPA (11 languages): causal commonsense, two choices, lm-eval's prompt.

Release files `xcopa/{lang}/{val,test}.{lang}.jsonl`. Context = premise without its
final character + " " + connector; continuation = " " + choice, first letter lower-cased.
"""

from __future__ import annotations

from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry

# lang -> (cause "because", effect "therefore"), lm-eval's XCOPA connectors (docs/evaluation.md).
CONNECTORS = {
    "et": ("sest", "seetõttu"),
    "ht": ("poukisa", "donk sa"),
    "id": ("karena", "maka"),
    "it": ("perché", "quindi"),
    "qu": ("imataq", "chaymi"),
    "sw": ("kwa sababu", "kwa hiyo"),
    "ta": ("காரணமாக", "எனவே"),
    "th": ("เพราะ", "ดังนั้น"),
    "tr": ("çünkü", "bu yüzden"),
    "vi": ("bởi vì", "vì vậy"),
    "zh": ("因为", "所以"),
}
_FILE_SPLIT = {"validation": "val", "test": "test"}
_FIELDS = ("premise", "choice1", "choice2", "question", "label", "idx")


def _lower_first(text: str) -> str:
  return text[:1].lower() + text[1:]


def load(lang: str, split: str) -> list[rank.Example]:
  registry.check_language(XCOPA, lang)
  path = data.benchmark_path("xcopa", lang, f"{_FILE_SPLIT[split]}.{lang}.jsonl")
  cause, effect = CONNECTORS[lang]
  examples = []
  for line, row in data.read_jsonl(path, _FIELDS):
    question = data.label_index(path, line, row["question"], ("cause", "effect"))
    label = data.label_index(path, line, row["label"], (0, 1))
    if question is not None and label is not None:
      examples.append(rank.multiple_choice(
          int(row["idx"]), row["premise"].strip()[:-1] + " " + (cause, effect)[question],
          [_lower_first(row["choice1"]), _lower_first(row["choice2"])], label))
  return examples


XCOPA = registry.Benchmark(
    name="xcopa", languages=tuple(CONNECTORS), splits=("validation", "test"),
    default_split="test", load=load)
registry.register_rank_benchmark(XCOPA)
