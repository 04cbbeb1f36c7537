"""`linguamix tasks list [--names]`: the registered instruction task families and their languages."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix tasks",
      description="Instruction tasks registered by `import linguamix.t5x_tasks` "
                  "(one task per language: FAMILY.LANG).")
  sub = p.add_subparsers(dest="cmd", required=True)
  ls = sub.add_parser("list", help="print each family, its files and languages")
  ls.add_argument("--names", action="store_true", help="print one task name per line")
  return p


def main(argv: list[str]) -> int:
  args = parser().parse_args(argv)
  import seqio

  from linguamix import t5x_tasks  # registers the tasks (imports TensorFlow)
  names = sorted(n for n in seqio.TaskRegistry.names() if "." in n
                 and n.rsplit(".", 1)[0] in t5x_tasks.FAMILIES)
  if args.names:
    print("\n".join(names))
    return 0
  print(f"data root: {t5x_tasks.data_root()}")
  for name, fam in sorted(t5x_tasks.FAMILIES.items()):
    langs = [n.rsplit(".", 1)[1] for n in names if n.rsplit(".", 1)[0] == name]
    print(f"\n{name}  ({len(langs)} languages, template {fam.template}) — {fam.description}")
    print(f"  files: {fam.train_pattern}"
          + (f", validation {fam.validation_pattern}" if fam.validation_pattern
             else f", validation: {fam.validation_fraction:.0%} held out by id"))
    print("  " + " ".join(langs))
  return 0
