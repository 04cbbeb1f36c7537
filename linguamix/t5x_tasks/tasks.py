"""Task families: one helper registers a dataset's per-language tasks (`bactrian_x.sw`).

Every task emits text `inputs` (the prompt) and `targets` (the response), tokenized
with the deferred vocabulary; mT5 reads them through EncDecFeatureConverter and
decoder models through DecoderFeatureConverter (prefix-LM, loss on targets only).
`inputs` carry no EOS, so inputs + targets is the template's byte-exact text for a
decoder; `targets` end with EOS (the `</s>` of the OpenGPT-X chat format).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import seqio

from linguamix.t5x_tasks import languages, langit, sources
from linguamix.t5x_tasks.vocab import VOCABULARY



def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  """Text `inputs` (no EOS) and `targets` (EOS) over `vocabulary`."""
  return {"inputs": seqio.Feature(vocabulary, add_eos=False),
          "targets": seqio.Feature(vocabulary, add_eos=True)}


OUTPUT_FEATURES = output_features(VOCABULARY)


@dataclasses.dataclass(frozen=True)
class Family:
  """A dataset: its languages, file layout under the data root, shape and template."""
  name: str
  langs: tuple[str, ...]
  train_pattern: str
  validation_pattern: Optional[str] = None
  fields: object = "alpaca"
  template: str = "alpaca"
  validation_fraction: float = 0.01
  description: str = ""
  thread: bool = False  # oasst1: the whole rank-0 thread as one multi-turn example

  def source(self, lang: str) -> sources.RecordSource:
    if lang not in self.langs:
      raise ValueError(f"task family {self.name!r} has no language {lang!r}; "
                       f"it has {' '.join(self.langs)}")
    return sources.RecordSource(self.name, lang, self.train_pattern,
                                self.validation_pattern, self.fields, self.template,
                                self.validation_fraction, self.thread)


FAMILIES: dict[str, Family] = {}


# Every preprocessor `_preprocessors` uses is a function of one example (and
# sequence_length), with no randomness: a stream may preprocess a row once and reuse it
# every epoch (linguamix.mixtures.stream).
PER_ROW_PREPROCESSORS = (langit.langit_fit, seqio.preprocessors.tokenize,
                         seqio.preprocessors.append_eos_after_trim)


def is_per_row(preprocessor) -> bool:
  if isinstance(preprocessor, functools.partial):  # langit_fit with its config
    preprocessor = preprocessor.func
  return (isinstance(preprocessor, seqio.CacheDatasetPlaceholder)
          or preprocessor in PER_ROW_PREPROCESSORS)


def _preprocessors(use_langit: bool, langit_config: Optional[langit.LangitConfig]):
  pre = [functools.partial(langit.langit_fit, config=langit_config)] if use_langit else []
  pre.append(seqio.preprocessors.tokenize)
  if not use_langit:  # LANGIT depends on sequence_length: it cannot be cached
    pre.append(seqio.CacheDatasetPlaceholder())
  pre.append(seqio.preprocessors.append_eos_after_trim)
  return pre


def add_task(name: str, source: sources.RecordSource, selector=None,
             use_langit: bool = False,
             vocabulary: Optional[seqio.Vocabulary] = None,
             langit_config: Optional[langit.LangitConfig] = None) -> seqio.Task:
  """Registers (or replaces) one task over a RecordSource. `vocabulary`: None is the
  model gin's (`VOCABULARY`, resolved when the task is used); `langit_config` likewise
  (gin's `LangitConfig` when the data is made)."""
  seqio.TaskRegistry.remove(name)
  features = OUTPUT_FEATURES if vocabulary is None else output_features(vocabulary)
  return seqio.TaskRegistry.add(
      name, source=sources.InstructionSource(source, selector, use_langit, langit_config),
      preprocessors=_preprocessors(use_langit, langit_config), output_features=features,
      metric_fns=[])


def register_family(family: Family, *, use_langit: bool = False,
                    suffix: str = "") -> list[str]:
  """Registers `{family}{suffix}.{lang}` for each language; returns the names."""
  FAMILIES[family.name + suffix] = family
  names = []
  for lang in family.langs:
    name = f"{family.name}{suffix}.{lang}"
    add_task(name, family.source(lang), use_langit=use_langit)
    names.append(name)
  return names


def register_instruction_task(name: str, path_pattern: str, lang: str, fields="alpaca",
                              *, template: str = "alpaca",
                              validation_pattern: Optional[str] = None,
                              validation_fraction: float = 0.01,
                              use_langit: bool = False,
                              langit_config: Optional[langit.LangitConfig] = None) -> seqio.Task:
  """Registers any JSON / JSONL / json.gz file(s) in a known shape as a task.

  `path_pattern`: a path or glob, absolute, gs://, or relative to the data root.
  `fields`: a shape (`alpaca` = Bactrian-X too, `orca` = sPhinX / augmentation output
  with `lang`, `lima`, `aya`, `oasst1`) or a mapping {canonical: source_key} with
  canonical keys instruction, output (required), input, system, id, lang.
  `langit_config`: LANGIT's settings (None: gin's `LangitConfig` when the data is made).
  """
  languages.iso639_3(lang)  # unknown code -> KeyError naming it
  from linguamix.t5x_tasks import readers
  readers.resolve_shape(fields)
  family = name.rsplit(".", 1)[0]
  source = sources.RecordSource(family, lang, path_pattern, validation_pattern, fields,
                                template, validation_fraction)
  return add_task(name, source, use_langit=use_langit, langit_config=langit_config)


def task_source(task_name: str) -> sources.InstructionSource:
  return seqio.get_mixture_or_task(task_name).source


BUILTIN = (
    Family("bactrian_x", languages.BACTRIAN_X, "bactrian_x/{lang}.json.gz",
           template="bactrian", description="Bactrian-X (MBZUAI), 52 languages, parallel"),
    Family("alpaca_x", languages.ALPACA_X, "alpaca_x/alpaca_data_cleaned.{lang}.json",
           template="alpaca", description="multilingual Alpaca-cleaned (Chen et al.)"),
    Family("lima_x", languages.OPENGPTX, "lima_x/train_limax_{LANG}.jsonl",
           "lima_x/val_limax_{LANG}.jsonl", fields="lima", template="opengptx_chat",
           description="LIMA-X (OpenGPT-X)"),
    Family("oasst1", languages.OASST1, "oasst1/2023-04-12_oasst_ready.messages.jsonl.gz",
           fields="oasst1", template="bactrian",
           description="OpenAssistant oasst1, root prompt + rank-0 reply"),
    Family("oasst1_thread", languages.OASST1,
           "oasst1/2023-04-12_oasst_ready.messages.jsonl.gz", fields="oasst1",
           template="opengptx_chat", thread=True,
           description="OpenAssistant oasst1, the whole rank-0 thread (multi-turn chat)"),
    Family("aya", languages.AYA, "aya/train.jsonl", fields="aya", template="bactrian",
           description="Aya dataset (jsonl export), filtered by language_code"),
    Family("sphinx", languages.SPHINX, "sphinx/{lang}.jsonl", fields="orca",
           template="opengptx_chat", description="sPhinX / Orca shape + lang"),
)


@functools.lru_cache(maxsize=None)
def register_builtin() -> None:
  for family in BUILTIN:
    register_family(family)
  # sPhinX's LANGIT variant: each example prefixed with same-language exemplars.
  register_family(FAMILIES["sphinx"], use_langit=True, suffix="_langit")
