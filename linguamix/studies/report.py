"""`OUT/report.md`: the study's figures (PNGs beside it), every run's numbers
(`results.csv`), the runs that failed or are missing, and the notes on what was skipped."""

from __future__ import annotations

import json
import os
from typing import Sequence

from linguamix.studies import run_commands
from linguamix.studies import grid
from linguamix.studies import table as table_lib
from linguamix.studies.base import Run


def _status(cfg: run_commands.Config, run: Run) -> str:
  failed = os.path.join(cfg.run_dir(run), "failed.json")
  if os.path.exists(failed):
    with open(failed, encoding="utf-8") as f:
      rec = json.load(f)
    return f"failed in {rec['stage']} (exit {rec['exit_status']}; log `{rec['log']}`)"
  if grid.eval_done(cfg, run):
    return "done"
  if grid.train_done(cfg, run):
    return "trained, not evaluated"
  return "not run"


def _gin_text(path: str) -> str:
  """The gin file `path` as the trainer finds it (here, then the package's gin folder)."""
  from linguamix import gin as gin_files
  for candidate in (path, os.path.join(gin_files.ROOT, path)):
    try:
      with open(candidate, encoding="utf-8") as f:
        return f.read()
    except OSError:
      continue
  return ""


def preset_notes(cfg: run_commands.Config) -> list[str]:
  """What the preset cannot do on this model (LoRA exists for decoder-only models)."""
  if "lora.LoraConfig" in _gin_text(cfg.preset_gin) and "DecoderOnlyModel" not in _gin_text(cfg.model_gin):
    return [f"The preset's LoRA settings act on decoder-only models; `{cfg.model_gin}` is not "
            "one, so its runs fine-tune every parameter."]
  return []


def build(cfg: run_commands.Config, runs: Sequence[Run]) -> str:
  from linguamix.studies import figures
  out = os.path.abspath(cfg.out)
  fig_dir = os.path.join(out, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  table = table_lib.build(runs, cfg.eval_dir, cfg.judge_dir)
  table_lib.write_csv(table, os.path.join(out, "results.csv"))
  drawn = []
  for name in cfg.study.figures:
    drawn += getattr(figures, name)(table, fig_dir)
  status = {r.name: _status(cfg, r) for r in runs}
  done = sum(s == "done" for s in status.values())
  lines = [f"# {cfg.study.title}", "",
           f"`linguamix study {cfg.study.name}`: {done} of {len(runs)} runs evaluated"
           + (" (smoke: the reduced grid on the tiny model, sample set and bundled XCOPA — "
              "numbers mean nothing)" if cfg.smoke else "") + ".", "",
           f"* model gin: `{cfg.model_gin}`; preset: `{cfg.preset_gin}`"
           + (f"; initial checkpoint `{cfg.init}`" if cfg.init else ""),
           f"* evaluations: {', '.join(cfg.evals)}",
           "* every run's numbers: [results.csv](results.csv) (from each run's "
           "`eval/metrics/*.json`; ± is the standard error, the CSV has the 95% interval)"]
  if cfg.study.judge and not cfg.judge:
    lines.append("* LLM judge: skipped — no `--judge ENDPOINT` given (no judge numbers "
                 "below are estimated or filled in)")
  elif cfg.judge:
    lines.append(f"* LLM judge: `{cfg.judge_model}` at {cfg.judge}"
                 + (f", pairwise against `{cfg.study.judge.split(':', 1)[1]}`"
                    if cfg.study.judge.startswith("pair:") else ", single-answer grading"))
  lines += [f"* {n}" for n in tuple(cfg.study.notes) + tuple(preset_notes(cfg))]
  lines += ["", "## Figures", ""]
  for title, png, caption in drawn:
    lines += [f"### {title}", "", f"![{title}](figures/{png})", "", caption, ""]
  if not drawn:
    lines += ["No figure yet: no run has been evaluated.", ""]
  if os.path.exists(os.path.join(fig_dir, "methods_vs_random.md")):
    with open(os.path.join(fig_dir, "methods_vs_random.md"), encoding="utf-8") as f:
      lines += ["### Selection methods against RANDOM", "", f.read()]
  lines += ["## Results", "", table_lib.markdown(table)]
  if "multi_minus_mono" in cfg.study.figures:
    lines += ["## Multilingual minus monolingual", "",
              "Each multilingual run's score minus that of the run tuned on the evaluation "
              "language alone (same source); the last column is the mean over languages.", "",
              figures.multi_minus_mono_markdown(table)]
  lines += ["## Runs", "",
            "| run | mixture | status |", "|---|---|---|"]
  lines += [f"| {r.name} | `{r.mixture}` | {status[r.name]} |" for r in runs]
  path = os.path.join(out, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return path
