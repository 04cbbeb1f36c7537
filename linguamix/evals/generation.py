"""Generation benchmarks as SeqIO tasks: XQuAD (SQuAD EM/F1) and FLORES (chrF, BLEU).

Each example is one (inputs, targets) pair; the model's `predict_batch` generates, SeqIO
decodes up to EOS, and the metric compares the stripped prediction with every reference
(kept as JSON in the `references` feature). Prompts are ours (the studies name the
benchmarks and metrics only; docs/evaluation.md); they are plain English instructions, shown below.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import re
import string
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sacrebleu
import seqio
import tensorflow as tf

from linguamix.evals import data
from linguamix.evals import registry
from linguamix.t5x_tasks import vocab


@dataclasses.dataclass(frozen=True)
class Request:
  idx: int
  inputs: str
  references: tuple[str, ...]  # the first is the training-style target


@dataclasses.dataclass(frozen=True)
class GenerationBenchmark:
  name: str
  languages: tuple[str, ...]
  splits: tuple[str, ...]
  default_split: str
  load: Callable[[str, str], Sequence[Request]]
  metric_fns: Callable[[str], Sequence[Callable]]  # lang -> metric fns
  # Multi-turn benchmarks (MT-Bench-X): (lang, split, {idx: the model's answers so far})
  # -> the next turn's requests (same idx), empty after the last turn. Turn t > 1 is
  # evaluated as the task `{name}_turn{t}.{lang}` (`follow_up_task`).
  next_turn: Callable[[str, str, Mapping[int, Sequence[str]]], Sequence[Request]] | None = None
  # Writes the finished conversations: (lang, split, {idx: answers}, output_dir, model_id) -> path.
  save_answers: Callable[[str, str, Mapping[int, Sequence[str]], str, str], str] | None = None


def release_split(benchmark: GenerationBenchmark, split: str) -> str:
  return benchmark.default_split if split == registry.DEFAULT_SPLIT else split


def _dataset_fn(split, shuffle_files, seed=None, *, benchmark, lang):
  del shuffle_files, seed
  return _to_dataset(f"{benchmark.name}.{lang}", benchmark.load(lang, release_split(benchmark, split)))


def _requests_dataset_fn(split, shuffle_files, seed=None, *, name, requests):
  del split, shuffle_files, seed
  return _to_dataset(name, requests)


def _to_dataset(name: str, requests: Sequence[Request]) -> tf.data.Dataset:
  if not requests:
    raise ValueError(f"{name}: no examples")
  return tf.data.Dataset.from_tensor_slices({
      "idx": np.array([r.idx for r in requests], np.int64),
      "inputs": np.array([r.inputs for r in requests], object),
      "targets": np.array([r.references[0] for r in requests], object),
      "references": np.array([json.dumps(r.references, ensure_ascii=False) for r in requests], object),
  })


def generation_target(text: str, example: Mapping[str, Any] | None = None,
                      is_target: bool = False) -> Any:
  """Targets become the list of references; predictions are stripped."""
  if is_target:
    refs = example["references"]
    return json.loads(refs.decode("utf-8") if isinstance(refs, bytes) else refs)
  return text.strip()


def _add_task(name: str, dataset_fn: Callable, splits: Sequence[str],
              metric_fns: Sequence[Callable]) -> None:
  features = {
      # No EOS after the prompt (a decoder-only model continues it); targets end in EOS.
      "inputs": seqio.Feature(vocab.VOCABULARY, add_eos=False),
      "targets": seqio.Feature(vocab.VOCABULARY, add_eos=True),
  }
  seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=tuple(splits)),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features=features, postprocess_fn=generation_target, metric_fns=metric_fns)


def register_generation_benchmark(benchmark: GenerationBenchmark) -> None:
  registry.BENCHMARKS[benchmark.name] = benchmark
  for lang in benchmark.languages:
    _add_task(f"{benchmark.name}.{lang}",
              functools.partial(_dataset_fn, benchmark=benchmark, lang=lang),
              benchmark.splits + (registry.DEFAULT_SPLIT,), benchmark.metric_fns(lang))
  seqio.MixtureRegistry.add(benchmark.name, [f"{benchmark.name}.{l}" for l in benchmark.languages],
                            default_rate=1.0)


def follow_up_task(benchmark: GenerationBenchmark, lang: str, turn: int,
                   requests: Sequence[Request]) -> str:
  """Registers (or replaces) `{name}_turn{turn}.{lang}`, a task of exactly `requests` (the
  turn's prompts, built from the model's earlier answers), scored like the first turn."""
  name = f"{benchmark.name}_turn{turn}.{lang}"
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  _add_task(name, functools.partial(_requests_dataset_fn, name=name, requests=tuple(requests)),
            benchmark.splits + (registry.DEFAULT_SPLIT,), benchmark.metric_fns(lang))
  return name


# --- metrics -------------------------------------------------------------------------------

def _normalize_answer(text: str) -> list[str]:
  """SQuAD's normalisation: lower case, no punctuation, no English articles, tokens."""
  text = "".join(c for c in text.lower() if c not in set(string.punctuation))
  return re.sub(r"\b(a|an|the)\b", " ", text).split()


def _f1(prediction: list[str], reference: list[str]) -> float:
  common = sum((collections.Counter(prediction) & collections.Counter(reference)).values())
  if common == 0:
    return float(prediction == reference)
  precision, recall = common / len(prediction), common / len(reference)
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """Exact match and token F1, best over each question's references, in percent."""
  em, f1 = [], []
  for refs, pred in zip(targets, predictions):
    p = _normalize_answer(pred)
    em.append(max(float(p == _normalize_answer(r)) for r in refs))
    f1.append(max(_f1(p, _normalize_answer(r)) for r in refs))
  return {"em": 100 * float(np.mean(em)), "f1": 100 * float(np.mean(f1)),
          "num_examples": float(len(em))}


def translation(targets: Sequence[Sequence[str]], predictions: Sequence[str], *,
                bleu_tokenize: str = "13a") -> dict[str, float]:
  """sacrebleu corpus chrF and BLEU (one reference per sentence)."""
  refs = [[t[0] for t in targets]]
  return {"bleu": sacrebleu.corpus_bleu(list(predictions), refs, tokenize=bleu_tokenize).score,
          "chrf": sacrebleu.corpus_chrf(list(predictions), refs).score,
          "num_examples": float(len(predictions))}


# --- XQuAD ---------------------------------------------------------------------------------

XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
XQUAD_PROMPT = "Context: {context}\n\nQuestion: {question}\n\nAnswer:"


def load_xquad(lang: str, split: str) -> list[Request]:
  """Release file `xquad/xquad.{lang}.json` (SQuAD v1.1 JSON), or TFDS `xquad/{lang}`
  (`tfds_benchmarks.names = ["xquad"]`); XQuAD has only a test set."""
  del split
  registry.check_language(XQUAD, lang)
  if "xquad" in data.tfds_benchmarks():
    return [Request(i, XQUAD_PROMPT.format(context=data.text(ex["context"]),
                                          question=data.text(ex["question"])),
                    tuple(data.text(t) for t in ex["answers"]["text"]))
            for i, ex in enumerate(data.tfds_examples(f"xquad/{lang}", "test"))]
  path = data.benchmark_path("xquad", f"xquad.{lang}.json")
  try:
    articles = json.loads(data.read_text(path))["data"]
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise data.MalformedRowError(f"{path}: not SQuAD v1.1 JSON ({e})") from e
  requests = []
  for a, article in enumerate(articles):
    for p, paragraph in enumerate(article.get("paragraphs", [])):
      for q, qa in enumerate(paragraph.get("qas", [])):
        answers = tuple(ans.get("text", "") for ans in qa.get("answers", []) if ans.get("text"))
        if not answers or not qa.get("question"):
          data.report_bad_row(path, 0, f"data[{a}].paragraphs[{p}].qas[{q}] has no question or answers")
          continue
        requests.append(Request(len(requests), XQUAD_PROMPT.format(
            context=paragraph["context"], question=qa["question"]), answers))
  return requests


XQUAD = GenerationBenchmark("xquad", XQUAD_LANGUAGES, ("test",), "test", load_xquad,
                            lambda lang: [squad])


# --- FLORES-200 ----------------------------------------------------------------------------

# ISO 639-1 -> (FLORES-200 code, English name): the languages of the studies' recipes.
FLORES_CODES = {
    "ar": ("arb_Arab", "Arabic"), "bg": ("bul_Cyrl", "Bulgarian"), "cs": ("ces_Latn", "Czech"),
    "de": ("deu_Latn", "German"), "es": ("spa_Latn", "Spanish"), "et": ("est_Latn", "Estonian"),
    "fi": ("fin_Latn", "Finnish"), "fr": ("fra_Latn", "French"), "he": ("heb_Hebr", "Hebrew"),
    "hi": ("hin_Deva", "Hindi"), "it": ("ita_Latn", "Italian"), "ru": ("rus_Cyrl", "Russian"),
    "sw": ("swh_Latn", "Swahili"), "zh": ("zho_Hans", "Chinese"),
}
FLORES_PROMPT = "Translate the following text from {src} to {tgt}.\n{src}: {text}\n{tgt}:"
_FLORES_SPLIT = {"validation": "dev", "test": "devtest"}
FLORES_PAIRS = tuple(p for lang in FLORES_CODES for p in (f"en_{lang}", f"{lang}_en"))


def _flores_lines(lang: str, split: str) -> list[str]:
  code = "eng_Latn" if lang == "en" else FLORES_CODES[lang][0]
  file_split = _FLORES_SPLIT[split]
  path = data.benchmark_path("flores200", file_split, f"{code}.{file_split}")
  lines = data.read_text(path).split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  for i, line in enumerate(lines, start=1):
    if not line.strip():
      # FLORES files are line-parallel: a skipped line would misalign every later one.
      raise data.MalformedRowError(f"{path}:{i}: empty sentence")
  return lines


def load_flores(pair: str, split: str) -> list[Request]:
  registry.check_language(FLORES, pair)
  src, tgt = pair.split("_")
  sources, references = _flores_lines(src, split), _flores_lines(tgt, split)
  if len(sources) != len(references):
    raise data.MalformedRowError(f"flores {split} {src}: {len(sources)} lines but {tgt}: "
                                 f"{len(references)}; the files must be line-parallel")
  name = {"en": "English", **{k: v[1] for k, v in FLORES_CODES.items()}}
  return [Request(i, FLORES_PROMPT.format(src=name[src], tgt=name[tgt], text=s), (r,))
          for i, (s, r) in enumerate(zip(sources, references))]


FLORES = GenerationBenchmark(
    "flores", FLORES_PAIRS, ("validation", "test"), "test", load_flores,
    lambda pair: [functools.partial(translation, bleu_tokenize="zh" if pair.endswith("_zh") else "13a")])

register_generation_benchmark(XQUAD)
register_generation_benchmark(FLORES)
