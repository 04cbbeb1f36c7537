"""Uncertainty of a run's scores and paired comparisons between runs.

`interval`: the standard error and 95% interval of an accuracy-like metric. It takes
`{metric}_stderr` from the metrics file when the evaluation wrote one; otherwise it
computes lm-eval's `acc_stderr` (sample standard deviation / sqrt(n)) from the
per-example results the evaluation writes (`scores/{task}.jsonl`: `correct` for acc,
`pred_norm == label` for acc_norm). `paired`: two runs on the same examples, McNemar's
exact test on the examples where exactly one is right.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

import numpy as np

Z95 = 1.959963984540054
# metric -> how one example of `scores/{task}.jsonl` counts (percent).
PER_EXAMPLE = {
    "acc": lambda row: 100.0 * (row["pred"] == row["label"]),
    "acc_norm": lambda row: 100.0 * (row["pred_norm"] == row["label"]),
}


def example_scores(eval_dir: str, task: str, metric: str) -> dict[int, float] | None:
  """idx -> the example's score (0 or 100), or None without a per-example file."""
  path = os.path.join(eval_dir, "scores", f"{task}.jsonl")
  if metric not in PER_EXAMPLE or not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  if not rows or "label" not in rows[0]:
    return None
  return {int(r["idx"]): PER_EXAMPLE[metric](r) for r in rows}


def interval(metrics: Mapping[str, float], eval_dir: str, task: str,
             metric: str) -> tuple[float, float, float] | None:
  """(stderr, low, high) of `metrics[metric]`, or None when nothing gives one."""
  value = metrics.get(metric)
  if value is None:
    return None
  se = metrics.get(f"{metric}_stderr")
  if se is None:
    per = example_scores(eval_dir, task, metric)
    if not per or len(per) < 2:
      return None
    se = float(np.std(list(per.values()), ddof=1) / np.sqrt(len(per)))
  return float(se), float(value - Z95 * se), float(value + Z95 * se)


def pooled_interval(values: Iterable[float]) -> tuple[float, float, float, int] | None:
  """(mean, low, high, n) of per-example scores pooled over tasks / seeds."""
  x = np.asarray(list(values), float)
  if len(x) < 2:
    return None
  se = float(np.std(x, ddof=1) / np.sqrt(len(x)))
  mean = float(x.mean())
  return mean, mean - Z95 * se, mean + Z95 * se, len(x)


def paired(a: Mapping, b: Mapping) -> dict[str, float] | None:
  """A vs B on the examples both scored (keys: example ids, values 0/100): mean
  difference (points) with its 95% interval, and McNemar's exact two-sided p-value."""
  from scipy import stats
  keys = sorted(set(a) & set(b))
  if len(keys) < 2:
    return None
  xa = np.array([a[k] for k in keys]) > 0
  xb = np.array([b[k] for k in keys]) > 0
  d = 100.0 * (xa.astype(float) - xb.astype(float))
  se = float(np.std(d, ddof=1) / np.sqrt(len(d)))
  only_a, only_b = int(np.sum(xa & ~xb)), int(np.sum(~xa & xb))
  p = 1.0 if only_a + only_b == 0 else float(
      stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
  return {"diff": float(d.mean()), "low": float(d.mean() - Z95 * se),
          "high": float(d.mean() + Z95 * se), "p_value": p, "n": len(keys),
          "only_a": only_a, "only_b": only_b}
