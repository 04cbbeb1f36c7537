"""The `linguamix` console script: one entry point, one module per sub-command.

Each sub-command exposes `main(argv) -> int` in a module that imports nothing heavy:
commands whose code needs TensorFlow or JAX parse their arguments in
`linguamix.commands` and import that code only to run, so every `--help` and usage
error answers at once. Run as a program, `linguamix` is quiet (`linguamix._quiet`);
`--verbose` anywhere, or LINGUAMIX_VERBOSE=1, shows the libraries' log lines.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

from linguamix import _malloc_tuning, _quiet

# name -> (module with main(argv), one-line help). Keep sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("linguamix.commands.bench", "benchmark a gin config's training step (steps/s, tokens/s, MFU) and input pipeline"),
    "augment": ("linguamix.augment.command", "sPhinX selective translated augmentation with an OpenAI-compatible endpoint"),
    "convert": ("linguamix.models.convert", "checkpoints to Orbax: legacy T5X (mT5) and Hugging Face safetensors (see its --help for the architectures); export back to HF and PEFT"),
    "judge": ("linguamix.commands.judge", "MT-Bench-X LLM judge (grading or pairwise, both orders) via an OpenAI-compatible endpoint"),
    "mixtures": ("linguamix.commands.mixtures", "list recipe mixtures; show one's per-language composition"),
    "plan": ("linguamix.commands.plan", "compile a run's training step for a TPU topology on this CPU: per-chip memory vs HBM, FLOPs, collectives, estimated step time, MFU and chip-hours"),
    "prepare": ("linguamix.prepare.command", "fetch the studies' datasets, benchmarks and base checkpoints (Hub, gs://) into the loaders' layouts"),
    "report": ("linguamix.commands.report", "per-language bar charts and the cross-lingual transfer matrix of eval runs"),
    "study": ("linguamix.studies.command", "a whole study: its grid of runs, their evaluations, its figures and report"),
    "tasks": ("linguamix.commands.tasks", "list the registered instruction task families and languages"),
    "select-languages": ("linguamix.commands.select_languages", "choose k languages by typology, geography, family, ... (Soykan & Sahin 2024)"),
}

# The commands that run models (XLA programs): they restart once with the malloc settings
# of _malloc_tuning (huge pages, a heap kept between steps).
RUN_MODELS = frozenset({"bench", "study"})
# ... except when they only print or submit (the malloc re-exec would cost seconds).
NO_MODEL_FLAGS = frozenset({"-h", "--help", "--list", "--plan", "--status", "--executor=slurm",
                            "slurm"})


def _usage() -> str:
  width = max((len(name) for name in COMMANDS), default=0)
  lines = [
      "usage: linguamix COMMAND [ARGS...]",
      "",
      "Multilingual instruction-tuning recipes, trainer and evaluations.",
      "Training, evaluation and inference run as modules, T5X style:",
      "  python -m linguamix.train --gin_file=mixture_40shot.gin --gin.MODEL_DIR=\\\"/tmp/run\\\"",
      "",
      "commands:",
  ]
  lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(COMMANDS.items())]
  lines += ["", "Run `linguamix COMMAND --help` for a command's options. --verbose (or",
            "LINGUAMIX_VERBOSE=1) shows TensorFlow's, XLA's and SentencePiece's logs and",
            "adds the traceback to an error line.", "", *textwrap.wrap(_quiet.PROCESS_HELP, 78)]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  """argv None: run as the program (sys.argv, quiet stderr); a list: called from Python."""
  if argv is None:
    argv = sys.argv[1:]
    if argv and argv[0] in RUN_MODELS and not NO_MODEL_FLAGS & set(argv):
      _malloc_tuning.reexec()
    _quiet.install(verbose=_quiet.verbose_requested(argv))
  verbose = _quiet.verbose_requested(list(argv))
  argv = _quiet.strip_verbose(list(argv))
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"linguamix: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
    return 2
  from linguamix import errors  # one error line per failure, see linguamix/errors.py
  return errors.run_main(lambda a: importlib.import_module(COMMANDS[name][0]).main(a), rest,
                         prog=f"linguamix {name}", verbose=verbose)


if __name__ == "__main__":
  sys.exit(main())
