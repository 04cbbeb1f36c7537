"""The command line: the `linguamix` console script and the `python -m` programs.

One module per command in this package, each holding its argument parser and the code
that runs it (`main(argv) -> int`): it parses with argparse alone and imports the
library it drives (TensorFlow, JAX, SeqIO's registries) only once the arguments have
parsed, so every `--help` and usage error answers at once. `linguamix.cli.train` holds
T5X's `python -m linguamix.train` / `.eval` / `.infer`. The library never imports this
package: its functions take typed arguments. Run as a program, `linguamix` is quiet
(`linguamix._quiet`); `--verbose` anywhere, or LINGUAMIX_VERBOSE=1, shows the libraries'
log lines.

A few names are copied here because the modules that own them are slow to import (most
load TensorFlow); a test checks each copy equal to its source: `judge.BASE_URL_ENV`
(linguamix.evals.judge), `select_languages.METHODS` (linguamix.mixtures.language_selection),
`prepare.DATA_NAMES` / `BENCHMARK_NAMES` (linguamix.prepare's tables; tests/test_prepare.py)
and the recipe names `mixtures list` prints (linguamix/mixtures/names.json).
"""

from __future__ import annotations

import importlib
import sys
import textwrap

from linguamix import _malloc_tuning, _quiet

# name -> (module with main(argv), one-line help). Keep sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("linguamix.cli.bench", "benchmark a gin config's training step (steps/s, tokens/s, MFU) and input pipeline"),
    "augment": ("linguamix.cli.augment", "sPhinX selective translated augmentation with an OpenAI-compatible endpoint"),
    "convert": ("linguamix.cli.convert", "checkpoints to Orbax: legacy T5X (mT5) and Hugging Face safetensors (see its --help for the architectures); export back to HF and PEFT"),
    "judge": ("linguamix.cli.judge", "MT-Bench-X LLM judge (grading or pairwise, both orders) via an OpenAI-compatible endpoint"),
    "mixtures": ("linguamix.cli.mixtures", "list recipe mixtures; show one's per-language composition"),
    "plan": ("linguamix.cli.plan", "compile a run's training step for a TPU topology on this CPU: per-chip memory vs HBM, FLOPs, collectives, estimated step time, MFU and chip-hours"),
    "prepare": ("linguamix.cli.prepare", "fetch the studies' datasets, benchmarks and base checkpoints (Hub, gs://) into the loaders' layouts"),
    "report": ("linguamix.cli.report", "per-language bar charts and the cross-lingual transfer matrix of eval runs"),
    "study": ("linguamix.cli.study", "a whole study: its grid of runs, their evaluations, its figures and report"),
    "tasks": ("linguamix.cli.tasks", "list the registered instruction task families and languages"),
    "select-languages": ("linguamix.cli.select_languages", "choose k languages by typology, geography, family, ... (Soykan & Sahin 2024)"),
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

