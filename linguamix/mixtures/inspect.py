"""A recipe's composition before any training: examples, tokens, share and id overlap,
what its numbers mean, how it is streamed, and (given lengths) packed batches per epoch."""

from __future__ import annotations

import collections

from linguamix import t5x_tasks
from linguamix.mixtures import registry


def composition(name: str, count_tokens: bool = True, lengths: dict | None = None,
                batch_size: int = 128, seed: int = 0, decoder: bool = False) -> dict:
  """Per language: examples, tokens (inputs + targets, the task's vocabulary; LANGIT
  exemplars not counted), share of the mixture's rate, ids shared with other languages;
  one epoch = all of them once. With `lengths`: packed rows and batches of one epoch
  (seed `seed`; mT5's EncDecFeatureConverter, or DecoderFeatureConverter, as training
  packs: `packing.CONVERTERS`)."""
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
  val_ids = {i for l in recipe.langs for i in selection[l]["validation"]}
  comp = {
      "mixture": name, "description": recipe.description, "family": recipe.family,
      "id_mode": recipe.mode, "seed": recipe.seed, "langit": recipe.use_langit,
      "sampling": recipe.sampling, "counts": recipe.counts,
      "data_root": t5x_tasks.data_root(), "vocabulary": vocabulary_name(),
      "languages": rows, "total_examples": sum(r["examples"] for r in rows),
      "total_tokens": sum(r.get("tokens", 0) for r in rows) if count_tokens else None,
      "distinct_ids": len(all_ids),
      "ids_in_several_languages": sum(n > 1 for n in seen.values()),
      "validation_ids": len(val_ids),
      "validation_ids_trained": len(val_ids & all_ids),
      "epoch": None,
  }
  if lengths:
    from linguamix.mixtures import epochs, packing
    converter = packing.CONVERTERS["decoder" if decoder else "encoder-decoder"]
    count = epochs.count_epoch(name, lengths, batch_size, converter(pack=True), seed)
    comp["epoch"] = {"examples": count.examples, "packed_rows": count.packed_rows,
                     "batch_size": batch_size, "batches": count.batches, "seed": seed,
                     "lengths": dict(count.lengths), "converter": count.converter}
  return comp


def vocabulary_name() -> str:
  """The tasks' vocabulary as a name or path (never an object's repr)."""
  import seqio
  vocab = t5x_tasks.VOCABULARY.resolved
  if isinstance(vocab, seqio.SentencePieceVocabulary):
    return f"SentencePiece {vocab.sentencepiece_model_file} ({vocab.vocab_size:,} ids)"
  return f"{type(vocab).__name__} ({vocab.vocab_size:,} ids)"


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
  stream = ("epoch-exact: each epoch every training example below once, in a seeded order"
            if comp["sampling"] == "epoch" else
            "rate-sampled (SeqIO): each draw picks a language by its share; not epoch-exact")
  lines = [f"mixture {comp['mixture']}: {comp['description']}",
           f"source {comp['family']} under {comp['data_root']}; ids {comp['id_mode']}, "
           f"seed {comp['seed']}{', LANGIT' if comp['langit'] else ''}",
           f"vocabulary {comp['vocabulary']}",
           f"numbers: {comp['counts']}",
           f"stream: {stream}"]
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
  lines.append(f"validation: {comp['validation_ids']:,} distinct ids, "
               f"{comp['validation_ids_trained']:,} of them in any language's training")
  e = comp["epoch"]
  if e:
    lengths = " ".join(f"{k}={v}" for k, v in e["lengths"].items())
    lines.append(f"one epoch (seed {e['seed']}, {e['converter']}, {lengths}): "
                 f"{e['examples']:,} examples"
                 + (f", {comp['total_tokens']:,} tokens" if has_tokens else "")
                 + f" -> {e['packed_rows']:,} packed rows = {e['batches']:,.2f} batches of "
                   f"{e['batch_size']}")
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
