"""The model table in docs/tpu_planning.md is what `python benchmarks/plan_table.py` prints:
its small compiled rows are compiled again here with libtpu's TPU compiler and compared
line by line."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# A small row the doc holds compiled figures for: mT5-small as published but scanned, which
# the compiler refuses for a v5e-4 early (about 30 CPU-seconds; rows that fit run the
# compiler's whole backend, minutes on a few cores).
SMALL = ("mt5_small",)


def _doc_row(row_id: str) -> str:
  sys.path.insert(0, str(REPO / "benchmarks"))
  import plan_table  # noqa: PLC0415 - a script, not a package
  row = next(r for r in plan_table.ROWS if plan_table.row_id(r) == row_id)
  cells = plan_table.format_row(row, None, "").split(" | ")[:3]  # model, tuning, study
  rows = [l for l in (REPO / "docs" / "tpu_planning.md").read_text().splitlines()
          if l.startswith(" | ".join(cells) + " | ")]
  assert len(rows) == 1, row_id
  return rows[0]


def test_unknown_row_is_one_error_line():
  r = subprocess.run([sys.executable, "benchmarks/plan_table.py", "--only", "gpt5"], cwd=REPO,
                     capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
  assert r.returncode == 2 and r.stdout == ""
  assert r.stderr.strip().startswith("plan_table: error: --only gpt5: not a row; rows: mt5_small, ")


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed")
@pytest.mark.slow
def test_small_rows_are_what_the_command_prints():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = str(REPO)
  r = subprocess.run([sys.executable, "benchmarks/plan_table.py", "--only", ",".join(SMALL)],
                     cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
  assert r.returncode == 0, r.stderr[-2000:]
  printed = [l for l in r.stdout.splitlines() if l.startswith("| `")]
  assert printed == [_doc_row(m) for m in SMALL]
  # compiled rows (the compiler's figures), not "not compiled here" rows, and the gin's
  # unscanned layers left for the scanned ones the row names
  assert all("not compiled" not in l and "GiB" in l for l in printed)
  assert all("`scan_layers=True`" in l for l in printed)


def test_row_flags_carry_lora_and_the_rows_bindings():
  sys.path.insert(0, str(REPO / "benchmarks"))
  import plan_table  # noqa: PLC0415 - a script, not a package
  rows = {plan_table.row_id(r): r for r in plan_table.ROWS}
  assert len(rows) == len(plan_table.ROWS)  # every row can be asked for by --only
  lora = plan_table.flags_of(rows["llama2_7b_lora"])
  assert lora[:2] == ["--gin_file=models/llama2_7b.gin", "--gin_file=models/lora.gin"]
  assert "--gin_file=models/lora.gin" not in plan_table.flags_of(rows["llama2_7b"])
  remat = plan_table.flags_of(rows["mt5_small_remat"])
  assert remat[-2:] == ["--gin.mt5.MT5Config.scan_layers=True",
                        "--gin.mt5.MT5Config.remat_policy='dots_with_no_batch_dims'"]
  assert plan_table.flags_of(rows["mt5_small"])[-1] == "--gin.mt5.MT5Config.scan_layers=True"
