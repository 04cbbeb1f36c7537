"""The exact commands of a study's runs: `python -m linguamix.train` then
`python -m linguamix.eval` (and `linguamix judge` when a judge endpoint is given).

Each run's folder is `OUT/runs/<run>`: the training MODEL_DIR, its evaluation in
`eval/`, judgements in `judge/`. The evaluation reads the run's latest checkpoint
(CHECKPOINT_PATH = MODEL_DIR), so the command is exact before training has counted
its steps from TRAIN_EPOCHS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from typing import Sequence

from linguamix.studies.base import Run, Study

SMOKE_GIN = "studies/smoke.gin"
SMOKE_MODEL = "models/mt5_tiny.gin"
EVAL_BATCH_SIZE = 32
# Smoke evaluations pad every task to one shape: one compilation for all of them.
SMOKE_EVAL_LENGTHS = "{'inputs': 96, 'targets': 64}"
BUNDLED_EVAL_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "evals", "bundled")
EVAL_ROOT_ENV = "LINGUAMIX_EVAL_DATA_ROOT"


@dataclasses.dataclass(frozen=True)
class Config:
  """What every run of one `linguamix study` invocation shares."""
  study: Study
  out: str
  model_gin: str
  preset: str
  init: str | None = None
  smoke: bool = False
  bindings: tuple[str, ...] = ()     # the user's --gin.NAME=VALUE, for training
  judge: str | None = None           # endpoint base URL
  judge_model: str = "gpt-4"

  @property
  def preset_gin(self) -> str:
    return self.study.presets[self.preset]

  @property
  def evals(self) -> tuple[str, ...]:
    return tuple(self.study.smoke_evals if self.smoke else self.study.evals)

  def run_dir(self, run: Run) -> str:
    return os.path.join(os.path.abspath(self.out), "runs", run.name)

  def eval_dir(self, run: Run) -> str:
    return os.path.join(self.run_dir(run), "eval")

  def judge_dir(self, run: Run) -> str:
    return os.path.join(self.run_dir(run), "judge")


def _gin_str(value: str) -> str:
  """A gin string literal in double quotes (the shell lines then need only single ones)."""
  return json.dumps(str(value), ensure_ascii=False)


def _gin_files(cfg: Config) -> list[str]:
  files = [cfg.model_gin, cfg.preset_gin] + ([SMOKE_GIN] if cfg.smoke else [])
  return [f"--gin_file={f}" for f in files]


def env(cfg: Config) -> dict[str, str]:
  """Environment the commands need: the bundled XCOPA for smoke evaluations."""
  if cfg.smoke and not os.environ.get(EVAL_ROOT_ENV):
    return {EVAL_ROOT_ENV: BUNDLED_EVAL_ROOT}
  return {}


def train_args(cfg: Config, run: Run) -> list[str]:
  """Arguments of `python -m linguamix.train` for `run`."""
  init = _gin_str(cfg.init) if cfg.init else "None"
  args = _gin_files(cfg) + [
      f"--gin.MIXTURE_OR_TASK_NAME={_gin_str(run.mixture)}",
      f"--gin.MODEL_DIR={_gin_str(cfg.run_dir(run))}",
      f"--gin.INITIAL_CHECKPOINT_PATH={init}",
  ]
  bindings = (cfg.study.smoke_overrides if cfg.smoke else ()) + run.overrides + cfg.bindings
  return args + [f"--gin_bindings={b}" for b in bindings]


def eval_args(cfg: Config, run: Run) -> list[str]:
  """Arguments of `python -m linguamix.eval` for `run`: the same model and preset gins
  (LoRA adapters, prompt templates), lengths measured from the eval data."""
  tasks = "[" + ", ".join(_gin_str(t) for t in cfg.evals) + "]"
  return _gin_files(cfg) + [
      f"--gin.CHECKPOINT_PATH={_gin_str(cfg.run_dir(run))}",
      f"--gin.EVAL_OUTPUT_DIR={_gin_str(cfg.eval_dir(run))}",
      f"--gin.EVAL_TASKS={tasks}",
      f"--gin.TASK_FEATURE_LENGTHS={SMOKE_EVAL_LENGTHS if cfg.smoke else None}",
      f"--gin.BATCH_SIZE={EVAL_BATCH_SIZE}",
  ]


def judge_langs(cfg: Config) -> list[str]:
  """MT-Bench-X languages among the evaluations (the judge's prompts exist only there)."""
  import seqio
  import linguamix.evals  # noqa: F401  (registers the eval tasks)
  tasks = [t.name for name in cfg.evals for t in seqio.get_subtasks(seqio.get_mixture_or_task(name))]
  return [t.split(".", 1)[1] for t in tasks if t.startswith("mt_bench_x.")]


def answer_file(cfg: Config, run: Run, lang: str) -> str:
  """The run's MT-Bench-X conversations, in FastChat's answer format, as evaluation writes
  them (the model id is the run name: the CHECKPOINT_PATH folder's)."""
  from linguamix.evals import open_prompts  # pylint: disable=g-import-not-at-top
  return open_prompts.answer_path(cfg.eval_dir(run), lang, run.name)


def judge_args(cfg: Config, run: Run, lang: str, baseline: Run | None = None) -> list[str]:
  """`linguamix judge` for one language: both turns graded, or compared with `baseline`."""
  kind = f"pair_{lang}" if baseline else f"single_{lang}"
  args = ["judge", "--lang", lang, "--answers", answer_file(cfg, run, lang),
          "--judge-model", cfg.judge_model,
          "--base-url", cfg.judge or "", "--cache", os.path.join(cfg.judge_dir(run), "cache"),
          "--out", os.path.join(cfg.judge_dir(run), f"{kind}.json")]
  if baseline:
    args += ["--answers-b", answer_file(cfg, baseline, lang)]
  return args


def judge_baseline(cfg: Config, run: Run) -> Run | None | bool:
  """The run a pairwise judge compares with; False when this run is the baseline itself."""
  kind = cfg.study.judge or ""
  if not kind.startswith("pair:"):
    return None
  name = kind.split(":", 1)[1]
  if run.name == name:
    return False
  return next((r for r in cfg.study.runs() if r.name == name), None)


def _line(env_vars: dict[str, str], module: str, args: Sequence[str]) -> str:
  prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in env_vars.items())
  return prefix + shlex.join(["python", "-m", module, *args])


def plan_lines(cfg: Config, runs: Sequence[Run]) -> list[str]:
  """One shell line per run (train && eval [&& judge]); then pairwise judgements."""
  env_vars = env(cfg)
  lines, later = [], []
  langs = judge_langs(cfg) if cfg.judge else []
  for run in runs:
    parts = [_line(env_vars, "linguamix.train", train_args(cfg, run)),
             _line(env_vars, "linguamix.eval", eval_args(cfg, run))]
    if cfg.judge:
      baseline = judge_baseline(cfg, run)
      for lang in langs:
        if baseline is None:
          parts.append(_line({}, "linguamix.cli", judge_args(cfg, run, lang)))
        elif baseline:
          later.append(_line({}, "linguamix.cli", judge_args(cfg, run, lang, baseline)))
    lines.append(" && ".join(parts))
  if later:
    lines.append("# pairwise judgements: after every run above (they read the baseline's answers)")
    lines += later
  return lines


def write_plan(cfg: Config, runs: Sequence[Run], costs: dict | None = None) -> str:
  """OUT/commands.sh; with `costs` (`studies.costs.grid_costs`) their chip-hours in its
  header, and OUT/plan.md."""
  path = os.path.join(cfg.out, "commands.sh")
  os.makedirs(cfg.out, exist_ok=True)
  header = [
      "#!/bin/sh",
      f"# linguamix study {cfg.study.name}: {len(runs)} runs, one line each (independent jobs:",
      "# run them in any order on any scheduler). Then collect the results with",
      f"#   linguamix study {cfg.study.name} --out {shlex.quote(cfg.out)} --report-only",
  ]
  if costs is not None:
    from linguamix.studies import costs as costs_lib
    header += ["#", *(f"# {line}" for line in costs_lib.header_lines(costs))]
    with open(os.path.join(cfg.out, "plan.md"), "w", encoding="utf-8") as f:
      f.write(costs_lib.markdown(costs, f"linguamix study {cfg.study.name}"))
    with open(os.path.join(cfg.out, "plan.json"), "w", encoding="utf-8") as f:
      json.dump(costs, f, indent=1, default=str)  # every figure, for scripts
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(header + plan_lines(cfg, runs)) + "\n")
  os.chmod(path, 0o755)
  return path


CONFIG_FILE = "study.json"


def save_config(cfg: Config) -> None:
  """OUT/study.json: what `--report-only`, `--status` and the SLURM tasks read back."""
  os.makedirs(cfg.out, exist_ok=True)
  with open(os.path.join(cfg.out, CONFIG_FILE), "w", encoding="utf-8") as f:
    json.dump({"study": cfg.study.name, "model": cfg.model_gin, "preset": cfg.preset,
               "init": cfg.init, "smoke": cfg.smoke, "bindings": list(cfg.bindings),
               "judge": cfg.judge, "judge_model": cfg.judge_model}, f, indent=1)


def saved_study(out: str) -> str | None:
  """The study OUT/study.json names; None where there is none."""
  path = os.path.join(out, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)["study"]


def load_config(out: str) -> Config | None:
  """The Config OUT/study.json was written from; None where there is none."""
  from linguamix import studies
  path = os.path.join(out, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  return Config(study=studies.STUDIES[saved["study"]], out=out, model_gin=saved["model"],
                preset=saved["preset"], init=saved.get("init"), smoke=saved["smoke"],
                bindings=tuple(saved.get("bindings", ())), judge=saved.get("judge"),
                judge_model=saved.get("judge_model", "gpt-4"))


def write_tpu_plan(cfg: Config, runs: Sequence[Run], tpu: str, zone: str) -> str:
  """OUT/tpu.sh: each run's line on every host of a TPU pod slice at once (`--worker=all`);
  each host's trainer joins the others through jax.distributed from the TPU environment."""
  path = os.path.join(cfg.out, "tpu.sh")
  header = [
      "#!/bin/sh",
      f"# linguamix study {cfg.study.name}: {len(runs)} runs, one after another, each on every "
      f"worker of TPU VM {tpu}",
      "# (zone " + zone + "). OUT must be a folder every worker sees at the same path (a shared",
      "# file system) and linguamix installed on each. Collect the results with",
      f"#   linguamix study {cfg.study.name} --out {shlex.quote(cfg.out)} --report-only",
      "set -e",
  ]
  lines = [shlex.join(["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}",
                       "--worker=all", f"--command={line}"])
           for line in plan_lines(cfg, runs) if not line.startswith("#")]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(header + lines) + "\n")
  os.chmod(path, 0o755)
  return path
