"""`linguamix mixtures show NAME [--json] [--plot FILE.png]` (parsed in
`linguamix.commands.mixtures`); `--write-names` refreshes the table `list` prints."""

from __future__ import annotations

import json
import sys

from linguamix import mixtures
from linguamix.commands import mixtures as command
from linguamix.mixtures import inspect, registry


def run(args) -> int:
  try:
    comp = inspect.composition(args.name, count_tokens=not args.no_tokens,
                               lengths=args.lengths, batch_size=args.batch_size,
                               seed=args.seed, decoder=args.decoder)
  except (mixtures.RecipeError, ValueError, KeyError) as e:
    print(f"linguamix mixtures show: {e}", file=sys.stderr)
    return 1
  if getattr(args, "packing", False):
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
  return registry.name_table()


def main(argv: list[str]) -> int:
  return command.main(argv)


if __name__ == "__main__":
  if sys.argv[1:] == ["--write-names"]:
    entries = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
               for k, v in name_table().items()]  # one line per mixture: small diffs
    command.NAMES_FILE.write_text("{\n" + ",\n".join(entries) + "\n}\n", encoding="utf-8")
    print(f"wrote {command.NAMES_FILE}")
  else:
    sys.exit(main(sys.argv[1:]))
