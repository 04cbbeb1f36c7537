"""`linguamix study NAME --plan --topology T`: a grid's chip-hours from its runs' own
training step, compiled by libtpu's TPU compiler on this CPU.

Each run's line is checked against figures made without the study code: the packed rows
of one epoch as the trainer counts them (`epochs.count_epoch`) and the step estimate
`python -m linguamix.train --compile_only` gives for that run's exact command line in
commands.sh.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shlex

import pytest

from linguamix import cli

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


def test_unknown_topology_is_one_error_line_and_writes_nothing(tmp_path, capsys):
  out = tmp_path / "study"
  rc = cli.main(["study", "sphinx", "--smoke", "--out", str(out), "--plan", "--topology", "v7-8"])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1
  assert err[0].startswith("linguamix study: error: unknown topology 'v7-8'; known: v4-8, ")
  assert not out.exists()
  assert cli.main(["study", "sphinx", "--smoke", "--out", str(out), "--topology", "v5e-4"]) == 2
  assert capsys.readouterr().err.strip() == "linguamix study: error: --topology T needs --plan"


@pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu not installed (pip install 'linguamix[tpu]')")
@pytest.mark.slow
def test_grid_chip_hours_are_runs_times_epochs_times_the_step_estimate(tmp_path, capsys):
  from linguamix.mixtures import epochs
  from linguamix.models import feature_converters
  from linguamix.cli import flags
  from linguamix.cli import train as train_main
  out = tmp_path / "study"
  # The smoke grid (2 runs, tiny mT5, the bundled sample set) with the preset's 3 epochs
  # instead of the smoke setting's 2 steps.
  assert cli.main(["study", "sphinx", "--smoke", "--out", str(out), "--plan", "--topology", "v5e-4",
                   "--gin.TRAIN_STEPS=None"]) == 0
  printed = capsys.readouterr().out
  assert printed.count("compiling the training step") == 1  # one configuration, two runs
  lines = (out / "commands.sh").read_text().splitlines()
  header = [l[2:] for l in lines if l.startswith("# ")]
  run_lines = [l for l in lines if l.startswith("LINGUAMIX_EVAL_DATA_ROOT=")]
  assert len(run_lines) == 2

  train_cmd = shlex.split(run_lines[0].split(" && ")[0])
  args = train_cmd[train_cmd.index("linguamix.train") + 1:]
  # One epoch's packed rows as the trainer counts them for TRAIN_EPOCHS, under the run's
  # own gin configuration (smoke settings: batch 4, 32 + 32 tokens, tiny vocabulary).
  flags.parse_and_configure(args, prog="test", description="", run_gin="runs/finetune.gin",
                            required_macros=())
  rows = {name: epochs.count_epoch(name, {"inputs": 32, "targets": 32}, 4,
                                   feature_converters.EncDecFeatureConverter(pack=True), 0).packed_rows
          for name in ("sphinx_tiers", "sphinx_tiers_nolangit")}
  # The per-step estimate of the first run's own command line, planned on its own.
  single = tmp_path / "single.json"
  assert train_main.main(["--compile_only=v5e-4", *args, "--json", str(single)]) == 0
  capsys.readouterr()
  step_s = json.loads(single.read_text())["estimate"]["step_seconds"]

  total = 0.0
  for name, n in rows.items():
    steps = math.ceil(3 * n / 4)
    chip_hours = steps * step_s / 3600 * 4
    total += chip_hours
    assert f"  {name}: 3 epochs x {n:,} packed rows / batch 4 = {steps:,} steps x " \
           f"{step_s * 1e3:.2f} ms = {steps * step_s / 3600:.4g} h, {chip_hours:.4g} chip-hours" in header
    assert f"| {name} | {name} | {n:,} | 3 | {steps:,} |" in (out / "plan.md").read_text()
  assert f"  total (2 runs): {total:.4g} chip-hours" in header
  assert f"**{total:.4g}**" in (out / "plan.md").read_text()
  data = json.loads((out / "plan.json").read_text())
  assert data["total_chip_hours"] == pytest.approx(total) and data["runs_costed"] == 2
