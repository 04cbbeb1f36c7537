"""`linguamix mixtures list | show NAME [--json] [--plot FILE.png]`."""

from __future__ import annotations

import argparse
import collections
import json
import sys


def _lengths(text: str) -> dict:
  try:
    values = [int(v) for v in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"--lengths {text!r}: expected IN or IN,TGT (integers)")
  if len(values) not in (1, 2) or min(values) < 1:
    raise argparse.ArgumentTypeError(f"--lengths {text!r}: expected IN or IN,TGT (integers > 0)")
  return {"inputs": values[0], "targets": values[-1]}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="linguamix mixtures",
      description="Inspect the recipe mixtures registered by `import linguamix.mixtures` "
                  "before training on them.")
  sub = parser.add_subparsers(dest="cmd", required=True)
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
  args = parser.parse_args(argv)
  from linguamix import mixtures
  from linguamix.mixtures import inspect, registry
  if args.cmd == "list":
    by_family = collections.defaultdict(list)
    for name, fam in registry.FAMILY_OF.items():
      if fam == "linguistic" and not args.all and "_k14_" not in name and name != "li_all":
        continue
      by_family[fam].append(name)
    for fam, names in by_family.items():
      print(f"{fam} ({len(names)})")
      for name in names:
        print(f"  {name:<36} {registry.DESCRIPTIONS[name]}")
    if not args.all:
      print("(li_{typo,geo,learn,sem,fam,random}_k{1..14,20,26,52}_s{66,42,10} exist too; "
            "--all lists them)")
    return 0
  try:
    comp = inspect.composition(args.name, count_tokens=not args.no_tokens,
                               lengths=args.lengths, batch_size=args.batch_size,
                               seed=args.seed, decoder=args.decoder)
  except (mixtures.RecipeError, ValueError, KeyError) as e:
    print(f"linguamix mixtures show: {e}", file=sys.stderr)
    return 1
  print(json.dumps(comp, indent=1) if args.json else inspect.format_table(comp))
  if args.plot:
    inspect.plot(comp, args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)
  return 0
