"""PAWS-X (7 languages): paraphrase identification as whole-sentence rank classification.

Release files `paws_x/{lang}/{dev_2k,test_2k}.tsv` (`id, sentence1, sentence2, label`),
or TFDS `paws_x_wiki/{lang}` with `tfds_benchmarks.names = ["paws_x"]` (that builder
itself drops rows whose label is not 0/1).
Two templates, both registered:
* `paws_x.{lang}`: lm-evaluation-harness v0.4.9+: empty delimiter; for en/de/es/fr the
  sentences are detokenised, s1 loses a trailing `.`, `,` or `;`, s2's first character
  is lower-cased. Choices [No, Yes] so that label 0 = No, 1 = Yes.
* `paws_x_legacy.{lang}`: v0.4.0-v0.4.5 (delimiter " ", raw sentences, choices in the
  swapped order [Yes, No]); its accuracies read as 100 - true, as published then.

Rows whose translated sentence is the placeholder `NS` keep their place (the source row
count is kept, as lm-eval does) and are scored as written; metrics count them in
`num_flagged`.
"""

from __future__ import annotations

import re

from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry

# lang -> (Q, YES, NO), lm-eval's PAWS-X prompt words (docs/evaluation.md).
WORDS = {
    "en": ("right", "Yes", "No"),
    "de": ("richtig", "Ja", "Nein"),
    "es": ("verdad", "Sí", "No"),
    "fr": ("n'est-ce pas", "Oui", "Non"),
    "ja": ("ですね", "はい", "いいえ"),
    "ko": ("맞죠", "예", "아니요"),
    "zh": ("对吧", "是", "不是"),
}
DETOKENIZED = ("en", "de", "es", "fr")
PLACEHOLDER = "NS"
_FILE_SPLIT = {"validation": "dev_2k", "test": "test_2k"}
_FIELDS = ("sentence1", "sentence2", "label")


def detokenize(text: str) -> str:
  """Undoes the PTB-style spacing of the English-side sentences (lm-eval's rules)."""
  text = text.replace(" n't", "n't").replace(" )", ")").replace("( ", "(")
  text = text.replace('" ', '"').replace(' "', '"')
  return re.sub(r" (['.,])", r"\1", text)


def choices(lang: str, s1: str, s2: str, legacy: bool) -> list[str]:
  question, yes, no = WORDS[lang]
  if not legacy and lang in DETOKENIZED:
    s1, s2 = detokenize(s1).strip(), detokenize(s2).strip()
    s1 = s1[:-1] if s1.endswith((".", ",", ";")) else s1  # as lm-eval: no strip after
    s2 = s2[:1].lower() + s2[1:]
  words = (yes, no) if legacy else (no, yes)
  return [f"{s1}, {question}? {word}, {s2}" for word in words]


def _loader(legacy: bool):
  def load(lang: str, split: str) -> list[rank.Example]:
    registry.check_language(PAWS_X, lang)
    if "paws_x" in data.tfds_benchmarks():
      path = f"tfds:paws_x_wiki/{lang}/{split}"
      rows = [(i, {"sentence1": data.text(ex["sentence1"]), "sentence2": data.text(ex["sentence2"]),
                   "label": str(ex["label"])})
              for i, ex in enumerate(data.tfds_examples(f"paws_x_wiki/{lang}", split), start=1)]
    else:
      path = data.benchmark_path("paws_x", lang, f"{_FILE_SPLIT[split]}.tsv")
      rows = data.read_tsv(path, _FIELDS)
    examples = []
    for position, (line, row) in enumerate(rows):
      label = data.label_index(path, line, row["label"], ("0", "1"))
      if label is None:
        continue
      placeholder = PLACEHOLDER in (row["sentence1"].strip(), row["sentence2"].strip())
      examples.append(rank.multiple_choice(
          position, "", choices(lang, row["sentence1"], row["sentence2"], legacy), label,
          delimiter=" " if legacy else "", flag="NS placeholder" if placeholder else ""))
    return examples
  return load


PAWS_X = registry.Benchmark(
    name="paws_x", languages=tuple(WORDS), splits=("validation", "test"),
    default_split="test", load=_loader(legacy=False), binary=True)
PAWS_X_LEGACY = registry.Benchmark(
    name="paws_x_legacy", languages=tuple(WORDS), splits=("validation", "test"),
    default_split="test", load=_loader(legacy=True), binary=True)
registry.register_rank_benchmark(PAWS_X)
registry.register_rank_benchmark(PAWS_X_LEGACY)
