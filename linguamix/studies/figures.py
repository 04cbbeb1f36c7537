"""The studies' figures, drawn from a `table.Table` (the runs' metric files).

Each function takes (table, out_dir) and returns [(title, png file name, caption)];
a figure whose runs are missing is left out with a caption saying so.
"""

from __future__ import annotations

import collections
import os

import matplotlib
matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from linguamix.evals import charts  # noqa: E402
from linguamix.studies import stats  # noqa: E402
from linguamix.studies.table import Table  # noqa: E402


def _save(fig, out_dir: str, name: str) -> str:
  charts._save(fig, os.path.join(out_dir, name))
  return name


def _score_families(table: Table) -> list[tuple[str, str]]:
  return [(f, table.metric(f)) for f in table.families() if table.metric(f)]


def pinch_curves(table: Table, out_dir: str) -> list:
  """Score against P per evaluation language; for the partial-language runs, seen
  languages (solid) apart from unseen ones (dashed)."""
  out = []
  for variant, label in (("p", "all 12 languages tuned"), ("partial", "en + ar fi it ru sw tuned")):
    runs = sorted((r for r in table.evaluated() if r.tags.get("variant") == variant),
                  key=lambda r: r.tags["p"])
    if len(runs) < 1:
      continue
    for family, metric in _score_families(table):
      langs = table.languages(family)
      if not langs:
        continue
      fig, ax = plt.subplots(figsize=(6.5, 4))
      ps = [r.tags["p"] for r in runs]
      groups = {True: [], False: []}
      for lang in langs:
        seen = lang in runs[0].tags.get("seen", ())
        ys = [table.get(r.name, family, lang, metric) for r in runs]
        groups[seen].append(ys)
        ax.plot(ps, ys, "-o" if seen else "--s", alpha=0.5, lw=1,
                label=f"{lang} ({'seen' if seen else 'unseen'})")
      for seen, rows in groups.items():
        if rows:
          ax.plot(ps, np.nanmean(rows, axis=0), "-" if seen else "--", color="k", lw=2.5,
                  label=f"mean of {'seen' if seen else 'unseen'} languages")
      ax.set_xlabel("P (% of the budget multilingual)")
      ax.set_ylabel(f"{family} {metric}")
      ax.set_title(f"Pinch: {family} {metric} against P ({label})")
      ax.legend(fontsize="x-small", ncol=2)
      name = _save(fig, out_dir, f"pinch_{variant}_{family}_{metric}.png")
      out.append((f"Pinch, {label}: {family} {metric} against P", name,
                  "solid: languages in the tuning mix; dashed: unseen languages"))
  return out


def transfer_matrix(table: Table, out_dir: str) -> list:
  """Tuning language x evaluation language, from the monolingual runs (reuses
  `linguamix report`'s matrix and heatmap)."""
  mono = [r for r in table.evaluated() if r.tags.get("variant") == "mono"]
  if not mono:
    return []
  out = []
  for source in sorted({r.tags.get("source", "") for r in mono}):
    runs = {}
    for r in mono:
      if r.tags.get("source", "") != source:
        continue
      by_family = collections.defaultdict(dict)
      for row in table.rows:
        if row["run"] == r.name and row["language"] not in ("avg", "avg_weighted"):
          by_family[row["family"]].setdefault(row["language"], {})[row["metric"]] = row["value"]
      runs[r.tags["langs"][0]] = dict(by_family)
    for family, metric in _score_families(table):
      recipes, langs, values = charts.transfer_matrix(runs, family, metric)
      if not langs or np.all(np.isnan(values)):
        continue
      stem = f"transfer_{source + '_' if source else ''}{family}_{metric}"
      charts.heatmap([f"tuned {r}" for r in recipes], langs, values,
                          f"{family} {metric}: tuning language x evaluation language"
                          + (f" ({source})" if source else ""), os.path.join(out_dir, stem + ".png"))
      out.append((f"Transfer matrix, {family} {metric}" + (f" ({source})" if source else ""),
                  stem + ".png", "rows: the monolingual run of each language"))
  return out


def multi_minus_mono_diffs(table: Table, family: str, metric: str) -> dict[str, list[float]]:
  """{multilingual run: per evaluation language (`table.languages(family)`), its score
  minus the monolingual run of that language (same source); NaN where one is missing}."""
  runs = table.evaluated()
  mono = {(r.tags.get("source", ""), r.tags["langs"][0]): r for r in runs if r.tags.get("variant") == "mono"}
  multi = [r for r in runs if r.tags.get("variant") in ("multi", "down")]
  bars = {}
  for r in multi:
    diffs = [table.get(r.name, family, l, metric)
             - (table.get(mono[(r.tags.get("source", ""), l)].name, family, l, metric)
                if (r.tags.get("source", ""), l) in mono else np.nan)
             for l in table.languages(family)]
    if not np.all(np.isnan(diffs)):
      bars[r.name] = diffs
  return bars


def multi_minus_mono_markdown(table: Table) -> str:
  """The differences `multi_minus_mono` draws, as one table per family."""
  out = []
  for family, metric in _score_families(table):
    bars = multi_minus_mono_diffs(table, family, metric)
    if not bars:
      continue
    langs = table.languages(family)
    out += [f"### {family} ({metric}): multilingual minus monolingual", "",
            "| run | " + " | ".join(langs) + " | mean |", "|---" * (len(langs) + 2) + "|"]
    for name, diffs in bars.items():
      mean = np.nanmean(diffs)
      out.append(f"| {name} | " + " | ".join("" if np.isnan(d) else f"{d:+.2f}" for d in diffs)
                 + f" | {mean:+.2f} |")
    out.append("")
  return "\n".join(out)


def multi_minus_mono(table: Table, out_dir: str) -> list:
  """Per evaluation language: each multilingual run minus the monolingual run of that
  language (same source)."""
  out = []
  for family, metric in _score_families(table):
    langs = table.languages(family)
    bars = multi_minus_mono_diffs(table, family, metric)
    if not bars:
      continue
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(langs) * len(bars) + 2), 4))
    for i, (name, diffs) in enumerate(bars.items()):
      ax.bar(np.arange(len(langs)) + i * width, diffs, width, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(langs)) + width * (len(bars) - 1) / 2, langs)
    ax.set_ylabel(f"{metric}: multilingual - monolingual")
    ax.set_title(f"{family}: multilingual minus monolingual, per evaluation language")
    ax.legend(fontsize="x-small")
    name = _save(fig, out_dir, f"multi_minus_mono_{family}_{metric}.png")
    out.append((f"Multilingual minus monolingual, {family} {metric}", name,
                "bar = the multilingual run's score minus the score of the run tuned on that "
                "language alone"))
  return out


def _seed_pooled(table: Table, runs, family: str, metric: str):
  """Per-example scores of `family` over runs (seeds) and languages, keyed (seed, task, idx)."""
  per = {}
  for r in runs:
    eval_dir = table.eval_dirs[r.name]
    for lang in table.languages(family):
      got = stats.example_scores(eval_dir, f"{family}.{lang}", metric) or {}
      per.update({(r.tags.get("seed"), lang, i): v for i, v in got.items()})
  return per


def methods_vs_random(table: Table, out_dir: str, k: int = 14) -> list:
  """Each selection method at k against RANDOM: mean over seeds with a 95% interval
  (pooled per-example), and McNemar's paired test against RANDOM (same seeds, same examples)."""
  runs = [r for r in table.evaluated() if r.tags.get("k") == k]
  methods = sorted({r.tags["method"] for r in runs}, key=lambda m: (m == "random", m))
  if "random" not in methods:
    return []
  out, lines = [], []
  for family, metric in _score_families(table):
    rows, tests = [], {}
    random_per = _seed_pooled(table, [r for r in runs if r.tags["method"] == "random"], family, metric)
    for m in methods:
      mruns = [r for r in runs if r.tags["method"] == m]
      values = [table.get(r.name, family, "avg_weighted", metric) for r in mruns]
      per = _seed_pooled(table, mruns, family, metric)
      ci = stats.pooled_interval(per.values())
      rows.append((m, float(np.nanmean(values)), ci))
      if m != "random":
        tests[m] = stats.paired({key[1:] + (key[0],): v for key, v in per.items()},
                                {key[1:] + (key[0],): v for key, v in random_per.items()})
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = np.arange(len(rows))
    means = [v for _, v, _ in rows]
    err = np.array([[v - ci[1], ci[2] - v] if ci else [0, 0] for _, v, ci in rows]).T
    ax.bar(xs, means, yerr=err, capsize=4, color=["C0" if m != "random" else "C7" for m, _, _ in rows])
    for x, (m, v, _) in zip(xs, rows):
      t = tests.get(m)
      if t:
        ax.text(x, v, f"p={t['p_value']:.2g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, [m.upper() for m, _, _ in rows])
    ax.set_ylabel(f"{family} {metric} (mean over seeds)")
    ax.set_title(f"{family}: selection methods at k = {k} against RANDOM")
    name = _save(fig, out_dir, f"methods_vs_random_{family}_{metric}.png")
    out.append((f"Selection methods against RANDOM, {family} {metric}", name,
                "error bars: 95% interval over the examples of all seeds; p: McNemar's exact "
                "test against RANDOM on the same examples and seeds"))
    lines += [f"| {family} | {m.upper()} | {v:.2f} | "
              + (f"{ci[1]:.2f} – {ci[2]:.2f}" if ci else "") + " | "
              + (f"{tests[m]['diff']:+.2f} ({tests[m]['low']:+.2f} – {tests[m]['high']:+.2f}) | {tests[m]['p_value']:.3g}"
                 if tests.get(m) else " | ") + " |" for m, v, ci in rows]
  if lines:
    with open(os.path.join(out_dir, "methods_vs_random.md"), "w", encoding="utf-8") as f:
      f.write("| benchmark | method | score | 95% interval | vs RANDOM (95% interval) | p (McNemar) |\n"
              "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
  return out


def k_scaling(table: Table, out_dir: str) -> list:
  """Score against k per method (mean over seeds); ALL at k = 52."""
  runs = [r for r in table.evaluated() if "k" in r.tags]
  ks = sorted({r.tags["k"] for r in runs})
  if len(ks) < 2:
    return []
  out = []
  for family, metric in _score_families(table):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in sorted({r.tags["method"] for r in runs} - {"all"}):
      points = collections.defaultdict(list)
      for r in runs:
        if r.tags["method"] == m:
          points[r.tags["k"]].append(table.get(r.name, family, "avg_weighted", metric))
      xs = sorted(points)
      ax.plot(xs, [np.nanmean(points[x]) for x in xs], "-o", label=m.upper())
    for r in runs:
      if r.tags["method"] == "all":
        ax.plot([r.tags["k"]], [table.get(r.name, family, "avg_weighted", metric)], "k*",
                markersize=12, label="ALL")
    ax.set_xlabel("k (languages tuned)")
    ax.set_ylabel(f"{family} {metric} (mean over seeds)")
    ax.set_title(f"{family}: score against the number of languages")
    ax.legend(fontsize="x-small")
    name = _save(fig, out_dir, f"k_scaling_{family}_{metric}.png")
    out.append((f"k-scaling, {family} {metric}", name, "mean over the seeds at each k"))
  return out


def langit_deltas(table: Table, out_dir: str) -> list:
  """LANGIT on minus off, per benchmark and language."""
  runs = table.evaluated()
  on = next((r for r in runs if r.tags.get("langit") is True), None)
  off = next((r for r in runs if r.tags.get("langit") is False), None)
  if not (on and off):
    return []
  out = []
  for family, metric in _score_families(table):
    langs = table.languages(family) + ["avg"]
    deltas = [table.get(on.name, family, l, metric) - table.get(off.name, family, l, metric)
              for l in langs]
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(langs) + 2), 3.5))
    ax.bar(np.arange(len(langs)), deltas, color=["C2" if d >= 0 else "C3" for d in deltas])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(langs)), langs)
    ax.set_ylabel(f"{metric}: LANGIT on - off")
    ax.set_title(f"{family}: LANGIT on minus off")
    name = _save(fig, out_dir, f"langit_delta_{family}_{metric}.png")
    out.append((f"LANGIT on minus off, {family} {metric}", name, f"{on.name} - {off.name}"))
  return out
