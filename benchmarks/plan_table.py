"""Every published model gin's training step, compiled for a named TPU topology at its
study preset's batch and lengths: the table in docs/tpu_planning.md.

  python benchmarks/plan_table.py [--only mt5_small,qwen2_0_5b] [--budget_s 3000] [--json FILE]

Each row is `linguamix plan`'s machinery on the row's flags (the model gin, the study
preset gin, the mesh bindings), compiled by libtpu's TPU compiler on this host, no TPU:
per-chip memory from the compiler's analysis, MFU from the roofline estimate, and the
chip-hours of one run of the study = TRAIN_EPOCHS x the run's published example count /
BATCH_SIZE steps x the estimated step. Counting one example per packed row, before
packing (which only lowers the row count), makes that an upper bound; packed rows need
the data and tokenizer (`linguamix study NAME --plan --topology T` counts them). Every
figure is an estimate, never a measured TPU time. Rows run in order until --budget_s is
spent; the rest print "not compiled here" with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One run of each study, as published (docs/recipes.md): examples trained per epoch.
STUDY_RUN = {
    "pinch": ("studies/pinch.gin", "pinch_p10", 4640),                       # the fixed budget
    "better_alpaca": ("studies/better_alpaca.gin", "better_alpaca_mono_en", 51760),  # Alpaca-cleaned
    "better_alpaca_full": ("studies/better_alpaca_full.gin", "better_alpaca_mono_en", 51760),
    "linguistic": ("studies/linguistic.gin", "li_typo_k14_s42", 14 * 4786),  # 4,786 x 14 languages
    "opengptx": ("studies/opengptx.gin", "opengptx_limax_en", 1030),         # LIMA-X, one language
    "sphinx": ("studies/sphinx.gin", "sphinx_tiers", 3_300_000),             # the default tiers
}
# The mT5 gins run unscanned layers without remat (T5X's checkpoint layout, sized for
# small batches). The table compiles them as a pod run would: scanned, as a checkpoint
# converted with `--scan_layers` runs them (the TPU compiler spends tens of minutes on
# 8 + 8 unrolled layers on a few cores), first with the gin's remat policy, then with the
# decoder gins' where that does not fit. (row id suffix, extra gin bindings)
MT5_SCANNED = ("", ("--gin.mt5.MT5Config.scan_layers=True",))
MT5_SCANNED_REMAT = ("_remat", MT5_SCANNED[1] + ("--gin.mt5.MT5Config.remat_policy='dots_with_no_batch_dims'",))
# model gin, fine-tuning, study, topology, mesh (data, fsdp, model)[, (id suffix, gin bindings)]
ROWS = [
    ("mt5_small", "full", "pinch", "v5e-4", (4, 1, 1), MT5_SCANNED),
    ("mt5_small", "full", "pinch", "v5e-4", (4, 1, 1), MT5_SCANNED_REMAT),
    ("qwen2_0_5b", "full", "opengptx", "v5e-4", (1, 4, 1)),  # compiled: does not fit (docs)
    ("umt5_small", "full", "pinch", "v5e-4", (4, 1, 1), MT5_SCANNED_REMAT),
    ("qwen3_0_6b", "full", "opengptx", "v5p-8", (1, 4, 1)),
    ("gemma3_1b", "full", "opengptx", "v5p-8", (1, 4, 1)),
    ("bloom_560m", "full", "better_alpaca_full", "v5p-8", (1, 4, 1)),
    ("pythia_1b", "full", "opengptx", "v5p-8", (1, 4, 1)),
    ("mt5_base", "full", "pinch", "v5e-4", (1, 4, 1), MT5_SCANNED_REMAT),
    ("umt5_base", "full", "pinch", "v5e-4", (1, 4, 1), MT5_SCANNED_REMAT),
    ("qwen2_1_5b", "full", "opengptx", "v5e-8", (1, 8, 1)),
    ("bloom_1b7", "full", "better_alpaca_full", "v5e-8", (1, 8, 1)),
    ("mgpt", "full", "better_alpaca_full", "v5e-8", (1, 8, 1)),
    ("gemma_2b", "full", "opengptx", "v5e-8", (1, 8, 1)),
    ("gemma2_2b", "full", "opengptx", "v5e-8", (1, 8, 1)),
    ("phi3_mini", "full", "sphinx", "v5p-8", (1, 4, 1)),
    ("llama2_7b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("llama2_7b", "lora", "better_alpaca", "v5e-8", (1, 8, 1)),
    ("mistral_7b", "full", "sphinx", "v5p-16", (1, 8, 1)),
    ("llama3_8b", "lora", "linguistic", "v5e-8", (1, 8, 1)),
    ("llama3_1_8b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("qwen2_7b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("qwen3_8b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("bloom_7b1", "full", "better_alpaca_full", "v5p-16", (1, 8, 1)),
    ("bloom_7b1", "lora", "better_alpaca", "v5e-8", (1, 8, 1)),
    ("pythia_6_9b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("gemma2_9b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("pythia_12b", "full", "opengptx", "v5p-16", (1, 8, 1)),
    ("mt5_large", "full", "pinch", "v5e-8", (1, 8, 1), MT5_SCANNED_REMAT),
    ("mt5_xl", "full", "pinch", "v5p-8", (1, 4, 1), MT5_SCANNED_REMAT),
    ("umt5_xl", "full", "pinch", "v5p-8", (1, 4, 1), MT5_SCANNED_REMAT),
    ("mt5_xxl", "full", "pinch", "v5p-16", (1, 8, 1), MT5_SCANNED_REMAT),
    ("mixtral_8x7b", "lora", "linguistic", "v5p-16", (1, 8, 1)),
]
HEADER = ("| model | fine-tuning | study (run) | batch x lengths, steps of one run | topology | mesh "
          "(data x fsdp x model) | HBM per chip (compiler) | est. MFU | est. chip-hours, one run (<=) |")
RULE = "|---|---|---|---|---|---|---|---:|---:|"


def row_id(row) -> str:
  return f"{row[0]}" + ("_lora" if row[1] == "lora" else "") + (row[5][0] if len(row) > 5 else "")


def flags_of(row) -> list[str]:
  model, tuning, study, _, (data, fsdp, tp), *extra = row
  lora = ["--gin_file=models/lora.gin"] if tuning == "lora" else []
  return [f"--gin_file=models/{model}.gin", *lora, f"--gin_file={STUDY_RUN[study][0]}",
          "--gin.MIXTURE_OR_TASK_NAME='none'", "--gin.INITIAL_CHECKPOINT_PATH=None",
          f"--gin.partitioning.Partitioner.data={data}", f"--gin.partitioning.Partitioner.fsdp={fsdp}",
          f"--gin.partitioning.Partitioner.model={tp}", *(extra[0][1] if extra else ())]


def compile_row(row) -> dict:
  from linguamix.cli import plan as plan_cli
  from linguamix.train import plan
  topology = plan.parse_topology(row[3])
  plan_cli.parse_run(flags_of(row), prog="plan_table")
  settings = plan.run_settings(rows_per_epoch=STUDY_RUN[row[2]][2])
  return plan.plan(topology=topology, **settings)


def format_row(row, r: dict | None, why: str | None = None) -> str:
  from linguamix.train import plan
  model, tuning, study, topology, mesh = row[:5]
  _, run, examples = STUDY_RUN[study]
  extra = row[5][1] if len(row) > 5 else ()
  cells = [f"`{model}`", tuning + "".join(f", `{b.rsplit('.', 1)[-1]}`" for b in extra), f"{study.replace('_full', '')} (`{run}`, {examples:,} examples)"]
  if r is None:
    return "| " + " | ".join(cells + ["", topology, " x ".join(map(str, mesh)),
                                      f"not compiled here: {why}", "", ""]) + " |"
  lengths = " + ".join(str(v) for k, v in r["feature_lengths"].items()
                       if k in ("encoder_input_tokens", "decoder_target_tokens"))
  cells.append(f"{r['batch_size']} x {lengths}, {_steps(r)}")
  cells += [topology, " x ".join(str(v) for v in r["mesh"].values())]
  need = r["memory"].get("total") or r["memory"].get("compiler_total")
  if not r["fits"]:
    cells += [f"does not fit: {plan.format_bytes(need)} > {plan.format_bytes(r['hbm_bytes'])}", "", ""]
  else:
    cells += [f"{plan.format_bytes(need)} of {plan.format_bytes(r['hbm_bytes'])}",
              f"{100 * r['estimate']['mfu']:.1f}%" + ("*" if _loops_counted_once(r) else ""),
              f"{r['run']['chip_hours']:.3g}" if "run" in r else ""]
  return "| " + " | ".join(cells) + " |"


def _loops_counted_once(r: dict) -> bool:
  """XLA's cost analysis counts a loop's body once; `plan` counts scanned layers and
  microbatches from the unrolled step, and where that did not compile the MFU is a ceiling
  only (marked *)."""
  return "once" in r["flops"]["xla_counted"]


def _steps(r: dict) -> str:
  steps = r.get("run", {}).get("steps")
  return f"{steps:,} steps" if steps else "not costed"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--only", help="comma-separated row ids (model gin names; LoRA rows end in _lora, mT5 rows "
                 "with the decoders' remat policy in _remat)")
  p.add_argument("--budget_s", type=float, default=None,
                 help="stop starting new compiles after S seconds (the rest say so)")
  p.add_argument("--json", help="also write every row's plan report here")
  args = p.parse_args(argv)
  rows = ROWS
  if args.only:
    wanted = args.only.split(",")
    unknown = sorted(set(wanted) - {row_id(r) for r in ROWS})
    if unknown:
      print(f"plan_table: error: --only {','.join(unknown)}: not a row; rows: "
            + ", ".join(row_id(r) for r in ROWS), file=sys.stderr)
      return 2
    rows = [r for r in ROWS if row_id(r) in wanted]
  t0 = time.time()
  print(HEADER)
  print(RULE)
  reports = {}
  for row in rows:
    if args.budget_s is not None and time.time() - t0 >= args.budget_s:
      print(format_row(row, None, f"not reached within --budget_s {args.budget_s:.0f} s on this host"),
            flush=True)
      continue
    try:
      r = compile_row(row)
    except Exception as e:  # noqa: BLE001 - the row says why, the table goes on
      print(format_row(row, None, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}"),
            flush=True)
      continue
    reports[row_id(row)] = r
    print(format_row(row, r), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(reports, f, indent=1, default=str)
  return 0


if __name__ == "__main__":
  sys.exit(main())
