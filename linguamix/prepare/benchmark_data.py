"""`linguamix prepare benchmarks NAME...`: the eval sets, in the layouts linguamix/evals reads.

The Hub copies relied on (looked up on the dataset pages and in the harnesses that read
them, 2026). Parquet files are found by pattern (`{lang}/*test*.parquet` matches both
`de/test-00000-of-00001.parquet` and the export's `de/test/0000.parquet`), in the
repository and then in its `refs/convert/parquet` export; a repository that has neither
fails naming the pattern.

| NAME | source | files used | written | conversion |
|---|---|---|---|---|
| xnli | facebook/xnli | `{lang}/*{validation,test}*.parquet` (premise, hypothesis, label 0-2) | `xnli/xnli.{dev,test}.tsv` | parquet -> the release TSV's columns language, gold_label, sentence1, sentence2 (15 languages, in table order; no pairID: the Hub copy has none) |
| paws_x | google-research-datasets/paws-x | `{lang}/*{validation,test}*.parquet` (id, sentence1, sentence2, label) | `paws_x/{lang}/{dev_2k,test_2k}.tsv` | parquet -> TSV |
| xstorycloze | juletxara/xstory_cloze | `{lang}/*{train,eval}*.parquet` (story_id, input_sentence_1-4, sentence_quiz1-2, answer_right_ending) | `xstory_cloze/{lang}/spring2016.val.{lang}.tsv.split_20_80_{train,eval}.tsv` | parquet -> the release TSV's column names |
| xwinograd | Muennighoff/xwinograd | `test/{en,fr,jp,pt,ru,zh}.jsonl` | `xwinograd/{code}/test.jsonl` | moved |
| belebele | facebook/belebele | `data/{variant}.jsonl` (or `{variant}.jsonl`, or parquet) | `belebele/{variant}.jsonl` | none (parquet -> JSONL) |
| xquad | google/xquad | `xquad.{lang}/*validation*.parquet` (id, context, question, answers) | `xquad/xquad.{lang}.json` | parquet -> SQuAD v1.1 JSON, questions grouped by context in order |
| flores | openlanguagedata/flores_plus (gated) | `{dev,devtest}/{code}.{jsonl,parquet}` (text; sorted by id), zho_Hans as `cmn_Hans` | `flores200/{dev,devtest}/{code}.{dev,devtest}` | -> one sentence per line; FLORES+ is the maintained FLORES-200 (a few sentences corrected) |
| xcopa | the XCOPA release, bundled in linguamix (github.com/cambridgeltl/xcopa `data/`) | `{lang}/{val,test}.{lang}.jsonl` | `xcopa/...` | none, no download |
| mt_bench_x | the MT-Bench-X release, bundled in linguamix (github.com/Modalities/MT-Bench-X) | `data/mt_bench_{EN,DE,FR,IT,ES}/{question.jsonl,judge_prompts.jsonl,reference_answer/gpt-4.jsonl}` | `mt_bench_x/...` | none, no download |
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Sequence

from linguamix.prepare import formats, jobs
from linguamix.prepare.hub import PrepareError

BUNDLED = pathlib.Path(__file__).resolve().parents[1] / "evals" / "bundled"


def _rows(local) -> list[dict]:
  return [r for paths in local for p in paths for r in formats.read_rows(p)]


def _xnli(langs: Sequence[str]):
  labels = ("entailment", "neutral", "contradiction")
  def convert(local):
    out = []
    for lang, paths in zip(langs, local):
      for i, r in enumerate(r for p in paths for r in formats.read_rows(p)):
        where = f"{paths[0]} row {i}"
        label = formats.field(r, "label", where)
        if label not in (0, 1, 2):
          raise PrepareError(f"{where}: label {label!r} is not 0, 1 or 2 (entailment, "
                             "neutral, contradiction)")
        out.append((lang, labels[label], formats.field(r, "premise", where),
                    formats.field(r, "hypothesis", where)))
    return formats.tsv(("language", "gold_label", "sentence1", "sentence2"), out, "xnli")
  return convert


def _paws_x(local):
  where = local[0][0]
  return formats.tsv(("id", "sentence1", "sentence2", "label"),
                     [[r.get("id", i)] + [formats.field(r, k, where) for k in
                                          ("sentence1", "sentence2", "label")]
                      for i, r in enumerate(_rows(local))], where)


_STORY = ("InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
          "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding")
_STORY_HUB = ("story_id", "input_sentence_1", "input_sentence_2", "input_sentence_3",
              "input_sentence_4", "sentence_quiz1", "sentence_quiz2", "answer_right_ending")


def _xstorycloze(local):
  where = local[0][0]
  return formats.tsv(_STORY, [[formats.field(r, k, where) for k in _STORY_HUB]
                              for r in _rows(local)], where)


def _jsonl(local):
  (paths,) = local
  if len(paths) == 1 and paths[0].endswith(".jsonl"):
    return pathlib.Path(paths[0]).read_bytes()
  return formats.jsonl(_rows(local))


def _xquad(lang):
  return lambda local: formats.squad(_rows(local), local[0][0], f"xquad.{lang}")


def _flores(local):
  rows = _rows(local)
  if rows and "id" in rows[0]:
    rows = sorted(rows, key=lambda r: int(r["id"]))  # line-parallel across languages by id
  return formats.lines([formats.field(r, "text", local[0][0]) for r in rows], local[0][0])


@dataclasses.dataclass(frozen=True)
class Benchmark:
  name: str                    # = linguamix.evals.registry.BENCHMARKS key
  langs: Callable[[], tuple]   # the registered languages (imported when used)
  jobs: Callable[[Sequence[str]], list[jobs.Job]]


def _bundled(folder: str, langs: Sequence[str]) -> list[jobs.Job]:
  """The package's copy: the top-level files (licences) and the languages' folders, named
  by the language (`xcopa/it/`) or ending in it (`mt_bench_x/data/mt_bench_IT/`)."""
  base = BUNDLED / folder
  keep = lambda rel: len(rel.parts) == 1 or any(
      part.lower().rsplit("_", 1)[-1] in langs for part in rel.parts[:-1])
  return [jobs.Job(f"{folder}/{p.relative_to(base).as_posix()}", None, bundled=str(p))
          for p in sorted(base.rglob("*")) if p.is_file() and keep(p.relative_to(base))]


def _xwinograd_jobs(langs):
  from linguamix.evals import xwinograd
  return [jobs.Job(f"xwinograd/{c}/test.jsonl", "Muennighoff/xwinograd", ((f"test/{c}.jsonl",),),
                   note=f"moved from test/{c}.jsonl")
          for c in sorted(xwinograd.RELEASE_CODES[l] for l in langs)]


def _registered(name):
  def langs():
    from linguamix.evals import registry
    import linguamix.evals  # noqa: F401  registers every benchmark
    return registry.BENCHMARKS[name].languages
  return langs


def _flores_jobs(pairs):
  from linguamix.evals import generation
  langs = sorted({l for p in pairs for l in p.split("_")})
  codes = {"eng_Latn"} | {generation.FLORES_CODES[l][0] for l in langs if l != "en"}
  aliases = {"zho_Hans": ("cmn_Hans",)}  # FLORES+ names Mandarin by its ISO 639-3 code
  out = []
  for code in sorted(codes):
    for split in ("dev", "devtest"):
      alts = [p for c in (code,) + aliases.get(code, ())
              for p in (f"{split}/{c}.jsonl", f"{split}/{c}.parquet", f"{split}/*{c}*.parquet",
                        f"{c}/{split}/*.parquet", f"{c}/{split}-*.parquet")]
      out.append(jobs.Job(f"flores200/{split}/{code}.{split}", "openlanguagedata/flores_plus",
                          (tuple(alts),), _flores, jobs.PARQUET,
                          note="FLORES+ -> one sentence per line"))
  return out


BENCHMARKS = {b.name: b for b in (
    Benchmark("xnli", _registered("xnli"), lambda langs: [
        jobs.Job(f"xnli/xnli.{out}.tsv", "facebook/xnli",
                 tuple((f"{l}/*{hub_split}*.parquet",) for l in langs), _xnli(langs),
                 jobs.PARQUET, note="converted parquet -> TSV")
        for out, hub_split in (("dev", "validation"), ("test", "test"))]),
    Benchmark("paws_x", _registered("paws_x"), lambda langs: [
        jobs.Job(f"paws_x/{l}/{out}.tsv", "google-research-datasets/paws-x",
                 ((f"{l}/*{hub_split}*.parquet",),), _paws_x, jobs.PARQUET,
                 note="converted parquet -> TSV")
        for l in langs for out, hub_split in (("dev_2k", "validation"), ("test_2k", "test"))]),
    Benchmark("xstorycloze", _registered("xstorycloze"), lambda langs: [
        jobs.Job(f"xstory_cloze/{l}/spring2016.val.{l}.tsv.split_20_80_{s}.tsv",
                 "juletxara/xstory_cloze", ((f"{l}/*{s}*.parquet",),), _xstorycloze,
                 jobs.PARQUET, note="converted parquet -> TSV")
        for l in langs for s in ("train", "eval")]),
    Benchmark("xwinograd", _registered("xwinograd"), _xwinograd_jobs),
    Benchmark("belebele", _registered("belebele"), lambda langs: [
        jobs.Job(f"belebele/{v}.jsonl", "facebook/belebele",
                 ((f"data/{v}.jsonl", f"{v}.jsonl", f"{v}/*test*.parquet"),), _jsonl, jobs.PARQUET)
        for v in langs]),
    Benchmark("xquad", _registered("xquad"), lambda langs: [
        jobs.Job(f"xquad/xquad.{l}.json", "google/xquad", ((f"xquad.{l}/*validation*.parquet",),),
                 _xquad(l), jobs.PARQUET, note="converted parquet -> SQuAD v1.1 JSON")
        for l in langs]),
    Benchmark("flores", _registered("flores"), _flores_jobs),
    Benchmark("xcopa", _registered("xcopa"), lambda langs: _bundled("xcopa", langs)),
    Benchmark("mt_bench_x", _registered("mt_bench_x"), lambda langs: _bundled("mt_bench_x", langs)),
)}
