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
  rows = []
  for path in sorted(glob.glob(os.path.join(judge_dir, "*.json"))):
    kind, _, lang = os.path.basename(path)[:-5].partition("_")
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
    if kind == "single":
      rows.append({"family": "judge_single", "language": lang, "metric": "score",
                   "value": result["score"], "num_examples": len(result.get("records", []))})
    elif kind == "pair":
      rows.append({"family": "judge_pair", "language": lang, "metric": "win_rate",
                   "value": result["win_rate_a"], "num_examples": len(result.get("outcomes", {}))})
  return [dict(r, run=run.name) for r in rows]


def build(runs: Sequence[Run], eval_dir_of, judge_dir_of) -> Table:
  from linguamix.evals import loggers
  rows, eval_dirs = [], {}
  for run in runs:
    eval_dir = eval_dir_of(run)
    if not os.path.isdir(os.path.join(eval_dir, "metrics")):
      continue
    eval_dirs[run.name] = eval_dir
    records = loggers.read_task_metrics(eval_dir)
    family_se = collections.defaultdict(list)
    for row in loggers.summary_rows(records):
      out = dict(row, run=run.name, stderr=None, ci95_low=None, ci95_high=None)
      fam, lang, metric = row["family"], row["language"], row["metric"]
      if lang not in ("avg", "avg_weighted"):
        task = f"{fam}.{lang}"
        got = stats.interval(records[task]["metrics"], eval_dir, task, metric)
        if got:
          out["stderr"], out["ci95_low"], out["ci95_high"] = got
          family_se[(fam, metric)].append(got[0])
      elif lang == "avg_weighted":
        per = [v for t in records if t.startswith(fam + ".")
               for v in (stats.example_scores(eval_dir, t, metric) or {}).values()]
        got = stats.pooled_interval(per)
        if got and got[3] == row["num_examples"]:
          se = (got[2] - got[0]) / stats.Z95
          out["stderr"], out["ci95_low"], out["ci95_high"] = se, row["value"] - stats.Z95 * se, row["value"] + stats.Z95 * se
      rows.append(out)
    # The plain mean over languages: stderr of a mean of independent per-language scores.
    for out in rows:
      if out["run"] == run.name and out["language"] == "avg" and family_se.get((out["family"], out["metric"])):
        ses = family_se[(out["family"], out["metric"])]
        if len(ses) == len(loggers_langs(records, out["family"])):
          se = math.sqrt(sum(s * s for s in ses)) / len(ses)
          out["stderr"], out["ci95_low"], out["ci95_high"] = se, out["value"] - stats.Z95 * se, out["value"] + stats.Z95 * se
    rows += _judge_rows(run, judge_dir_of(run))
  return Table(runs, rows, eval_dirs)


def loggers_langs(records, family: str) -> list[str]:
  return [t for t, r in records.items() if r["family"] == family]


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
