"""seqio `Logger`s writing what a paper table and an audit need.

Given to `seqio.Evaluator(logger_cls=...)` (T5X style). Under `output_dir`:
* `metrics/{task}.json`   the task's metrics (+ step, family, language, and under
  `requests` the lm-eval version and request format the scores follow); accuracy-like
  metrics come with `_stderr` (lm-eval's) and `_ci_low` / `_ci_high` (95%, normal);
* `summary.csv`, `summary.json`, `summary.md`   every task in the folder, one row per
  task and metric (value, stderr, 95% interval, examples), plus per-family `avg` (plain mean over languages) and `avg_weighted`
  (weighted by number of examples) rows — rebuilt from `metrics/` after each task, so
  several evaluator runs into one folder add up;
* `scores/{task}.jsonl`   one line per example: for rank tasks the id, gold label, each
  choice's inputs/targets text, summed log-likelihood and character length, the
  `acc` / `acc_norm` predictions; for generation tasks the id, input, references and
  prediction.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from linguamix import atomic
from linguamix.evals import rank
from linguamix.evals import requests

AVERAGES = ("avg", "avg_weighted")


def _family_lang(task_name: str) -> tuple[str, str]:
  family, _, lang = task_name.partition(".")
  return family, lang


COUNTS = ("num_examples", "num_flagged")
NOT_SUMMARISED = COUNTS + ("chance",)  # in metrics/*.json only
UNCERTAINTY = ("_stderr", "_ci_low", "_ci_high")
FIELDS = ("family", "language", "metric", "value", "stderr", "ci_low", "ci_high", "num_examples")


def scalars(metrics: Mapping[str, Any]) -> dict[str, float | int]:
  out = {}
  for name, value in metrics.items():
    value = value.value if isinstance(value, seqio.metrics.Scalar) else value
    if np.ndim(value) == 0:
      out[name] = int(value) if name in COUNTS else float(value)
  return out


def _write(path: str, text: str) -> None:
  atomic.write_text(path, text)


def read_task_metrics(output_dir: str) -> dict[str, dict[str, Any]]:
  """task name -> its metrics record, from `output_dir/metrics/*.json`."""
  records = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(output_dir, "metrics", "*.json"))):
    with tf.io.gfile.GFile(path) as f:
      record = json.load(f)
    records[record["task"]] = record
  return records


def _interval(value: float, stderr: float | None) -> tuple[float | None, float | None]:
  if stderr is None:
    return None, None
  return max(0.0, value - rank.Z_95 * stderr), min(100.0, value + rank.Z_95 * stderr)


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
  """lm-eval's `pooled_sample_stderr`: the stderr of a size-weighted group mean."""
  sizes = np.asarray(sizes, float)
  stderrs = np.asarray(stderrs, float)
  if sizes.sum() - len(sizes) <= 0:
    return 0.0
  var = ((sizes - 1) * stderrs ** 2 * sizes).sum() / (sizes.sum() - len(sizes))
  return float(np.sqrt(var / sizes.sum()))


def summary_rows(records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Rows `family, language, metric, value, stderr, ci_low, ci_high, num_examples`, with
  family averages: `avg` (plain mean over languages, stderr sqrt(sum se^2) / k, lm-eval's
  `unweighted_mean_stderr`) and `avg_weighted` (by examples, lm-eval's pooled stderr)."""
  rows = []
  by_family = collections.defaultdict(list)
  for task, record in sorted(records.items()):
    by_family[record["family"]].append(record)

  def row(family, lang, metric, value, stderr, n):
    low, high = _interval(value, stderr)
    return {"family": family, "language": lang, "metric": metric, "value": value,
            "stderr": stderr, "ci_low": low, "ci_high": high, "num_examples": int(n)}

  for family, recs in sorted(by_family.items()):
    names = sorted({m for r in recs for m in r["metrics"]} - set(NOT_SUMMARISED)
                   - {m for r in recs for m in r["metrics"] if m.endswith(UNCERTAINTY)})
    for r in recs:
      for m in names:
        if m in r["metrics"]:
          rows.append(row(family, r["language"], m, r["metrics"][m],
                          r["metrics"].get(f"{m}_stderr"), r["num_examples"]))
    for m in names:
      have = [r for r in recs if m in r["metrics"]]
      values = np.array([r["metrics"][m] for r in have])
      sizes = np.array([r["num_examples"] for r in have], float)
      stderrs = [r["metrics"].get(f"{m}_stderr") for r in have]
      known = all(se is not None for se in stderrs)
      total = int(sizes.sum())
      rows.append(row(family, "avg", m, float(values.mean()),
                      float(np.sqrt(np.sum(np.square(stderrs))) / len(have)) if known else None,
                      total))
      if sizes.sum() > 0:
        rows.append(row(family, "avg_weighted", m, float((values * sizes).sum() / sizes.sum()),
                        pooled_stderr(stderrs, sizes) if known else None, total))
  return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """One table per family: a row per metric (value ± standard error), a column per
  language then the averages, and the example counts."""
  out = []
  families = sorted({r["family"] for r in rows})
  for family in families:
    fam = [r for r in rows if r["family"] == family]
    langs = sorted({r["language"] for r in fam} - set(AVERAGES))
    cols = langs + [a for a in AVERAGES if any(r["language"] == a for r in fam)]
    out += [f"### {family}", "", "| metric | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|"]
    for metric in sorted({r["metric"] for r in fam}):
      cell = {r["language"]: r for r in fam if r["metric"] == metric}
      out.append(f"| {metric} | " + " | ".join(
          (f"{cell[c]['value']:.2f}" + (f" ± {cell[c]['stderr']:.2f}" if cell[c]["stderr"] is not None
                                         else "")) if c in cell else "" for c in cols) + " |")
    count = {r["language"]: r["num_examples"] for r in fam}
    out.append("| examples | " + " | ".join(str(count.get(c, "")) for c in cols) + " |")
    out += ["", "± one standard error (lm-eval's `acc_stderr`); 95% intervals in summary.csv.", ""]
  return "\n".join(out)


class MetricsLogger(seqio.Logger):
  """Per-task metrics JSON plus the folder's summary (CSV, JSON, Markdown); each JSON
  records the request format (`requests`) the scores were computed with."""

  def __init__(self, output_dir: str, requests_format: requests.Format = requests.Format()):
    super().__init__(output_dir=output_dir)
    self.requests_format = requests_format

  def __call__(self, task_name, step, metrics, dataset, inferences, targets) -> None:
    del dataset, inferences, targets
    family, lang = _family_lang(task_name)
    values = scalars(metrics)
    record = {"task": task_name, "family": family, "language": lang,
              "step": -1 if step is None else int(step),
              "num_examples": int(values.get("num_examples", 0)), "metrics": values,
              "requests": self.requests_format.record()}
    _write(os.path.join(self.output_dir, "metrics", f"{task_name}.json"),
           json.dumps(record, indent=2, ensure_ascii=False))
    rows = summary_rows(read_task_metrics(self.output_dir))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    _write(os.path.join(self.output_dir, "summary.csv"), buf.getvalue())
    _write(os.path.join(self.output_dir, "summary.json"),
           json.dumps(rows, indent=2, ensure_ascii=False))
    _write(os.path.join(self.output_dir, "summary.md"), markdown_table(rows))


def _text(value: Any) -> Any:
  return value.decode("utf-8") if isinstance(value, bytes) else value


class ScoresLogger(seqio.Logger):
  """Per-example records for audits: `scores/{task}.jsonl`."""

  def __call__(self, task_name, step, metrics, dataset, inferences, targets) -> None:
    del step, metrics
    if dataset is None or not inferences or targets is None:
      return
    # rows already in memory (`batched`) or the task's tf.data dataset (`seqio.Evaluator`)
    rows = dataset if isinstance(dataset, list) else list(tfds.as_numpy(dataset))
    ranked = bool(targets) and isinstance(targets[0], dict) and "choice" in targets[0]
    if "score" in inferences and ranked:
      lines = self._rank_lines(rows, targets, inferences["score"])
    elif "score" in inferences:  # a task that is not rank classification: one score per row
      lines = [{"idx": int(r.get("idx", i)), "inputs": _text(r.get("inputs_pretokenized")),
                "targets": _text(r.get("targets_pretokenized")), "score": float(score)}
               for i, (r, score) in enumerate(zip(rows, inferences["score"]))]
    else:
      lines = [{"idx": int(r.get("idx", i)), "inputs": _text(r.get("inputs_pretokenized")),
                "references": list(t) if isinstance(t, (list, tuple)) else [t],
                "prediction": p}
               for i, (r, t, p) in enumerate(zip(rows, targets, inferences.get("prediction", [])))]
    _write(os.path.join(self.output_dir, "scores", f"{task_name}.jsonl"),
           "".join(json.dumps(line, ensure_ascii=False, default=float) + "\n" for line in lines))

  @staticmethod
  def _rank_lines(rows, targets, scores) -> list[dict[str, Any]]:
    text = {(t["idx"], t["choice"]): (_text(r["inputs_pretokenized"]),
                                      _text(r["targets_pretokenized"]))
            for r, t in zip(rows, targets)}
    lines = []
    for g in rank.group_by_example(targets, scores):
      pred, pred_norm = rank.predictions(g)
      lines.append({
          "idx": g.idx, "label": g.label, "pred": pred, "pred_norm": pred_norm,
          "correct": pred == g.label, "flag": g.flag,
          "choices": [{"inputs": text[(g.idx, c)][0], "targets": text[(g.idx, c)][1],
                       "score": float(g.scores[c]), "length": int(g.lengths[c])}
                      for c in range(len(g.scores))]})
    return lines
