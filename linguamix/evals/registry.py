"""One helper registers a benchmark as per-language SeqIO tasks plus a family mixture.

`xnli.de`, `paws_x.fr`, `xcopa.sw`, ... and mixtures `xnli`, `paws_x`, `xcopa`. Each
task has the benchmark's release splits (`validation`, `test`) and `default`, the split
the field reports (docs/evaluation.md): XNLI validation, PAWS-X test, XCOPA test.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from linguamix.evals import rank
from linguamix.evals import requests
from linguamix.t5x_tasks import vocab

DEFAULT_SPLIT = "default"


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A rank-classification benchmark: languages, splits and an example loader."""
  name: str
  languages: tuple[str, ...]
  splits: tuple[str, ...]  # release splits offered, e.g. ("validation", "test")
  default_split: str
  load: Callable[[str, str], Sequence[rank.Example]]  # (lang, split) -> examples
  binary: bool = False  # two-way with a positive class: also report F1

  def task_name(self, lang: str) -> str:
    return f"{self.name}.{lang}"


# family name -> Benchmark (or generation.GenerationBenchmark), for language checks.
BENCHMARKS: dict = {}
# rank-classification task name -> (Benchmark, language): the tasks `batched` scores.
RANK_TASKS: dict[str, tuple[Benchmark, str]] = {}


def check_language(benchmark: Benchmark, lang: str) -> None:
  if lang not in benchmark.languages:
    raise ValueError(f"{benchmark.name} has no language {lang!r}; it has "
                     f"{', '.join(benchmark.languages)}")


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None, *,
                benchmark: Benchmark, lang: str) -> tf.data.Dataset:
  del shuffle_files, seed  # eval sets keep their release order
  release_split = benchmark.default_split if split == DEFAULT_SPLIT else split
  return rank.to_dataset(benchmark.load(lang, release_split))


def output_features() -> Mapping[str, seqio.Feature]:
  # The instruction tasks' deferred vocabulary: the model gin's VOCABULARY.
  # No EOS added by SeqIO: `rank.tokenize_pairs` applies the tokenizer's own template
  # as lm-eval does (mT5: EOS after the context), and scores no EOS.
  return {
      "inputs": seqio.Feature(vocab.VOCABULARY, add_eos=False, required=False),
      "targets": seqio.Feature(vocab.VOCABULARY, add_eos=False),
  }


def _rank_task(benchmark: Benchmark, lang: str, fmt: requests.Format) -> seqio.Task:
  return seqio.Task(
      benchmark.task_name(lang),
      source=seqio.FunctionDataSource(
          functools.partial(_dataset_fn, benchmark=benchmark, lang=lang),
          splits=benchmark.splits + (DEFAULT_SPLIT,)),
      preprocessors=[
          rank.rank_classification,
          functools.partial(rank.tokenize_pairs, fmt=fmt),
          rank.check_fits,
      ],
      output_features=output_features(),
      postprocess_fn=rank.rank_target,
      metric_fns=[rank.rank_accuracy] + ([rank.binary_f1] if benchmark.binary else []))


def rank_task(task_name: str, fmt: requests.Format) -> seqio.Task:
  """The rank-classification task `task_name` with its requests built for `fmt` (a
  model's kind and tokenizer: `requests.for_model`); the registered task builds them
  for `requests.Format()` (a causal model, the tokenizer's default specials)."""
  return _rank_task(*RANK_TASKS[task_name], fmt)


def register_rank_benchmark(benchmark: Benchmark) -> None:
  """Registers `{name}.{lang}` for every language and the `{name}` mixture."""
  BENCHMARKS[benchmark.name] = benchmark
  for lang in benchmark.languages:
    RANK_TASKS[benchmark.task_name(lang)] = (benchmark, lang)
    seqio.TaskRegistry.add_provider(benchmark.task_name(lang),
                                    _rank_task(benchmark, lang, requests.Format()))
  seqio.MixtureRegistry.add(
      benchmark.name, [benchmark.task_name(lang) for lang in benchmark.languages],
      default_rate=1.0)


def family_of(task_name: str) -> tuple[str, str]:
  """`xnli.de` -> ("xnli", "de")."""
  family, _, lang = task_name.partition(".")
  return family, lang
