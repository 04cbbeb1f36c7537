"""A recipe's composition before any training: examples, tokens, share and id overlap."""

from __future__ import annotations

import collections

from linguamix import t5x_tasks
from linguamix.mixtures import registry


def composition(name: str, count_tokens: bool = True) -> dict:
  """Per language: examples, tokens (inputs + targets, the task's vocabulary; LANGIT
  exemplars not counted), share of the mixture's rate, ids shared with other languages."""
  mixture = registry.get(name)
  selection = mixture.check()
  recipe = mixture.recipe
  total_rate = sum(mixture.get_rate(t) for t in mixture.tasks)
  seen = collections.Counter(i for l in recipe.langs for i in set(selection[l]["train"]))
  rows = []
  for lang in recipe.langs:
    ids = selection[lang]["train"]
    task = recipe.task_name(lang)
    row = {"lang": lang, "task": task, "examples": len(ids),
           "validation": len(selection[lang]["validation"]),
           "share": mixture.get_rate(_task(task)) / total_rate,
           "overlapping_ids": sum(seen[i] > 1 for i in set(ids))}
    if count_tokens:
      row["tokens"] = _tokens(task)
    rows.append(row)
  all_ids = set(seen)
  return {
      "mixture": name, "description": recipe.description, "family": recipe.family,
      "id_mode": recipe.mode, "seed": recipe.seed, "langit": recipe.use_langit,
      "data_root": t5x_tasks.data_root(), "vocabulary": repr(t5x_tasks.VOCABULARY),
      "languages": rows, "total_examples": sum(r["examples"] for r in rows),
      "total_tokens": sum(r.get("tokens", 0) for r in rows) if count_tokens else None,
      "distinct_ids": len(all_ids),
      "ids_in_several_languages": sum(n > 1 for n in seen.values()),
  }


def _task(name):
  import seqio
  return seqio.get_mixture_or_task(name)


def _tokens(task_name: str) -> int:
  source = t5x_tasks.tasks.task_source(task_name)
  texts = []
  for rec in source.examples("train"):
    texts += source.source.render(rec)
  vocab = t5x_tasks.VOCABULARY.resolved
  sp = getattr(vocab, "tokenizer", None)
  if sp is not None:  # SentencePiece: batch-encode in C++
    return sum(map(len, sp.encode(texts))) + len(texts) // 2  # + EOS per target
  return sum(len(vocab.encode(t)) for t in texts) + len(texts) // 2


def format_table(comp: dict) -> str:
  lines = [f"mixture {comp['mixture']}: {comp['description']}",
           f"source {comp['family']} under {comp['data_root']}; ids {comp['id_mode']}, "
           f"seed {comp['seed']}{', LANGIT' if comp['langit'] else ''}"]
  has_tokens = comp["total_tokens"] is not None
  head = f"{'lang':<6}{'examples':>10}" + (f"{'tokens':>12}" if has_tokens else "") + \
      f"{'share':>9}{'validation':>12}{'ids also in other langs':>25}"
  lines += ["", head, "-" * len(head)]
  for r in comp["languages"]:
    lines.append(f"{r['lang']:<6}{r['examples']:>10,}" +
                 (f"{r['tokens']:>12,}" if has_tokens else "") +
                 f"{r['share']:>9.2%}{r['validation']:>12,}{r['overlapping_ids']:>25,}")
  lines.append("-" * len(head))
  lines.append(f"{'total':<6}{comp['total_examples']:>10,}" +
               (f"{comp['total_tokens']:>12,}" if has_tokens else "") + f"{1:>9.0%}")
  lines.append(f"{comp['distinct_ids']:,} distinct ids; {comp['ids_in_several_languages']:,} "
               "of them in more than one language")
  return "\n".join(lines)


def plot(comp: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  langs = [r["lang"] for r in comp["languages"]]
  fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(langs) + 1.5), 3.5))
  bars = ax.bar(langs, [r["examples"] for r in comp["languages"]], color="#4477aa")
  ax.bar_label(bars, fontsize=7)
  ax.set_yscale("log")
  ax.set_ylabel("examples (log)")
  ax.set_title(f"{comp['mixture']}: {comp['total_examples']:,} examples")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
