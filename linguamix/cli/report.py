"""`linguamix report RUN... --out DIR`: `linguamix.evals.charts.write_report`."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix report",
      description="Charts from evaluation folders (written by linguamix.evals.runner.evaluate / "
                  "python -m linguamix.eval). One folder: per-language bar charts. Several "
                  "folders (one per tuning recipe): grouped bars and the cross-lingual "
                  "transfer matrix (recipe x evaluation language heatmap + CSV).")
  p.add_argument("runs", nargs="+", help="evaluation output folders (local or gs://)")
  p.add_argument("--out", required=True, help="folder for the PNG/CSV files")
  p.add_argument("--label", action="append",
                 help="name of each run in order (default: the folder name); repeat")
  p.add_argument("--metric", default="acc", help="metric to draw (default: acc)")
  p.add_argument("--family", action="append",
                 help="benchmark family to draw (default: every family found); repeat")
  p.add_argument("--paired", action="store_true",
                 help="with exactly two runs: exact McNemar test per language and pooled per "
                      "family on the examples both scored (acc or acc_norm); writes "
                      "paired_{metric}.csv")
  return p


def main(argv: list[str]) -> int:
  p = parser()
  args = p.parse_args(argv)
  if args.label and len(args.label) != len(args.runs):
    p.error(f"{len(args.label)} --label values for {len(args.runs)} runs")
  if args.paired and len(args.runs) != 2:
    p.error(f"--paired compares exactly two runs; got {len(args.runs)}")
  from linguamix.evals import charts
  return charts.write_report(args.runs, args.out, labels=args.label, metric=args.metric,
                             families=args.family, paired_test=args.paired)
