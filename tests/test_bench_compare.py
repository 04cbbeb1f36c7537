"""benchmarks/bench_compare.py runs both steps and reports figures consistent with its rounds;
its FLOP count of the linguamix step agrees with torch's FLOP counter on the transformers step."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_compare.py")


@pytest.fixture(scope="module")
def tiny_run():
  proc = subprocess.run([sys.executable, SCRIPT, "--cases", "tiny", "--rounds", "3", "--steps", "1",
                         "--settle", "0", "--threads", "1", "--json"],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  return lines, json.loads(next(x for x in lines if x.startswith("{")))


def test_ratios_are_those_of_the_rounds(tiny_run):
  _, r = tiny_run
  for clock, key, spread in (("wall", "rounds_s", r), ("cpu", "rounds_cpu_s", r["cpu"])):
    lm, tf = np.array(r[key]["linguamix"]), np.array(r[key]["transformers"])
    assert len(lm) == len(tf) == 3, clock
    assert spread["ratio"] == pytest.approx(float(np.median(tf / lm))), clock
    assert spread["ratio_min"] == pytest.approx(float((tf / lm).min())), clock
  assert r["linguamix_s"] == pytest.approx(float(np.median(r["rounds_s"]["linguamix"])))


def test_work_line_states_each_rate_against_its_gemm(tiny_run):
  lines, r = tiny_run
  work = next(x for x in lines if x.startswith("tiny") and " work " in x)
  gemm = r["gemm_gflops"]
  assert gemm["linguamix"] > 1 and gemm["transformers"] > 1
  rate = r["gflop_per_step"] / r["linguamix_s"]
  assert f"linguamix {rate:.1f} ({100 * rate / gemm['linguamix']:.0f}% of its" in work
  ceiling = r["transformers_s"] / (r["gflop_per_step"] / gemm["linguamix"])
  assert work.endswith(f"at its GEMM rate: {ceiling:.2f}x")


def test_flop_count_matches_torch_flop_counter(tiny_run):
  # torch counts the transformers step's matmuls (forward and backward); XLA's count of
  # the linguamix step adds the elementwise work and the optimizer on top of the same matmuls.
  code = ("import sys; sys.path.insert(0, %r)\n"
          "import bench_compare as bc\n"
          "from torch.utils.flop_counter import FlopCounterMode\n"
          "run, _, _ = bc.transformers_step(bc.CASES['tiny'], 1)\n"
          "with FlopCounterMode(display=False) as fc:\n"
          "  run(1)\n"
          "print(fc.get_total_flops())\n") % os.path.join(ROOT, "benchmarks")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  torch_gflop = int(out.stdout.split()[-1]) / 1e9
  _, r = tiny_run
  assert torch_gflop <= r["gflop_per_step"] <= 1.25 * torch_gflop
