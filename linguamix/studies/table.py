"""Every run's numbers, read from the files its evaluation wrote (never recomputed):
`eval/metrics/*.json` through `linguamix.evals.loggers` (with its family `avg` and
`avg_weighted` rows), intervals from `stats`, judgements from `judge/*.json`."""

from __future__ import annotations

import collections
import csv
import glob
import json
import math
import os
from typing import Any, Sequence

from linguamix.studies import stats
from linguamix.studies.base import Run

COLUMNS = ("run", "family", "language", "metric", "value", "num_examples", "stderr",
           "ci95_low", "ci95_high")
PRIMARY = ("acc", "consistency", "score", "f1", "chrf", "em", "win_rate")


class Table:
  def __init__(self, runs: Sequence[Run], rows: list[dict[str, Any]], eval_dirs: dict[str, str]):
    self.runs = list(runs)
    self.rows = rows
    self.eval_dirs = eval_dirs
    self._index = {(r["run"], r["family"], r["language"], r["metric"]): r for r in rows}

  def get(self, run: str, family: str, language: str, metric: str) -> float:
    row = self._index.get((run, family, language, metric))
    return float("nan") if row is None else float(row["value"])

  def row(self, run: str, family: str, language: str, metric: str) -> dict | None:
    return self._index.get((run, family, language, metric))

  def families(self) -> list[str]:
    return sorted({r["family"] for r in self.rows})

  def languages(self, family: str) -> list[str]:
    return sorted({r["language"] for r in self.rows if r["family"] == family}
                  - {"avg", "avg_weighted"})

  def metric(self, family: str) -> str | None:
    """The family's headline metric (acc for benchmarks, consistency for prompts, ...)."""
    have = {r["metric"] for r in self.rows if r["family"] == family}
    return next((m for m in PRIMARY if m in have), None)

  def evaluated(self) -> list[Run]:
    have = {r["run"] for r in self.rows}
    return [r for r in self.runs if r.name in have]


def _judge_rows(run: Run, judge_dir: str) -> list[dict[str, Any]]:
  """From `linguamix judge --out` summaries: `judge_single` (score, the mean of both turns;
  per category `score_{category}`) and `judge_single_turn{1,2}`; `judge_pair` (win_rate)
  and `judge_pair_turn{1,2}`. Each family gets an `avg` over its languages (its standard
  error sqrt(sum se^2) / languages, as for the benchmarks)."""
  rows = []
  for path in sorted(glob.glob(os.path.join(judge_dir, "*.json"))):
    kind, _, lang = os.path.basename(path)[:-5].partition("_")
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
    if kind == "single":
      for r in result["table"]:
        family = "judge_single" + ("" if r["turn"] == "all" else f"_turn{r['turn']}")
        metric = "score" + ("" if r["category"] == "all" else f"_{r['category']}")
        if r["mean"] is not None and (r["category"] == "all" or r["turn"] == "all"):
          rows.append({"family": family, "language": lang, "metric": metric, "value": r["mean"],
                       "num_examples": r["count"], "stderr": r["stderr"]})
    elif kind == "pair":
      for r in result["table"]:
        family = "judge_pair" + ("" if r["turn"] == "all" else f"_turn{r['turn']}")
        if r["win_rate_1"] is not None:
          rows.append({"family": family, "language": lang, "metric": "win_rate",
                       "value": r["win_rate_1"], "stderr": None,
                       "num_examples": r["wins_1"] + r["wins_2"] + r["ties"]})
  by_metric = collections.defaultdict(list)
  for r in rows:
    by_metric[(r["family"], r["metric"])].append(r)
  for (family, metric), got in sorted(by_metric.items()):
    ses = [r["stderr"] for r in got]
    rows.append({"family": family, "language": "avg", "metric": metric,
                 "stderr": None if None in ses else math.sqrt(sum(se * se for se in ses)) / len(got),
                 "value": sum(r["value"] for r in got) / len(got),
                 "num_examples": sum(r["num_examples"] for r in got)})
  return [dict(r, run=run.name) if r["stderr"] is None else _with_interval(dict(r, run=run.name), r["stderr"])
          for r in rows]


def _with_interval(row: dict, se: float) -> dict:
  return dict(row, stderr=se, ci95_low=row["value"] - stats.Z95 * se,
              ci95_high=row["value"] + stats.Z95 * se)


def _run_rows(run: Run, eval_dir: str) -> list[dict[str, Any]]:
  """`loggers.summary_rows` of the run's metrics files, each with its interval: per
  language from `stats.interval`; `avg_weighted` from the pooled per-example scores;
  `avg` (a mean of independent per-language scores) sqrt(sum se^2) / languages."""
  from linguamix.evals import loggers
  records = loggers.read_task_metrics(eval_dir)
  rows = [dict(r, run=run.name, stderr=None, ci95_low=None, ci95_high=None)
          for r in loggers.summary_rows(records)]
  ses = collections.defaultdict(list)
  for i, row in enumerate(rows):
    fam, lang, metric = row["family"], row["language"], row["metric"]
    if lang not in ("avg", "avg_weighted"):
      task = f"{fam}.{lang}"
      got = stats.interval(records[task]["metrics"], eval_dir, task, metric)
      if got:
        rows[i] = _with_interval(row, got[0])
        ses[(fam, metric)].append(got[0])
  for i, row in enumerate(rows):
    fam, metric = row["family"], row["metric"]
    n_langs = sum(1 for r in records.values() if r["family"] == fam and metric in r["metrics"])
    if row["language"] == "avg" and len(ses[(fam, metric)]) == n_langs:
      rows[i] = _with_interval(row, math.sqrt(sum(s * s for s in ses[(fam, metric)])) / n_langs)
    elif row["language"] == "avg_weighted":
      per = [v for t, r in records.items() if r["family"] == fam
             for v in (stats.example_scores(eval_dir, t, metric) or {}).values()]
      got = stats.pooled_interval(per)
      if got and got[3] == row["num_examples"]:
        rows[i] = _with_interval(row, (got[2] - got[0]) / stats.Z95)
  return rows


def build(runs: Sequence[Run], eval_dir_of, judge_dir_of) -> Table:
  rows, eval_dirs = [], {}
  for run in runs:
    eval_dir = eval_dir_of(run)
    if os.path.isdir(os.path.join(eval_dir, "metrics")):
      eval_dirs[run.name] = eval_dir
      rows += _run_rows(run, eval_dir)
    rows += _judge_rows(run, judge_dir_of(run))
  return Table(runs, rows, eval_dirs)


def write_csv(table: Table, path: str, tags: bool = True) -> None:
  tag_of = {r.name: r.tags for r in table.runs}
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, COLUMNS + (("tags",) if tags else ()), extrasaction="ignore")
    writer.writeheader()
    for row in table.rows:
      out = {k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS}
      if tags:
        out["tags"] = json.dumps(tag_of.get(row["run"], {}), sort_keys=True, default=list)
      writer.writerow(out)


def markdown(table: Table) -> str:
  """One table per family: a row per run, a column per language then the averages."""
  out = []
  for family in table.families():
    metric = table.metric(family)
    if metric is None:
      continue
    langs = table.languages(family)
    cols = langs + [a for a in ("avg", "avg_weighted")
                    if any(r["family"] == family and r["language"] == a for r in table.rows)]
    out += [f"### {family} ({metric})", "", "| run | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|"]
    for run in table.evaluated():
      cells = []
      for c in cols:
        row = table.row(run.name, family, c, metric)
        if row is None:
          cells.append("")
        elif row.get("stderr") is not None:
          cells.append(f"{row['value']:.2f} ± {row['stderr']:.2f}")
        else:
          cells.append(f"{row['value']:.2f}")
      if any(cells):
        out.append(f"| {run.name} | " + " | ".join(cells) + " |")
    out.append("")
  return "\n".join(out)
