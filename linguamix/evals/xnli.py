"""XNLI (15 languages): entailment as whole-sentence rank classification.

Release files `xnli/xnli.{dev,test}.tsv` (one row per language and pair), or TFDS
`xnli` with `tfds_benchmarks.names = ["xnli"]`. Empty context;
the choices are the whole sentence `premise, QUESTION? WORD, hypothesis` for WORD in
(entailment, neutral, contradiction), lm-eval's template.
"""

from __future__ import annotations

from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry

# lang -> (QUESTION, entailment, neutral, contradiction), lm-eval's XNLI words (docs/evaluation.md).
WORDS = {
    "ar": ("صحيح", "نعم", "لذا", "رقم"),
    "bg": ("правилно", "да", "така", "не"),
    "de": ("richtig", "Ja", "Auch", "Nein"),
    "el": ("σωστός", "Ναί", "Έτσι", "όχι"),
    "en": ("right", "Yes", "Also", "No"),
    "es": ("correcto", "Sí", "Asi que", "No"),
    "fr": ("correct", "Oui", "Aussi", "Non"),
    "hi": ("सही", "हाँ", "इसलिए", "नहीं"),
    "ru": ("правильно", "Да", "Так", "Нет"),
    "sw": ("sahihi", "Ndiyo", "Hivyo", "Hapana"),
    "th": ("ถูกต้อง", "ใช่", "ดังนั้น", "ไม่"),
    "tr": ("doğru", "Evet", "Böylece", "Hayır"),
    "ur": ("صحیح", "جی ہاں", "اس لئے", "نہیں"),
    "vi": ("đúng", "Vâng", "Vì vậy", "Không"),
    "zh": ("正确", "是的", "所以", "不是的"),
}
LABELS = ("entailment", "neutral", "contradiction")
_FILE_SPLIT = {"validation": "dev", "test": "test"}
_FIELDS = ("language", "gold_label", "sentence1", "sentence2")


def choices(lang: str, premise: str, hypothesis: str) -> list[str]:
  question, *words = WORDS[lang]
  return [f"{premise}, {question}? {word}, {hypothesis}" for word in words]


def examples_from_rows(lang: str, rows, path: str) -> list[rank.Example]:
  """Examples of one language from (line, {language, gold_label, sentence1, sentence2})."""
  examples = []
  position = 0  # the pair's position among this language's rows: its stable id
  for line, row in rows:
    if row["language"] != lang:
      continue
    label = data.label_index(path, line, row["gold_label"], LABELS)
    if label is not None:
      examples.append(rank.multiple_choice(
          position, "", choices(lang, row["sentence1"], row["sentence2"]), label))
    position += 1
  return examples


def tfds_rows(lang: str, split: str):
  """TFDS `xnli` (one example per pair, 15 languages each) exploded to one language."""
  for position, ex in enumerate(data.tfds_examples("xnli", split)):
    languages = [data.text(l) for l in ex["hypothesis"]["language"]]
    if lang not in languages:
      data.report_bad_row(f"tfds:xnli/{split}", position, f"hypothesis lacks language {lang!r}")
      continue
    yield position, {"language": lang, "gold_label": LABELS[int(ex["label"])],
                     "sentence1": data.text(ex["premise"][lang]),
                     "sentence2": data.text(ex["hypothesis"]["translation"][languages.index(lang)])}


def load(lang: str, split: str) -> list[rank.Example]:
  registry.check_language(XNLI, lang)
  if "xnli" in data.tfds_benchmarks():
    path = f"tfds:xnli/{split}"
    examples = examples_from_rows(lang, tfds_rows(lang, split), path)
  else:
    path = data.benchmark_path("xnli", f"xnli.{_FILE_SPLIT[split]}.tsv")
    examples = examples_from_rows(lang, data.read_tsv(path, _FIELDS), path)
  if not examples:
    raise ValueError(f"{path} has no rows for language {lang!r}")
  return examples


XNLI = registry.Benchmark(
    name="xnli", languages=tuple(WORDS), splits=("validation", "test"),
    default_split="validation", load=load)
registry.register_rank_benchmark(XNLI)
