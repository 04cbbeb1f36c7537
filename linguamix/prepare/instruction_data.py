"""`linguamix prepare data NAME`: the studies' instruction sets from the Hub.

The Hub layouts relied on (each with its evidence in manifest.json); a repository that
differs fails naming the file it lacks:

| NAME | Hub dataset | file(s) in the repository | written under the root | format change |
|---|---|---|---|---|
| bactrian_x | MBZUAI/Bactrian-X | `data/{lang}.json.gz` (earlier `{lang}.json.gz`) | `bactrian_x/{lang}.json.gz` | none |
| alpaca_x | pinzhenchen/alpaca-cleaned-{lang}; en: yahma/alpaca-cleaned | `alpaca_data_cleaned.{lang}.json`; en `alpaca_data_cleaned.json` | `alpaca_x/alpaca_data_cleaned.{lang}.json` | none (en renamed) |
| lima_x | lamarr-org/Lima-X | `train_limax_{LANG}.jsonl`, `val_limax_{LANG}.jsonl` | `lima_x/` same names | none |
| oasst1 | OpenAssistant/oasst1 | `2023-04-12_oasst_ready.messages.jsonl.gz` | `oasst1/` same name | none |
| aya | CohereLabs/aya_dataset (was CohereForAI/) | `data/train-*.parquet` | `aya/train.jsonl` | parquet -> JSONL, all shards in order |

Multilingual Alpaca's English is the Alpaca-cleaned set the translations were made from.
Records with an empty output are kept and trained on (target = end of sequence only), as
the studies' own training code does; docs/prepare.md has the per-dataset decision.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from linguamix.prepare import formats, jobs
from linguamix.t5x_tasks import languages


def _aya(local):
  rows = [r for paths in local for p in paths for r in formats.read_rows(p)]
  return formats.jsonl(rows)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str                      # = the task family the check reads
  langs: Callable[[], tuple]
  jobs: Callable[[Sequence[str]], list[jobs.Job]]
  sparse: bool = False           # one multilingual file: a language may have no records


def _alpaca_job(lang: str) -> jobs.Job:
  repo, name = (("yahma/alpaca-cleaned", "alpaca_data_cleaned.json") if lang == "en" else
                (f"pinzhenchen/alpaca-cleaned-{lang}", f"alpaca_data_cleaned.{lang}.json"))
  return jobs.Job(f"alpaca_x/alpaca_data_cleaned.{lang}.json", repo, ((name,),),
                  note="renamed" if lang == "en" else "", lang=lang)


DATASETS = {d.name: d for d in (
    Dataset("bactrian_x", lambda: languages.BACTRIAN_X, lambda langs: [
        jobs.Job(f"bactrian_x/{l}.json.gz", "MBZUAI/Bactrian-X",
                 ((f"data/{l}.json.gz", f"{l}.json.gz"),), lang=l) for l in langs]),
    Dataset("alpaca_x", lambda: languages.ALPACA_X, lambda langs: [_alpaca_job(l) for l in langs]),
    Dataset("lima_x", lambda: languages.OPENGPTX, lambda langs: [
        jobs.Job(f"lima_x/{split}_limax_{l.upper()}.jsonl", "lamarr-org/Lima-X",
                 ((f"{split}_limax_{l.upper()}.jsonl",),), lang=l)
        for l in langs for split in ("train", "val")]),
    Dataset("oasst1", lambda: languages.OASST1, lambda langs: [
        jobs.Job("oasst1/2023-04-12_oasst_ready.messages.jsonl.gz", "OpenAssistant/oasst1",
                 (("2023-04-12_oasst_ready.messages.jsonl.gz",),))], sparse=True),
    Dataset("aya", lambda: languages.AYA, lambda langs: [
        jobs.Job("aya/train.jsonl", "CohereLabs/aya_dataset",
                 (("data/train-*.parquet", "*/train/*.parquet"),), _aya, jobs.PARQUET,
                 note="converted parquet -> JSONL")], sparse=True),
)}
