"""`linguamix tasks list [--names]`; runs `linguamix.t5x_tasks.cli.run`."""

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
  from linguamix.t5x_tasks import cli
  return cli.run(args)
