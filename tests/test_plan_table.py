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
SMALL = ("qwen2_0_5b",)  # the small rows the doc holds compiled figures for


def _doc_row(model: str) -> str:
  rows = [l for l in (REPO / "docs" / "tpu_planning.md").read_text().splitlines()
          if l.startswith(f"| `{model}` | full |")]
  assert len(rows) == 1, model
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
  # compiled rows (the compiler's figures), not "not compiled here" rows
  assert all("not compiled" not in l and "GiB" in l for l in printed)
