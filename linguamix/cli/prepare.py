"""`linguamix prepare`: fetch the studies' data, benchmarks and base models, ready to use.

  linguamix prepare data NAME...|all [--langs L ...] [--root DIR] [--dry-run]
  linguamix prepare benchmarks NAME...|all [--langs L ...] [--root DIR] [--dry-run]
  linguamix prepare model HUB_ID --out DIR [--revision R] [--scan_layers] [--dry-run]
  linguamix prepare t5x mt5_{small,base,large,xl,xxl} --out DIR [--scan_layers] [--dry-run]

Each run is idempotent (what is up to date is neither fetched nor written again, and it
says so), resumable (finished files are kept; a killed download continues where it
stopped), and ends by reading what it wrote with the loaders the tasks use. Each output
is done, up to date or failed (why), and one failure does not stop the others; the exit
status is 0 only if everything succeeded, and a rerun does only what is missing. Every
item's licence and gating is printed first (with --dry-run, before anything is fetched).
Hub access goes through huggingface_hub (HF_TOKEN, HF_HOME, HF_ENDPOINT apply); gs://
through tf.io.gfile. Sources, layouts, licences and the evidence for each:
linguamix/prepare/manifest.json and docs/prepare.md.
"""

from __future__ import annotations

import argparse
import os
import sys

# Kept here (not imported from the tables) so that `--help` imports nothing heavy;
# tests/test_prepare.py checks they match the tables.
DATA_NAMES = ("aya", "alpaca_x", "bactrian_x", "lima_x", "oasst1")
BENCHMARK_NAMES = ("belebele", "better_alpaca_test", "flores", "mt_bench_x", "paws_x", "xcopa",
                   "xnli", "xquad", "xstorycloze", "xwinograd")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="linguamix prepare", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="What is fetched from where, its licence, gating and the evidence for each "
             "layout: docs/prepare.md and linguamix/prepare/manifest.json.")
  sub = parser.add_subparsers(dest="command", required=True)
  dry = dict(action="store_true", help="print what would be fetched and its size; fetch nothing")

  d = sub.add_parser("data", help="the studies' instruction sets, from the Hub")
  d.add_argument("names", nargs="+", choices=DATA_NAMES + ("all",), metavar="NAME",
                 help=f"one or more of {', '.join(DATA_NAMES)}, or all")
  d.add_argument("--langs", nargs="+", help="languages (ISO 639-1); default all of the set's")
  d.add_argument("--root", help="data root (default $LINGUAMIX_DATA_ROOT); local or gs://")
  d.add_argument("--dry-run", "--dry_run", dest="dry_run", **dry)

  b = sub.add_parser("benchmarks", help="benchmarks into the eval data root's release layouts")
  b.add_argument("names", nargs="+", choices=BENCHMARK_NAMES + ("all",), metavar="NAME",
                 help=f"one or more of {', '.join(BENCHMARK_NAMES)}, or all")
  b.add_argument("--langs", nargs="+", help="languages (the tasks' codes); default all")
  b.add_argument("--root", help="eval data root (default $LINGUAMIX_EVAL_DATA_ROOT, "
                                "else $LINGUAMIX_DATA_ROOT); local or gs://")
  b.add_argument("--dry-run", "--dry_run", dest="dry_run", **dry)

  m = sub.add_parser("model", help="a Hub checkpoint -> Orbax params + tokenizer (convert import-hf)")
  m.add_argument("hub_id", help="e.g. meta-llama/Llama-2-7b-hf, bigscience/bloom-1b7")
  m.add_argument("--out", required=True, help="folder for INITIAL_CHECKPOINT_PATH and TOKENIZER_PATH")
  m.add_argument("--revision", help="branch, tag or commit (default main)")
  m.add_argument("--scan_layers", action="store_true", help="stack layers (model gin scan_layers=True)")
  m.add_argument("--dry-run", "--dry_run", dest="dry_run", **dry)

  t = sub.add_parser("t5x", help="a public T5X mT5 checkpoint + SentencePiece model (convert import-t5x)")
  t.add_argument("name", metavar="mt5_SIZE", help="mt5_small, mt5_base, mt5_large, mt5_xl or mt5_xxl")
  t.add_argument("--out", required=True, help="folder for INITIAL_CHECKPOINT_PATH (+ sentencepiece.model)")
  t.add_argument("--source_root", default="gs://t5-data",
                 help="bucket (or local mirror) holding pretrained_models/ and vocabs/ "
                      "(default gs://t5-data)")
  t.add_argument("--scan_layers", action="store_true", help="stack layers (model gin scan_layers=True)")
  t.add_argument("--keep_download", action="store_true", help="keep OUT.download/ after converting")
  t.add_argument("--dry-run", "--dry_run", dest="dry_run", **dry)
  return parser


def _root(args, env_vars) -> str:
  root = args.root or next((os.environ[v] for v in env_vars if os.environ.get(v)), None)
  if not root:
    raise _error(f"no data root: pass --root DIR or set ${' or $'.join(env_vars)}")
  return root.rstrip("/")


def _error(message):
  from linguamix.prepare.hub import PrepareError
  return PrepareError(message)


def _langs(asked, known, what) -> tuple:
  if not asked:
    return tuple(known)
  unknown = [l for l in asked if l not in known]
  if unknown:
    raise _error(f"{what} has no language {', '.join(unknown)}; it has {' '.join(known)}")
  return tuple(asked)


def _items(kind: str, table: dict, all_names: tuple, args, root: str, check) -> bool:
  """Runs each named item's jobs and its read-back check; True if everything succeeded."""
  from linguamix.prepare import jobs, manifest
  from linguamix.prepare.hub import PrepareError
  names = all_names if "all" in args.names else tuple(dict.fromkeys(args.names))
  outcomes = {}
  for name in names:
    item = table[name]
    known = item.langs()
    langs = _langs([l for l in args.langs if l in known] if args.langs and len(names) > 1
                   else args.langs, known, name)
    if not langs:
      outcomes[name] = ("skipped", f"none of --langs {' '.join(args.langs)}")
      continue
    print(f"prepare {kind} {name} -> {root}\n  {manifest.terms(manifest.entry(name))}")
    results = jobs.Runner(root).run(item.jobs(langs), dry_run=args.dry_run)
    failed = [r for r in results if r.state == jobs.FAILED]
    written = sum(r.state == jobs.WRITTEN for r in results)
    if args.dry_run:
      outcomes[name] = ("would fail" if failed else "planned", failed[0].why if failed else "")
      continue
    bad = {r.job.lang for r in failed}
    ok = [] if None in bad else [l for l in langs if not bad & {l, *l.split("_")}]
    try:
      if ok:
        check(name, item, root, ok)
    except PrepareError as e:
      outcomes[name] = ("failed", str(e))
      continue
    if failed:
      more = f" (and {len(failed) - 1} more, listed above)" if len(failed) > 1 else ""
      outcomes[name] = ("failed", f"{len(failed)} of {len(results)} outputs: "
                                  f"{failed[0].job.rel}: {failed[0].why}{more}")
    else:
      outcomes[name] = ("done", f"{written} written") if written else ("skipped", "up to date")
  if len(outcomes) > 1:
    states = [o[0] for o in outcomes.values()]
    print(f"summary: " + ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)))
    for name, (state, why) in outcomes.items():
      print(f"  {name}: {state}" + (f" ({why})" if why and state != "failed" else ""))
  for name, (state, why) in outcomes.items():
    if state == "failed":
      print(f"error: {kind} {name}: {why}", file=sys.stderr)
  return all(o[0] != "failed" for o in outcomes.values())


def _data(args) -> bool:
  from linguamix.prepare import check, instruction_data
  root = _root(args, ("LINGUAMIX_DATA_ROOT",))
  return _items("data", instruction_data.DATASETS, DATA_NAMES, args, root,
                lambda name, ds, root, langs: check.data_counts(name, root, langs, ds.sparse))


def _benchmarks(args) -> bool:
  from linguamix.prepare import benchmark_data, check
  root = _root(args, ("LINGUAMIX_EVAL_DATA_ROOT", "LINGUAMIX_DATA_ROOT"))
  return _items("benchmarks", benchmark_data.BENCHMARKS, BENCHMARK_NAMES, args, root,
                lambda name, b, root, langs: check.benchmark_counts(name, root, langs))


def _model(args) -> None:
  from linguamix.prepare import base_checkpoints, manifest
  print(f"prepare model {args.hub_id} -> {args.out}\n  "
        f"{manifest.terms(manifest.by_repo(args.hub_id))}")
  base_checkpoints.prepare_model(args.hub_id, args.out, args.revision, args.scan_layers,
                                args.dry_run)


def _t5x(args) -> None:
  from linguamix.prepare import base_checkpoints, manifest
  print(f"prepare t5x {args.name} -> {args.out}\n  {manifest.terms(manifest.entry('mt5_t5x'))}")
  base_checkpoints.prepare_t5x(args.name, args.out, args.source_root, args.scan_layers,
                               args.dry_run, args.keep_download)


def main(argv: list[str]) -> int:
  args = _parser().parse_args(argv)
  from linguamix.prepare.hub import PrepareError
  try:
    ok = {"data": _data, "benchmarks": _benchmarks, "model": _model, "t5x": _t5x}[args.command](args)
  except PrepareError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("interrupted: finished files are kept; run the same command again to continue",
          file=sys.stderr)
    return 130
  return 1 if ok is False else 0
