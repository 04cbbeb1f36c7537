"""`linguamix mixtures list | show NAME`: `list` reads the name table, `show` builds.

`list` prints `linguamix/mixtures/names.json` (name -> family, description, in
registration order), written from the registry by `python -m linguamix.cli.mixtures
--write-names` and checked against it by the tests, so listing imports nothing heavy.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

NAMES_FILE = pathlib.Path(__file__).resolve().parents[1] / "mixtures" / "names.json"


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix mixtures",
      description="Inspect the recipe mixtures registered by `import linguamix.mixtures` "
                  "before training on them.")
  sub = p.add_subparsers(dest="cmd", required=True)
  ls = sub.add_parser("list", help="the registered recipe mixtures, by study")
  ls.add_argument("--all", action="store_true",
                  help="list every linguistically-informed variant, not just k=14")
  show = sub.add_parser("show", help="per language: examples, tokens, share, id overlap")
  show.add_argument("name", help="mixture name, e.g. pinch_40shot")
  show.add_argument("--json", action="store_true", help="print JSON instead of a table")
  show.add_argument("--plot", metavar="FILE.png", help="also write a bar chart")
  show.add_argument("--no-tokens", action="store_true", help="skip token counting (faster)")
  show.add_argument("--lengths", metavar="IN[,TGT]", type=_lengths,
                    help="also count one epoch's packed rows and batches at these lengths, "
                         "e.g. 512 or 512,256 (inputs,targets)")
  show.add_argument("--batch-size", type=int, default=128, help="for --lengths (default 128)")
  show.add_argument("--seed", type=int, default=0, help="the order packed for --lengths")
  show.add_argument("--decoder", action="store_true",
                    help="pack for a decoder-only model (default: mT5 encoder-decoder)")
  show.add_argument("--packing", action="store_true",
                    help="also: length distribution, SeqIO packing efficiency (at --lengths) and "
                         "suggested TASK_FEATURE_LENGTHS that pack >= 92%% of a sample (>= 90%% in training)")
  return p


def _lengths(text: str) -> dict:
  try:
    values = [int(v) for v in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"--lengths {text!r}: expected IN or IN,TGT (integers)")
  if len(values) not in (1, 2) or min(values) < 1:
    raise argparse.ArgumentTypeError(f"--lengths {text!r}: expected IN or IN,TGT (integers > 0)")
  return {"inputs": values[0], "targets": values[-1]}


def names() -> dict[str, tuple[str, str]]:
  """name -> (family, description) of every recipe mixture, in registration order."""
  return {n: tuple(v) for n, v in json.loads(NAMES_FILE.read_text(encoding="utf-8")).items()}


def print_list(show_all: bool) -> None:
  by_family = collections.defaultdict(list)
  for name, (family, description) in names().items():
    if family == "linguistic" and not show_all and "_k14_" not in name and name != "li_all":
      continue
    by_family[family].append((name, description))
  for family, entries in by_family.items():
    print(f"{family} ({len(entries)})")
    for name, description in entries:
      print(f"  {name:<36} {description}")
  if not show_all:
    print("(li_{typo,geo,learn,sem,fam,random}_k{1..14,20,26,52}_s{66,42,10} exist too; "
          "--all lists them)")


def main(argv: list[str]) -> int:
  args = parser().parse_args(argv)
  if args.cmd == "list":
    print_list(args.all)
    return 0
  from linguamix import mixtures  # registers the recipes (imports TensorFlow)
  from linguamix.mixtures import inspect
  try:
    comp = inspect.composition(args.name, count_tokens=not args.no_tokens,
                               lengths=args.lengths, batch_size=args.batch_size,
                               seed=args.seed, decoder=args.decoder)
  except (mixtures.RecipeError, ValueError, KeyError) as e:
    print(f"linguamix mixtures show: {e}", file=sys.stderr)
    return 1
  if args.packing:
    from linguamix.mixtures import packing
    comp["packing"] = packing.report(args.name, args.lengths, num_examples=1000,
                                     model="decoder" if args.decoder else "encoder-decoder")
  print(json.dumps(comp, indent=1) if args.json else inspect.format_table(comp))
  if "packing" in comp and not args.json:
    print(packing.format_report(comp["packing"]))
  if args.plot:
    inspect.plot(comp, args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)
  return 0


def name_table() -> dict[str, list[str]]:
  """What `import linguamix.mixtures` registered: name -> [family, description]."""
  from linguamix.mixtures import registry
  return registry.name_table()


def write_names() -> None:
  entries = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
             for k, v in name_table().items()]  # one line per mixture: small diffs
  NAMES_FILE.write_text("{\n" + ",\n".join(entries) + "\n}\n", encoding="utf-8")
  print(f"wrote {NAMES_FILE}")


if __name__ == "__main__":
  if sys.argv[1:] == ["--write-names"]:
    write_names()
  else:
    sys.exit(main(sys.argv[1:]))
