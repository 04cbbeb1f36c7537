"""`linguamix report`: per-language bar charts and the cross-lingual transfer matrix.

Reads the `metrics/*.json` that `evaluate` (its `MetricsLogger`) writes into each run
folder. One run: a bar per evaluation language, per benchmark family. Several runs
(one per tuning recipe): grouped bars, plus a heatmap of recipe x evaluation language
(`transfer_{family}_{metric}.png` and `.csv`). Bars carry their values, 95% intervals
as error bars and the chance level. `--paired` (two runs): an exact McNemar test per
language and per family on the examples both runs scored (`paired.py`).
"""

from __future__ import annotations

import csv
import os
import sys
from typing import Sequence

import matplotlib
matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from linguamix import atomic  # noqa: E402
from linguamix.evals import loggers  # noqa: E402
from linguamix.evals import paired  # noqa: E402


def load_runs(run_dirs: Sequence[str], labels: Sequence[str] | None):
  """label -> {family -> {lang -> {metric: value}}} for every run folder."""
  if labels and len(labels) != len(run_dirs):
    raise ValueError(f"{len(labels)} --label values for {len(run_dirs)} runs")
  runs = {}
  for i, run_dir in enumerate(run_dirs):
    records = loggers.read_task_metrics(run_dir)
    if not records:
      raise FileNotFoundError(f"no metrics/*.json in {run_dir} (is it an evaluate() output folder?)")
    by_family: dict = {}
    for r in records.values():
      by_family.setdefault(r["family"], {})[r["language"]] = r["metrics"]
    runs[labels[i] if labels else os.path.basename(os.path.normpath(run_dir))] = by_family
  return runs


def _save(fig, path: str) -> None:
  fig.tight_layout()
  with atomic.atomic_write(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)


def bar_chart(runs, family: str, metric: str, path: str) -> None:
  _save(bar_figure(runs, family, metric), path)


def bar_figure(runs, family: str, metric: str):
  """Bars per language (grouped by run), each labelled with its value, 95% intervals as
  error bars where the metrics have them, and the chance level as a dashed line."""
  langs = sorted({l for fams in runs.values() for l in fams.get(family, {})})
  width = 0.8 / len(runs)
  fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(langs) * len(runs) + 2), 3.8))
  chance = []
  for i, (label, fams) in enumerate(runs.items()):
    per_lang = [fams.get(family, {}).get(l, {}) for l in langs]
    values = np.array([m.get(metric, np.nan) for m in per_lang], float)
    low = np.array([m.get(f"{metric}_ci_low", np.nan) for m in per_lang], float)
    high = np.array([m.get(f"{metric}_ci_high", np.nan) for m in per_lang], float)
    yerr = np.nan_to_num(np.stack([values - low, high - values]), nan=0.0)
    bars = ax.bar(np.arange(len(langs)) + i * width, values, width, label=label,
                  yerr=yerr if np.any(yerr) else None, capsize=2, error_kw={"elinewidth": 0.8})
    ax.bar_label(bars, fmt="%.1f", fontsize=6 if len(runs) > 1 else 7, padding=2)
    chance += [m["chance"] for m in per_lang if "chance" in m]
  if chance and metric.startswith("acc"):
    ax.axhline(float(np.mean(chance)), color="grey", linestyle="--", linewidth=0.8,
               label=f"chance {np.mean(chance):.1f}")
  ax.set_xticks(np.arange(len(langs)) + width * (len(runs) - 1) / 2, langs)
  ax.set_ylabel(metric)
  ax.margins(y=0.12)
  ax.set_ylim(bottom=0)
  ax.set_title(f"{family}: {metric} per language (error bars: 95% interval)")
  if len(runs) > 1 or chance:
    ax.legend(fontsize="small")
  return fig


def transfer_matrix(runs, family: str, metric: str) -> tuple[list[str], list[str], np.ndarray]:
  """(recipes, languages, values[recipe, language]) with NaN where a run lacks a language."""
  langs = sorted({l for fams in runs.values() for l in fams.get(family, {})})
  recipes = list(runs)
  values = np.array([[runs[r].get(family, {}).get(l, {}).get(metric, np.nan) for l in langs]
                     for r in recipes], float)
  return recipes, langs, values


def heatmap(recipes, langs, values, title: str, path: str) -> None:
  fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(langs) + 2), max(2.5, 0.5 * len(recipes) + 1.5)))
  image = ax.imshow(values, cmap="viridis", aspect="auto")
  ax.set_xticks(range(len(langs)), langs)
  ax.set_yticks(range(len(recipes)), recipes)
  ax.set_xlabel("evaluation language")
  ax.set_ylabel("tuning recipe")
  for i in range(len(recipes)):
    for j in range(len(langs)):
      if not np.isnan(values[i, j]):
        ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7, color="w")
  fig.colorbar(image, ax=ax)
  ax.set_title(title)
  _save(fig, path)


def _paired(run_dirs: Sequence[str], out: str, metric: str, labels: list[str],
            families: list[str]) -> int:
  try:
    rows = [r for r in paired.compare(run_dirs[0], run_dirs[1], metric)
            if r["family"] in families]
  except (ValueError, FileNotFoundError) as e:
    print(f"linguamix report: error: {e}", file=sys.stderr)
    return 2
  path = os.path.join(out, f"paired_{metric}.csv")
  with tf.io.gfile.GFile(path, "w") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  a, b = labels
  print(f"\n{metric}: {a} vs {b}, exact McNemar test on the same examples\n"
        f"| family | language | n | {a} | {b} | diff | only {a} | only {b} | p |\n" + "|---" * 9 + "|")
  for r in rows:
    print(f"| {r['family']} | {r['language']} | {r['num_examples']} | {r['acc_a']:.2f} | "
          f"{r['acc_b']:.2f} | {r['diff']:+.2f} | {r['a_only']} | {r['b_only']} | {r['p_value']:.4g} |")
  print(f"wrote {path}")
  return 0


def write_report(run_dirs: Sequence[str], out: str, *, labels: Sequence[str] | None = None,
                 metric: str = "acc", families: Sequence[str] | None = None,
                 paired_test: bool = False) -> int:
  """The charts (and tables, printed) of `run_dirs` into `out`; exit status 2 (after an
  `error:` line) when a family has no results. `paired_test`: two runs, McNemar per language."""
  runs = load_runs(run_dirs, labels)
  families = families or sorted({f for fams in runs.values() for f in fams})
  tf.io.gfile.makedirs(out)
  if paired_test and _paired(run_dirs, out, metric, list(runs), families):
    return 2
  for family in families:
    if not any(family in fams for fams in runs.values()):
      print(f"linguamix report: error: no run has results for {family!r}", file=sys.stderr)
      return 2
    path = os.path.join(out, f"{family}_{metric}.png")
    bar_chart(runs, family, metric, path)
    print(f"wrote {path}")
    if len(runs) > 1:
      recipes, langs, values = transfer_matrix(runs, family, metric)
      stem = os.path.join(out, f"transfer_{family}_{metric}")
      heatmap(recipes, langs, values, f"{family} {metric}: recipe x language", stem + ".png")
      with atomic.atomic_write(stem + ".csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["recipe"] + langs)
        writer.writerows([r] + [f"{v:.4f}" for v in row] for r, row in zip(recipes, values))
      print(f"wrote {stem}.png and {stem}.csv")
      print(f"\n{family} {metric}\n| recipe | " + " | ".join(langs) + " |")
      for r, row in zip(recipes, values):
        print(f"| {r} | " + " | ".join("" if np.isnan(v) else f"{v:.2f}" for v in row) + " |")
  return 0
