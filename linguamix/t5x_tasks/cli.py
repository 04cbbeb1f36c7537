"""`linguamix tasks list`: the registered instruction task families and their languages
(parsed in `linguamix.commands.tasks`)."""

from __future__ import annotations

import seqio

from linguamix import t5x_tasks


def run(args) -> int:
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


def main(argv: list[str]) -> int:
  from linguamix.commands import tasks
  return tasks.main(argv)
