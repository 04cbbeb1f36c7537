"""`linguamix prepare`: fetch the studies' data, benchmarks and base models, ready to use.

  linguamix prepare data NAME [--langs L ...] [--root DIR] [--dry-run]
  linguamix prepare benchmarks NAME... [--langs L ...] [--root DIR] [--dry-run]
  linguamix prepare model HUB_ID --out DIR [--revision R] [--scan_layers] [--dry-run]
  linguamix prepare t5x mt5_{small,base,large,xl,xxl} --out DIR [--scan_layers] [--dry-run]

Each run is idempotent (what is up to date is neither fetched nor written again, and it
says so), resumable (finished files are kept; the Hub client resumes a dropped transfer),
and ends by reading what it wrote with the loaders the tasks use. Hub access goes through
huggingface_hub (HF_TOKEN, HF_HOME, HF_ENDPOINT apply); gs:// through tf.io.gfile.
"""

from __future__ import annotations

import argparse
import os
import sys

# Kept here (not imported from the tables) so that `--help` imports nothing heavy;
# tests/test_prepare.py checks they match the tables.
DATA_NAMES = ("aya", "alpaca_x", "bactrian_x", "lima_x", "oasst1")
BENCHMARK_NAMES = ("belebele", "flores", "mt_bench_x", "paws_x", "xcopa", "xnli", "xquad",
                   "xstorycloze", "xwinograd")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="linguamix prepare", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="Layouts relied on and conversions: linguamix/prepare/instruction_data.py, "
             "benchmark_data.py, checkpoints.py.")
  sub = parser.add_subparsers(dest="command", required=True)
  dry = dict(action="store_true", help="print what would be fetched and its size; fetch nothing")

  d = sub.add_parser("data", help="an instruction set of spec/datasets.md, from the Hub")
  d.add_argument("name", choices=DATA_NAMES)
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


def _data(args) -> None:
  from linguamix.prepare import check, instruction_data, jobs
  ds = instruction_data.DATASETS[args.name]
  root = _root(args, ("LINGUAMIX_DATA_ROOT",))
  langs = _langs(args.langs, ds.langs, args.name)
  print(f"prepare data {args.name} -> {root}")
  jobs.Runner(root).run(ds.jobs(langs), dry_run=args.dry_run)
  if not args.dry_run:
    check.data_counts(args.name, root, langs, ds.sparse)


def _benchmarks(args) -> None:
  from linguamix.prepare import benchmark_data, check, jobs
  root = _root(args, ("LINGUAMIX_EVAL_DATA_ROOT", "LINGUAMIX_DATA_ROOT"))
  names = BENCHMARK_NAMES if "all" in args.names else tuple(dict.fromkeys(args.names))
  for name in names:
    bench = benchmark_data.BENCHMARKS[name]
    known = bench.langs()
    langs = _langs([l for l in args.langs if l in known] if args.langs and len(names) > 1
                   else args.langs, known, name)
    if not langs:
      print(f"prepare benchmarks {name}: none of --langs {' '.join(args.langs)}; skipped")
      continue
    print(f"prepare benchmarks {name} -> {root}")
    jobs.Runner(root).run(bench.jobs(langs), dry_run=args.dry_run)
    if not args.dry_run:
      check.benchmark_counts(name, root, langs)


def _model(args) -> None:
  from linguamix.prepare import checkpoints
  print(f"prepare model {args.hub_id} -> {args.out}")
  checkpoints.prepare_model(args.hub_id, args.out, args.revision, args.scan_layers, args.dry_run)


def _t5x(args) -> None:
  from linguamix.prepare import checkpoints
  print(f"prepare t5x {args.name} -> {args.out}")
  checkpoints.prepare_t5x(args.name, args.out, args.source_root, args.scan_layers,
                          args.dry_run, args.keep_download)


def main(argv: list[str]) -> int:
  args = _parser().parse_args(argv)
  from linguamix.prepare.hub import PrepareError
  try:
    {"data": _data, "benchmarks": _benchmarks, "model": _model, "t5x": _t5x}[args.command](args)
  except PrepareError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("interrupted: finished files are kept; run the same command again to continue",
          file=sys.stderr)
    return 130
  return 0
