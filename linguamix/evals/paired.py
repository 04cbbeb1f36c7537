"""Paired comparison of two evaluation runs on the same examples: exact McNemar test.

Reads each run's `scores/{task}.jsonl` (written by `ScoresLogger`): per example its id,
gold label and the `acc` / `acc_norm` predictions. For each task both runs scored, the
examples one run gets right and the other wrong (b, c) decide: under "no difference"
b ~ Binomial(b + c, 1/2); the two-sided exact p-value is `scipy.stats.binomtest`'s.
The family row pools every language's examples (one test over all of them).
"""

from __future__ import annotations

import json
import os
from typing import Any

from scipy import stats
import tensorflow as tf

PREDICTION = {"acc": "pred", "acc_norm": "pred_norm"}


def read_correct(run_dir: str, metric: str) -> dict[str, dict[int, bool]]:
  """task -> {example id: correct} from `run_dir/scores/*.jsonl`."""
  if metric not in PREDICTION:
    raise ValueError(f"paired comparison needs a per-example metric, one of {sorted(PREDICTION)}; "
                     f"got {metric!r}")
  out = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(run_dir, "scores", "*.jsonl"))):
    task = os.path.basename(path)[:-len(".jsonl")]
    with tf.io.gfile.GFile(path) as f:
      lines = [json.loads(l) for l in f if l.strip()]
    if lines and PREDICTION[metric] in lines[0]:
      out[task] = {int(l["idx"]): l[PREDICTION[metric]] == l["label"] for l in lines}
  if not out:
    raise FileNotFoundError(f"no rank-classification scores/*.jsonl in {run_dir}")
  return out


def mcnemar(a: dict[int, bool], b: dict[int, bool]) -> dict[str, Any]:
  """Both runs' accuracies on their shared examples, the discordant counts and the p-value."""
  ids = sorted(set(a) & set(b))
  if not ids:
    raise ValueError("the two runs share no examples")
  a_only = sum(a[i] and not b[i] for i in ids)
  b_only = sum(b[i] and not a[i] for i in ids)
  n = len(ids)
  p = stats.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
  acc_a = 100.0 * sum(a[i] for i in ids) / n
  acc_b = 100.0 * sum(b[i] for i in ids) / n
  return {"num_examples": n, "acc_a": acc_a, "acc_b": acc_b, "diff": acc_a - acc_b,
          "a_only": a_only, "b_only": b_only, "p_value": float(p)}


def compare(run_a: str, run_b: str, metric: str = "acc") -> list[dict[str, Any]]:
  """Rows `family, language, num_examples, acc_a, acc_b, diff, a_only, b_only, p_value`:
  one per task both runs scored (ids must match), then one per family pooling them."""
  a, b = read_correct(run_a, metric), read_correct(run_b, metric)
  shared = sorted(set(a) & set(b))
  if not shared:
    raise ValueError(f"{run_a} and {run_b} share no task")
  rows, pooled = [], {}
  for task in shared:
    if set(a[task]) != set(b[task]):
      raise ValueError(f"{task}: the runs scored different examples "
                       f"({len(a[task])} vs {len(b[task])}); compare runs on the same examples")
    family, _, lang = task.partition(".")
    rows.append({"family": family, "language": lang, **mcnemar(a[task], b[task])})
    pa, pb = pooled.setdefault(family, ({}, {}))
    pa.update({(task, i): v for i, v in a[task].items()})
    pb.update({(task, i): v for i, v in b[task].items()})
  for family, (pa, pb) in sorted(pooled.items()):
    rows.append({"family": family, "language": "all", **mcnemar(pa, pb)})
  return rows
