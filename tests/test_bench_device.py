"""benchmarks/device_mfu.py --dry-run: the device check's programs (the trainer's step for
the ~1B decoder and mT5-large, bf16, scan, remat, fused attention, chunked loss) compile
and train at a reduced size on the CPU, and the table reports every row."""

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_mfu_dry_run_compiles_and_trains_each_model(tmp_path):
  out = tmp_path / "rows.json"
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "device_mfu.py"), "--dry-run", "--steps", "1",
       "--rows", "1", "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "DRY RUN" in proc.stdout and "decoder_1b" in proc.stdout and "mt5_large" in proc.stdout
  rows = json.loads(out.read_text())["rows"]
  assert [(r["model"], r["attention"], r["remat"], r["scan"]) for r in rows] == [
      ("decoder_1b", "fused", "none", True), ("mt5_large", "fused", "none", True)]
  for r in rows:
    assert "note" not in r, r  # no failure, no out-of-memory
    assert r["step_s"] > 0 and r["tokens_per_s"] > 0 and r["model_tflop"] > 0 and r["attn_tflop"] > 0
    assert math.isfinite(r["loss"]) and r["loss"] > 0
