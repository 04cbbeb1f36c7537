"""`linguamix select-languages`: `linguamix.mixtures.language_selection` from the command line."""

from __future__ import annotations

import argparse
import json
import sys

# = language_selection.METHODS (a test keeps them equal): known here without importing it.
METHODS = ("typo", "geo", "learn", "sem", "fam", "random", "all")


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix select-languages",
      description="Choose k of Bactrian-X's 52 languages the way Soykan & Şahin (2024) do: "
                  "k-means on lang2vec typology (typo), geography (geo), learned vectors "
                  "(learn) or semantic-typology embeddings (sem); one per family (fam); "
                  "random; or all. Prints the ISO 639-1 codes, sorted, comma-separated.")
  p.add_argument("--method", required=True, type=str.lower, choices=METHODS,
                 help="selection method")
  p.add_argument("--k", type=int, default=None,
                 help="number of languages (required except for --method all)")
  p.add_argument("--seed", type=int, default=42,
                 help="k-means / shuffle seed (the study's replicates: 66, 42, 10)")
  p.add_argument("--pool", default=None,
                 help="comma-separated ISO 639-1 codes to choose from (default: the 52)")
  p.add_argument("--sem-embeddings", metavar="FILE", default=None,
                 help="word2vec-format text file of language embeddings keyed by "
                      "ISO 639-3 (required for --method sem)")
  p.add_argument("--json", action="store_true",
                 help="print details: features, cluster and centroid distance of every "
                      "language, exclusions")
  return p


def main(argv: list[str]) -> int:
  p = parser()
  args = p.parse_args(argv)
  if args.k is None and args.method != "all":
    p.error(f"--k is required for --method {args.method}")
  from linguamix.mixtures import language_selection
  from linguamix.t5x_tasks import languages
  pool = args.pool.replace(",", " ").split() if args.pool else None
  k = args.k if args.k is not None else len(pool or languages.BACTRIAN_X)  # --method all
  try:
    details = language_selection.selection_details(args.method, k, args.seed, pool=pool,
                                                   sem_embeddings_path=args.sem_embeddings)
  except (ValueError, FileNotFoundError) as e:
    print(f"linguamix select-languages: error: {e}", file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps(details, indent=2, ensure_ascii=False))
  else:
    print(",".join(details["selected"]))
  return 0
