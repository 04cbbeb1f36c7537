"""`linguamix study NAME --model MODEL_GIN --init CKPT --out DIR [--runs PATTERN] [--plan]
[--smoke] [--judge ENDPOINT] [--report-only] [--executor slurm] [--status]`: a whole study
as one command."""

from __future__ import annotations

import argparse
import os
import sys

from linguamix import _quiet, studies
from linguamix.studies import run_commands


def executor(name: str):
  """The study grid's executor for `--executor subprocess|inprocess`. In process, each
  stage's `python -m` program is the function that program calls on its arguments."""
  from linguamix.studies import grid
  if name == "subprocess":
    return grid.run_subprocess
  import linguamix.cli
  from linguamix.cli import train
  return grid.InProcess({"linguamix.train": train.main, "linguamix.eval": train.eval_main,
                           "linguamix.cli": linguamix.cli.main})


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="linguamix study", fromfile_prefix_chars="@",
      description="A study's published grid of runs (docs/studies.md), each trained with the study's "
                  "gin preset (linguamix/gin/studies/) and evaluated on its benchmarks, then "
                  "OUT/report.md with its figures and OUT/results.csv. Runs are independent: "
                  "finished ones are skipped, a failed one is reported and the rest go on.",
      epilog="Any --gin.NAME=VALUE (or --gin_bindings='NAME = VALUE') is passed to every "
             "training command, after the preset: e.g. --gin.LEARNING_RATE=1e-4. "
             + _quiet.PROCESS_HELP)
  p.add_argument("name", choices=sorted(studies.STUDIES), help="the study")
  p.add_argument("--model", help="model gin (e.g. models/llama2_7b.gin); with --smoke the "
                                 f"default is {run_commands.SMOKE_MODEL}")
  p.add_argument("--init", help="the pretrained checkpoint every run fine-tunes "
                                "(INITIAL_CHECKPOINT_PATH; --smoke trains from scratch)")
  p.add_argument("--out", required=True, help="the study's folder (runs/, report.md, commands.sh)")
  p.add_argument("--runs", help="only the runs whose names match this glob (comma-separated globs)")
  p.add_argument("--preset", help="training preset of the study (default: its first); see --list")
  p.add_argument("--plan", action="store_true",
                 help="write OUT/commands.sh (one exact command line per run) and stop")
  p.add_argument("--smoke", action="store_true",
                 help="a reduced grid on the tiny default model, the bundled sample set and "
                      "bundled XCOPA: minutes on a CPU, the same figures")
  p.add_argument("--judge", metavar="ENDPOINT",
                 help="OpenAI-compatible base URL for the LLM judge (key: $OPENAI_API_KEY); "
                      "without it the judge is skipped, with a note in the report")
  p.add_argument("--judge-model", default="gpt-4", help="judge model name (default gpt-4)")
  p.add_argument("--report-only", action="store_true",
                 help="rebuild OUT/report.md from the runs' files; run nothing")
  p.add_argument("--list", action="store_true", help="print the grid (runs, mixtures) and presets")
  p.add_argument("--executor", choices=("subprocess", "inprocess", "slurm"), default="subprocess",
                 help="subprocess: one python -m per stage, as in commands.sh (default); "
                      "inprocess: the same arguments in this Python (saves start-up time); "
                      "slurm: submit the grid as job arrays (training, then each run's "
                      "evaluation when its training succeeded, the judge, the report) and "
                      "return; scripts and logs in OUT/slurm/. Submitting again sends only "
                      "what is missing or failed")
  slurm = p.add_argument_group("SLURM (--executor slurm, --status)")
  slurm.add_argument("--slurm", action="append", default=[], metavar="[STAGE:]KEY=VALUE,...",
                     help="sbatch options for every job, or for one STAGE (train, eval, judge, "
                          "report), written as #SBATCH lines: e.g. --slurm partition=gpu,"
                          "time=24:00:00 --slurm train:gres=gpu:4,cpus-per-task=16 "
                          "--slurm eval:gres=gpu:1. Repeatable; a later KEY wins. A cluster "
                          "profile: these flags in a file, one per line (--slurm=train:gres=gpu:4), "
                          "given as @FILE")
  slurm.add_argument("--retries", type=int, default=1, metavar="N",
                     help="requeue a run's failed stage at most N times (default 1; a usage "
                          "error, exit 2, is not retried); then failed.json. A stage stopped "
                          "on SIGTERM (preemption, exit 143) is always requeued and resumes "
                          "from its checkpoint")
  slurm.add_argument("--array-parallelism", type=int, metavar="N",
                     help="at most N tasks of each job array at once (--array=...%%N)")
  slurm.add_argument("--status", action="store_true",
                     help="per run: its stage and state from the queue and its files, a "
                          "summary line, and what submitting again would send")
  tpu = p.add_argument_group("TPU pod slices (with --plan)")
  tpu.add_argument("--topology", metavar="T",
                   help="also compile each distinct training configuration of the grid for "
                        "TPU topology T (v5e-16, v4-64, v5p-8, ...; as `linguamix plan`, with "
                        "libtpu on this host, no TPU) and put every run's estimated steps, "
                        "hours and chip-hours and the grid's total in commands.sh's header and "
                        "OUT/plan.md. Runs are TRAIN_EPOCHS x one epoch's packed rows (counted "
                        "from the data, cached) / BATCH_SIZE steps; the step time is a roofline "
                        "estimate, not a measurement (docs/tpu_planning.md)")
  tpu.add_argument("--tpu", metavar="NAME",
                   help="also write OUT/tpu.sh: per run, `gcloud compute tpus tpu-vm ssh NAME "
                        "--worker=all --command=...` running the run's line on every host of the "
                        "slice (jax.distributed starts from the TPU environment); OUT must be "
                        "a folder every host sees at the same path (a shared file system)")
  tpu.add_argument("--zone", help="the TPU VM's zone (with --tpu)")
  p.add_argument("--gin_bindings", action="append", default=[], help=argparse.SUPPRESS)
  return p


def main(argv: list[str]) -> int:
  from linguamix.cli import flags
  try:
    argv, dot = flags.split_gin_dot_flags(list(argv))
  except flags.UsageError as e:
    print(f"linguamix study: error: {e}", file=sys.stderr)
    return 2
  parser = _parser()
  args = parser.parse_args(argv)
  study = studies.STUDIES[args.name]
  bindings = tuple(args.gin_bindings) + tuple(dot)

  def error(message: str) -> int:
    print(f"linguamix study: error: {message}", file=sys.stderr)
    return 2

  other = run_commands.saved_study(args.out)
  if other is not None and other != study.name:
    return error(f"{args.out} holds study {other!r} (its study.json), not {study.name!r}: "
                 "give another --out")
  if args.status and other is None:
    return error(f"{args.out}: no study here (no study.json); nothing was submitted to it")
  if args.tpu and not (args.plan and args.zone):
    return error("--tpu NAME needs --plan and --zone ZONE")
  topology = None
  if args.topology:
    if not args.plan:
      return error("--topology T needs --plan")
    from linguamix.train import plan as plan_lib  # no JAX: names only
    try:
      topology = plan_lib.parse_topology(args.topology)
    except ValueError as e:
      return error(str(e))
  if (args.report_only or args.status) and other is not None:
    cfg = run_commands.load_config(args.out)
  else:
    preset = args.preset or study.default_preset
    if preset not in study.presets:
      return error(f"--preset {preset!r}: study {study.name} has {', '.join(study.presets)}")
    model = args.model or (run_commands.SMOKE_MODEL if args.smoke else None)
    if not args.list and not args.report_only and not args.status:
      if model is None:
        return error("--model MODEL_GIN is required (e.g. models/llama2_7b.gin); "
                     "--smoke uses the tiny default model")
      if not args.init and not args.smoke:
        return error("--init CKPT is required: the pretrained checkpoint every run fine-tunes "
                     "(linguamix convert writes one); --smoke trains the tiny model from scratch")
    cfg = run_commands.Config(study=study, out=args.out, model_gin=model or "",
                          preset=preset, init=args.init, smoke=args.smoke, bindings=bindings,
                          judge=args.judge, judge_model=args.judge_model)
  runs = study.grid(smoke=cfg.smoke, pattern=args.runs)
  if args.runs and not runs:
    return error(f"--runs {args.runs!r} matches none of the {len(study.grid(smoke=cfg.smoke))} "
                 f"runs of {study.name}{' --smoke' if cfg.smoke else ''} (see --list)")

  if args.list:
    print(f"{study.name}: {len(runs)} runs{' (smoke)' if cfg.smoke else ''}; presets: "
          + ", ".join(f"{k} ({v})" for k, v in study.presets.items()))
    for run in runs:
      print(f"  {run.name}" + (f"  (mixture {run.mixture})" if run.mixture != run.name else ""))
    return 0
  if args.status or args.executor == "slurm":
    from linguamix.studies import slurm
    try:
      return _status(cfg, runs) if args.status else _submit(cfg, runs, args)
    except slurm.SlurmError as e:
      return error(str(e))
  os.makedirs(args.out, exist_ok=True)
  if not args.report_only:
    run_commands.save_config(cfg)
  from linguamix.studies import report
  for note in report.preset_notes(cfg):
    print(f"note: {note}")
  if args.plan:
    costs = None
    if topology is not None:
      from linguamix import errors
      from linguamix.cli import plan as plan_cli
      from linguamix.studies import costs as costs_lib
      try:
        costs = costs_lib.grid_costs(cfg, runs, topology, plan_cli.parse_run)
      except (errors.UserError, ValueError) as e:  # gin, mesh or batch; libtpu missing
        return error(str(e))
    path = run_commands.write_plan(cfg, runs, costs)
    print(f"wrote {path} ({len(runs)} runs)")
    if costs is not None:
      from linguamix.studies import costs as costs_lib
      for line in costs_lib.header_lines(costs):
        print(line)
      print(f"wrote {os.path.join(args.out, 'plan.md')}")
    if args.tpu:
      path = run_commands.write_tpu_plan(cfg, runs, args.tpu, args.zone)
      print(f"wrote {path} ({len(runs)} runs, every worker of TPU {args.tpu})")
    if costs is not None and not all(x["report"]["fits"] for x in costs["configs"]):
      return 1  # as `linguamix plan`: a configuration the TPU would refuse
    return 0
  failed = []
  if not args.report_only:
    from linguamix.studies import grid
    print(f"linguamix study {study.name}: {len(runs)} runs into {os.path.abspath(args.out)}/runs")
    statuses = grid.run_grid(cfg, runs, executor(args.executor))
    failed = [s for s in statuses if "stage" in s]
  path = report.build(cfg, runs)
  print(f"wrote {path}")
  if failed:
    print(f"{len(failed)} run(s) failed: " + ", ".join(f"{s['run']} ({s['stage']})" for s in failed),
          file=sys.stderr)
    return 1
  return 0


def _summary(work) -> str:
  parts = [f"train+eval {len(work.train)}" if work.train else "",
           f"eval {len(work.eval_only)}" if work.eval_only else "",
           f"judge {len(work.judge)}" if work.judge else ""]
  parts = [p for p in parts if p]
  if not parts:
    return "nothing"
  names = [r.name for r in work.train + work.eval_only + work.judge]
  return ", ".join(parts) + " (" + ", ".join(dict.fromkeys(names)) + ")"


def _submit(cfg, runs, args) -> int:
  """Everything is checked before the first sbatch; a rejected one cancels the rest."""
  from linguamix.studies import slurm
  slurm.require_sbatch()
  known = slurm.sbatch_options()
  resources = slurm.parse_resources(args.slurm, known)
  slurm.check_resources(resources, known)
  if args.retries < 0 or (args.array_parallelism is not None and args.array_parallelism < 1):
    raise slurm.SlurmError("--retries must be >= 0 and --array-parallelism >= 1")
  run_commands.save_config(cfg)
  work = slurm.plan(cfg, runs, slurm.runs_in_queue(cfg, slurm.queued()))
  if work.in_queue:
    print(f"{len(work.in_queue)} run(s) still in the queue from an earlier submission: left "
          "alone (" + ", ".join(r.name for r in work.in_queue) + ")")
  if work.empty:
    print(f"nothing to submit: {len(work.done)} run(s) done, {len(work.in_queue)} in the queue")
    return 0
  print(f"linguamix study {cfg.study.name}: submitting {_summary(work)}")
  slurm.submit(cfg, work, resources=resources, retries=args.retries,
               parallelism=args.array_parallelism)
  print(f"follow it with: linguamix study {cfg.study.name} --out {cfg.out} --status")
  return 0


def _status(cfg, runs) -> int:
  from linguamix.studies import slurm
  if not slurm.have("squeue"):
    raise slurm.SlurmError("--status: squeue not found on PATH (run on the cluster's login node)")
  rows, work = slurm.status(cfg, runs)
  width = max(len(r.run) for r in rows)
  for r in rows:
    print(f"{r.run:<{width}}  {r.stage:<5}  {r.state}: {r.detail}")
  counts: dict[str, int] = {}
  for r in rows:
    counts[r.state] = counts.get(r.state, 0) + 1
  print(f"{len(rows)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
  print(f"a rerun would submit: {_summary(work)}")
  return 0
