"""Data sources: files of one language -> templated (inputs, targets) examples.

`RecordSource` reads a language's files under the data root (resolved at read time)
and splits them: train and validation from the source's own files, or a
deterministic hold-out by id hash where the source has no validation split (the
same ids are held out in every language, so parallel recipes never train on a
translation of a validation item). `InstructionSource` is the SeqIO DataSource
on top: an optional id selection (the recipes' exact subsets), the template, the
LANGIT exemplar draw (from the same language's training selection only), and sharding
by `seqio.ShardInfo`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import seqio
import tensorflow as tf

from linguamix.t5x_tasks import langit, readers, root, templates

SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class RecordSource:
  """One language of a dataset: files, record shape, split rule and template."""
  family: str
  lang: str
  train_pattern: str                  # relative to the data root (or absolute / gs://)
  validation_pattern: Optional[str] = None
  fields: object = "alpaca"           # a readers.SHAPES name or {canonical: source_key}
  template: str = "alpaca"
  validation_fraction: float = 0.01   # hold-out share when there is no validation file
  thread: bool = False                # oasst1: whole rank-0 thread as one example
  empty_output: str = "keep"          # records with an empty output: keep | drop | error

  def _paths(self, pattern: str) -> list[str]:
    path = root.join(pattern.format(lang=self.lang, LANG=self.lang.upper()))
    if any(c in path for c in "*?["):
      found = sorted(tf.io.gfile.glob(path))
      if not found:
        raise readers.DataError(f"{path}: no file matches (task {self.family}.{self.lang})")
      return found
    return [path]

  def _read(self, pattern: str, id_prefix: str) -> tuple[dict, ...]:
    out = []
    for path in self._paths(pattern):
      out += readers.read_records(path, self.fields, self.lang, id_prefix=id_prefix,
                                  thread=self.thread, empty_output=self.empty_output)
    return tuple(out)

  def records(self, split: str) -> tuple[dict, ...]:
    """Records of `train`, `validation` or `all` (train + validation)."""
    if split not in SPLITS + ("all",):
      raise ValueError(f"task {self.family}.{self.lang}: unknown split {split!r}; "
                       f"known: {SPLITS + ('all',)}")
    if self.validation_pattern:
      train = self._read(self.train_pattern, "train-")
      val = self._read(self.validation_pattern, "val-")
      return {"train": train, "validation": val, "all": train + val}[split]
    recs = self._read(self.train_pattern, f"{self.family}-")
    if split == "all":
      return recs
    held = lambda r: readers.id_fraction(r["id"]) < self.validation_fraction
    return tuple(r for r in recs if held(r) == (split == "validation"))

  def render(self, rec) -> tuple[str, str]:
    return templates.family_template(self.family, self.template)(rec)


# (split) -> ordered ids to emit, or None for all records of the split.
Selector = Callable[[str], Optional[Sequence[str]]]


class InstructionSource(seqio.DataSource):
  """SeqIO DataSource over a RecordSource, with an optional id selection and LANGIT
  (`langit_config`: None is gin's when the data is made, `langit.resolved`)."""

  def __init__(self, source: RecordSource, selector: Optional[Selector] = None,
               use_langit: bool = False,
               langit_config: Optional[langit.LangitConfig] = None):
    super().__init__(splits=SPLITS)
    self.source, self.selector, self.use_langit = source, selector, use_langit
    self.langit_config = langit_config

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [self.source.train_pattern]

  def examples(self, split: str) -> list[dict]:
    """The selected records of a split, in order (before templating)."""
    ids = self.selector(split) if self.selector else None
    if ids is None:
      return list(self.source.records(split))
    # Recipes may redraw train/validation from the whole pool (linguistically-informed).
    by_id = {r["id"]: r for r in self.source.records("all")}
    missing = [i for i in ids if i not in by_id]
    if missing:
      raise readers.DataError(
          f"task {self.source.family}.{self.source.lang} ({split}): {len(missing)} selected "
          f"id(s) not in the data, e.g. {missing[:3]}")
    return [by_id[i] for i in ids]

  def num_input_examples(self, split: str) -> int:
    return len(self.examples(split))

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed=None,
                  shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                  use_cached=False, num_epochs=1) -> tf.data.Dataset:
    # Order is fixed by the selection; the Task shuffles with its seed afterwards.
    cols = self.columns(split, shard_info)
    if not cols["id"]:
      return tf.data.Dataset.from_generator(lambda: iter(()), output_signature=self.specs())
    return tf.data.Dataset.from_tensor_slices(cols)

  def specs(self) -> dict:
    specs = {k: tf.TensorSpec([], tf.string) for k in ("id", "lang", "inputs", "targets")}
    if self.use_langit:
      specs.update(langit_n=tf.TensorSpec([], tf.int32),
                   langit_inputs=tf.TensorSpec([None], tf.string),
                   langit_targets=tf.TensorSpec([None], tf.string))
    return specs

  def columns(self, split: str, shard_info: Optional[seqio.ShardInfo] = None) -> dict:
    """The split's selected examples, templated, as columns (+ LANGIT exemplars)."""
    recs = self.examples(split)
    if shard_info:
      recs = recs[shard_info.index::shard_info.num_shards]
    cols = {"id": [], "lang": [], "inputs": [], "targets": []}
    for r in recs:
      inputs, targets = self.source.render(r)
      cols["id"].append(r["id"])
      cols["lang"].append(r["lang"])
      cols["inputs"].append(inputs)
      cols["targets"].append(targets)
    if self.use_langit:
      cols.update(self._langit_columns(recs, langit.resolved(self.langit_config)))
    return cols

  def langit_pool(self) -> list[dict]:
    """Where exemplars come from: this language's training selection (the recipe's own
    subset; the whole train split for an unselected task) -- never validation."""
    return self.examples("train")

  def langit_exemplars(self, recs: Sequence[dict],
                       cfg: Optional[langit.LangitConfig] = None) -> list[list[dict]]:
    """The drawn exemplar records of each of `recs` (never the record itself)."""
    cfg = langit.resolved(cfg if cfg is not None else self.langit_config)
    pool = self.langit_pool()
    index = {r["id"]: i for i, r in enumerate(pool)}
    return [[pool[p] for p in langit.draw_exemplars(r["id"], r["lang"], len(pool),
                                                    index.get(r["id"]), cfg)] for r in recs]

  def _langit_columns(self, recs, cfg: langit.LangitConfig):
    rendered = {}
    shots_in, shots_tg, ns = [], [], []
    for shots in self.langit_exemplars(recs, cfg):
      pairs = []
      for ex in shots:
        if ex["id"] not in rendered:
          rendered[ex["id"]] = self.source.render(ex)
        pairs.append(rendered[ex["id"]])
      pad = cfg.max_shots - len(pairs)
      shots_in.append([a for a, _ in pairs] + [""] * pad)
      shots_tg.append([b for _, b in pairs] + [""] * pad)
      ns.append(len(pairs))
    return {"langit_n": ns, "langit_inputs": shots_in, "langit_targets": shots_tg}
