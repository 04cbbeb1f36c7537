"""`linguamix prepare benchmarks NAME...`: the eval sets, in the layouts linguamix/evals reads.

The copies relied on (each with its evidence in manifest.json). Parquet files are found
by pattern (`{lang}/*test*.parquet` matches both
`de/test-00000-of-00001.parquet` and the export's `de/test/0000.parquet`), in the
repository and then in its `refs/convert/parquet` export; a repository that has neither
fails naming the pattern.

| NAME | source | files used | written | conversion |
|---|---|---|---|---|
| xnli | facebook/xnli | `{lang}/*{validation,test}*.parquet` (premise, hypothesis, label 0-2) | `xnli/xnli.{dev,test}.tsv` | parquet -> the release TSV's columns language, gold_label, sentence1, sentence2 (15 languages, in table order; no pairID: the Hub copy has none) |
| paws_x | google-research-datasets/paws-x | `{lang}/*{validation,test}*.parquet` (id, sentence1, sentence2, label) | `paws_x/{lang}/{dev_2k,test_2k}.tsv` | parquet -> TSV |
| xstorycloze | juletxara/xstory_cloze (a script dataset) | main: the release TSVs `spring2016.val.{lang}.tsv.split_20_80_{train,eval}.tsv` its script reads; else the export's `{lang}/*{train,eval}*.parquet` | `xstory_cloze/{lang}/` the release name | none (parquet -> the release TSV's columns) |
| xwinograd | Muennighoff/xwinograd | `test/{en,fr,jp,pt,ru,zh}.jsonl` | `xwinograd/{code}/test.jsonl` | moved |
| belebele | facebook/belebele | `data/{variant}.jsonl` (or `{variant}.jsonl`, or parquet) | `belebele/{variant}.jsonl` | none (parquet -> JSONL) |
| xquad | google/xquad | `xquad.{lang}/*validation*.parquet` (id, context, question, answers) | `xquad/xquad.{lang}.json` | parquet -> SQuAD v1.1 JSON, questions grouped by context in order |
| flores | openlanguagedata/flores_plus (gated) | `{dev,devtest}/{code}.parquet` (text; sorted by id) under FLORES+'s relabelled codes (`ekk_Latn` for `est_Latn`, `cmn_Hans` for `zho_Hans`, ...) | `flores200/{dev,devtest}/{code}.{dev,devtest}`, FLORES-200 names | -> one sentence per line; FLORES+ is the maintained FLORES-200 (a few sentences corrected) |
| xcopa | the XCOPA release, bundled in linguamix (github.com/cambridgeltl/xcopa `data/`) | `{lang}/{val,test}.{lang}.jsonl` | `xcopa/...` | none, no download |
| mt_bench_x | the MT-Bench-X release, bundled in linguamix (github.com/Modalities/MT-Bench-X) | `data/mt_bench_{EN,DE,FR,IT,ES}/{question.jsonl,judge_prompts.jsonl,reference_answer/gpt-4.jsonl}` | `mt_bench_x/...` | none, no download |
| better_alpaca_test | github.com/hplt-project/monolingual-multilingual-instruction-tuning at a pinned commit | `test-data/test_{lang}.jsonl` (id, prompt) for bg bn cs en es fi fr hi no ru zh | `better_alpaca_test/test_{lang}.jsonl` | one known malformed line repaired (manifest `repairs`), a final newline added |
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Sequence

import json
import os

from linguamix.prepare import formats, jobs, manifest
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
  if len(local[0]) == 1 and where.endswith(".tsv"):
    return pathlib.Path(where).read_bytes()  # the release file itself
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

  def lang(rel):  # the language the file's folder names; None for top-level files
    for part in rel.parts[:-1]:
      code = part.lower().rsplit("_", 1)[-1]
      if code in langs:
        return code
    return None

  keep = lambda rel: len(rel.parts) == 1 or lang(rel) is not None
  return [jobs.Job(f"{folder}/{p.relative_to(base).as_posix()}", None, bundled=str(p),
                   lang=lang(p.relative_to(base)))
          for p in sorted(base.rglob("*")) if p.is_file() and keep(p.relative_to(base))]


def _xwinograd_jobs(langs):
  from linguamix.evals import xwinograd
  return [jobs.Job(f"xwinograd/{c}/test.jsonl", "Muennighoff/xwinograd", ((f"test/{c}.jsonl",),),
                   note=f"moved from test/{c}.jsonl", lang=l)
          for l, c in sorted(((l, xwinograd.RELEASE_CODES[l]) for l in langs), key=lambda x: x[1])]


def _registered(name):
  def langs():
    from linguamix.evals import registry
    import linguamix.evals  # noqa: F401  registers every benchmark
    return registry.BENCHMARKS[name].languages
  return langs


# FLORES+ relabelled some FLORES-200 codes (its changelog, 2.0-rc.1 and rc.2); the loader
# keeps the FLORES-200 names, so these are looked up under the new name, then the old.
FLORES_PLUS_RENAMED = {"est_Latn": "ekk_Latn", "zho_Hans": "cmn_Hans", "zho_Hant": "cmn_Hant",
                       "tgl_Latn": "fil_Latn", "grn_Latn": "gug_Latn", "kon_Latn": "ktu_Latn",
                       "tzm_Tfng": "zgh_Tfng"}


def _flores_jobs(pairs):
  from linguamix.evals import generation
  langs = sorted({l for p in pairs for l in p.split("_")})
  codes = {"en": "eng_Latn"} | {l: generation.FLORES_CODES[l][0] for l in langs if l != "en"}
  out = []
  for lang, code in sorted(codes.items(), key=lambda kv: kv[1]):
    names = (FLORES_PLUS_RENAMED[code], code) if code in FLORES_PLUS_RENAMED else (code,)
    for split in ("dev", "devtest"):
      alts = [p for c in names
              for p in (f"{split}/{c}.parquet", f"{split}/{c}.jsonl", f"{split}/*{c}*.parquet",
                        f"{c}/{split}/*.parquet", f"{c}/{split}-*.parquet")]
      note = "FLORES+ -> one sentence per line" + (
          f", FLORES+ names it {names[0]}" if len(names) > 1 else "")
      out.append(jobs.Job(f"flores200/{split}/{code}.{split}", "openlanguagedata/flores_plus",
                          (tuple(alts),), _flores, jobs.PARQUET, note=note, lang=lang))
  return out


BETTER_ALPACA_RAW = "https://raw.githubusercontent.com"


def _better_alpaca_langs():
  return tuple(manifest.entry("better_alpaca_test")["langs"])


def _better_alpaca(path_in_repo: str):
  """The prompts as JSONL, one per line; lines the manifest lists as known upstream
  defects are repaired (exactly those lines: anything else malformed is an error)."""
  repairs = {r["line"]: r for r in
             manifest.entry("better_alpaca_test").get("repairs", {}).get(path_in_repo, [])}
  def convert(local):
    (paths,) = local
    text = pathlib.Path(paths[0]).read_text(encoding="utf-8")
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
      if not line.strip():
        continue
      fix = repairs.get(i)
      if fix and line.endswith(fix["from"]):
        line = line[:-len(fix["from"])] + fix["to"]
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise PrepareError(f"{path_in_repo}:{i}: malformed JSON line ({e.msg})") from None
      for key in ("id", "prompt"):
        formats.field(row, key, f"{path_in_repo}:{i}")
      out.append(row)
    return formats.jsonl(out)
  return convert


def _better_alpaca_jobs(langs):
  src = manifest.entry("better_alpaca_test")["source"]
  base = os.environ.get("LINGUAMIX_GITHUB_RAW", BETTER_ALPACA_RAW).rstrip("/")
  out = []
  for l in langs:
    path = src["path"].format(lang=l)
    out.append(jobs.Job(f"better_alpaca_test/test_{l}.jsonl", None,
                        url=f"{base}/{src['github']}/{src['commit']}/{path}",
                        convert=_better_alpaca(path), lang=l,
                        note=f"{src['github']}@{src['commit'][:12]} {path}"))
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
                 "juletxara/xstory_cloze", ((f"spring2016.val.{l}.tsv.split_20_80_{s}.tsv",
                                             f"{l}/*{s}*.parquet"),), _xstorycloze,
                 jobs.PARQUET, lang=l)
        for l in langs for s in ("train", "eval")]),
    Benchmark("xwinograd", _registered("xwinograd"), _xwinograd_jobs),
    Benchmark("belebele", _registered("belebele"), lambda langs: [
        jobs.Job(f"belebele/{v}.jsonl", "facebook/belebele",
                 ((f"data/{v}.jsonl", f"{v}.jsonl", f"{v}/*test*.parquet"),), _jsonl, jobs.PARQUET,
                 lang=v)
        for v in langs]),
    Benchmark("xquad", _registered("xquad"), lambda langs: [
        jobs.Job(f"xquad/xquad.{l}.json", "google/xquad", ((f"xquad.{l}/*validation*.parquet",),),
                 _xquad(l), jobs.PARQUET, note="converted parquet -> SQuAD v1.1 JSON", lang=l)
        for l in langs]),
    Benchmark("flores", _registered("flores"), _flores_jobs),
    Benchmark("xcopa", _registered("xcopa"), lambda langs: _bundled("xcopa", langs)),
    Benchmark("mt_bench_x", _registered("mt_bench_x"), lambda langs: _bundled("mt_bench_x", langs)),
    Benchmark("better_alpaca_test", _better_alpaca_langs, _better_alpaca_jobs),
)}
