"""A study grid's chip-hours on a TPU topology (`linguamix study NAME --plan --topology T`).

Each run's training step is compiled for the topology by `linguamix plan`'s machinery
(libtpu's compiler on this host, the trainer's own step): once per distinct set of
training flags, not once per run, since a grid's runs share the model and differ in
their mixture. A run's steps are its TRAIN_STEPS, or TRAIN_EPOCHS x one epoch's packed
rows (counted as `linguamix mixtures show` and the trainer count them) / BATCH_SIZE;
its chip-hours are steps x the roofline estimate of one step x chips: an estimate from
the compiler's program and the chip's published peaks, never a measurement.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from linguamix.studies import run_commands
from linguamix.studies.base import Run

_RUN_FLAGS = ("--gin.MIXTURE_OR_TASK_NAME=", "--gin.MODEL_DIR=")


def _config_key(args: Sequence[str]) -> tuple[str, ...]:
  """A run's training flags without its own mixture and folder: runs with the same key
  compile the same step."""
  return tuple(a for a in args if not a.startswith(_RUN_FLAGS))


def grid_costs(cfg: run_commands.Config, runs: Sequence[Run], topology,
               parse_run: Callable[..., None], say=print) -> dict:
  """Compiles each distinct configuration of `runs` for `topology` and returns per run its
  steps and estimated hours and chip-hours, and the total (see the module doc).
  `parse_run(argv, prog=...)` configures gin from a run's training flags (the command
  layer's `linguamix.cli.plan.parse_run`)."""
  from linguamix.mixtures import epochs
  from linguamix.train import plan

  groups: dict[tuple, list[Run]] = {}
  for run in runs:
    groups.setdefault(_config_key(run_commands.train_args(cfg, run)), []).append(run)
  configs, rows = [], []
  for i, group in enumerate(groups.values()):
    parse_run(run_commands.train_args(cfg, group[0]), prog=f"linguamix study {cfg.study.name}")
    ds = plan.run_value("train_dataset_cfg", required=True)
    total_steps, train_epochs = plan.run_value("total_steps"), plan.run_value("train_epochs")
    converter = plan.run_model_class().feature_converter_cls(pack=ds.pack)
    counted = {}
    if total_steps is None:  # the runs' own epochs, counted under their gin configuration
      for run in group:
        try:
          counted[run.name] = epochs.count_epoch(run.mixture, ds.task_feature_lengths, ds.batch_size,
                                                 converter, plan.run_seed()).packed_rows
        except Exception as e:  # noqa: BLE001 - no data or tokenizer here: said per run
          counted[run.name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
    say(f"compiling the training step of {len(group)} run(s) for {topology.name} "
        f"(configuration {i + 1} of {len(groups)})")
    report = plan.plan(topology=topology, **plan.run_settings())
    configs.append({"runs": [r.name for r in group], "report": report})
    step_s = report["estimate"]["step_seconds"] if report["fits"] else None
    for run in group:
      row = {"run": run.name, "mixture": run.mixture, "config": i, "batch_size": ds.batch_size,
             "epochs": train_epochs, "step_seconds": step_s, "fits": report["fits"]}
      packed = counted.get(run.name)
      if isinstance(packed, str):
        row["not_counted"] = packed
      else:
        row["packed_rows"] = packed
        row["steps"] = int(total_steps) if total_steps is not None else math.ceil(
            train_epochs * packed / ds.batch_size - 1e-9)
        if step_s is not None:
          row["hours"] = row["steps"] * step_s / 3600
          row["chip_hours"] = row["hours"] * topology.chips
      rows.append(row)
  costed = [r for r in rows if "chip_hours" in r]
  return {"topology": topology.name, "chips": topology.chips, "chip": topology.chip.name,
          "configs": configs, "runs": rows,
          "total_chip_hours": sum(r["chip_hours"] for r in costed), "runs_costed": len(costed),
          "kind": "roofline estimate, not a measurement"}


def _run_line(r: dict) -> str:
  if not r["fits"]:
    return f"{r['run']}: does not fit (see below)"
  if "not_counted" in r:
    return f"{r['run']}: epoch not counted here ({r['not_counted']})"
  how = (f"{r['epochs']:g} epochs x {r['packed_rows']:,} packed rows / batch {r['batch_size']} = "
         if r.get("packed_rows") is not None else "TRAIN_STEPS ")
  return (f"{r['run']}: {how}{r['steps']:,} steps x {r['step_seconds'] * 1e3:.2f} ms = "
          f"{r['hours']:.4g} h, {r['chip_hours']:.4g} chip-hours")


def total_line(c: dict) -> str:
  n = len(c["runs"])
  part = "" if c["runs_costed"] == n else f" ({c['runs_costed']} of {n} runs costed)"
  return f"total ({n} runs): {c['total_chip_hours']:.4g} chip-hours{part}"


def header_lines(c: dict) -> list[str]:
  """Lines for commands.sh's header (each to be prefixed by '# ')."""
  from linguamix.train import plan
  lines = [f"chip-hours on {c['topology']} ({c['chips']} x {c['chip']}): roofline ESTIMATE "
           "of the compiled step, not a measurement (plan.md)"]
  lines += ["  " + _run_line(r) for r in c["runs"]]
  lines.append("  " + total_line(c))
  lines += ["  " + plan.does_not_fit_line(x["report"]) for x in c["configs"] if not x["report"]["fits"]]
  return lines


def markdown(c: dict, study: str) -> str:
  """OUT/plan.md: the compiled configurations and the per-run table."""
  from linguamix.train import plan
  out = [f"# {study}: chip-hours on {c['topology']}", "",
         f"{c['chips']} x {c['chip']}. Every figure is a roofline **estimate** from the TPU "
         "compiler's program for the run's own training step and the chip's published peaks "
         "(docs/tpu_planning.md), not a measurement. Steps = TRAIN_EPOCHS x one epoch's "
         "packed rows / BATCH_SIZE (or TRAIN_STEPS).", ""]
  for i, x in enumerate(c["configs"]):
    r = x["report"]
    mem = r["memory"].get("total") or r["memory"].get("compiler_total")
    head = (f"Configuration {i + 1} ({len(x['runs'])} runs): mesh "
            + " x ".join(f"{k} {v}" for k, v in r["mesh"].items())
            + f", batch {r['batch_size']}, {r['params']:,} parameters, {r['optimizer']}; "
            f"{plan.format_bytes(mem)} of {plan.format_bytes(r['hbm_bytes'])} HBM per chip")
    if r["fits"]:
      e = r["estimate"]
      head += (f"; estimated step {e['step_seconds'] * 1e3:.2f} ms ({e['bound']}-bound), "
               f"MFU {100 * e['mfu']:.1f}%")
    else:
      head += f"; {plan.does_not_fit_line(r)}"
    out += [head, ""]
  out += ["| run | mixture | packed rows / epoch | epochs | steps | est. hours | est. chip-hours |",
          "|---|---|---:|---:|---:|---:|---:|"]
  for r in c["runs"]:
    if "chip_hours" in r:
      cells = [f"{r['packed_rows']:,}" if r.get("packed_rows") is not None else "",
               f"{r['epochs']:g}" if r["epochs"] is not None else "", f"{r['steps']:,}",
               f"{r['hours']:.4g}", f"{r['chip_hours']:.4g}"]
    else:
      why = "does not fit" if not r["fits"] else f"not counted: {r['not_counted']}"
      cells = [why, "", "", "", ""]
    out.append(f"| {r['run']} | {r['mixture']} | " + " | ".join(cells) + " |")
  out += [f"| **total** | | | | | | **{c['total_chip_hours']:.4g}** |", "", total_line(c), ""]
  return "\n".join(out)
