"""The `linguamix` console script: one entry point, one module per sub-command.

Each sub-command lives next to the code it drives and exposes `main(argv) -> int`.
Modules are imported only when their command runs, so `linguamix --help` is instant.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one-line help). Keep sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("linguamix.train.bench", "benchmark a gin config's training step (steps/s, tokens/s, MFU) and input pipeline"),
    "augment": ("linguamix.augment.command", "sPhinX selective translated augmentation with an OpenAI-compatible endpoint"),
    "convert": ("linguamix.models.convert", "checkpoints to Orbax: legacy T5X (mT5) and Hugging Face safetensors (mT5, Llama-family, BLOOM, GPT-2); export back to HF and PEFT"),
    "judge": ("linguamix.evals.judge", "MT-Bench-X LLM judge (grading or pairwise, both orders) via an OpenAI-compatible endpoint"),
    "mixtures": ("linguamix.mixtures.cli", "list recipe mixtures; show one's per-language composition"),
    "prepare": ("linguamix.prepare.command", "fetch the studies' datasets, benchmarks and base checkpoints (Hub, gs://) into the loaders' layouts"),
    "report": ("linguamix.evals.report", "per-language bar charts and the cross-lingual transfer matrix of eval runs"),
    "study": ("linguamix.studies.command", "a whole study: its grid of runs, their evaluations, its figures and report"),
    "tasks": ("linguamix.t5x_tasks.cli", "list the registered instruction task families and languages"),
    "select-languages": ("linguamix.mixtures.language_selection", "choose k languages by typology, geography, family, ... (Soykan & Sahin 2024)"),
}


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
  lines += ["", "Run `linguamix COMMAND --help` for a command's options."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"linguamix: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
    return 2
  module = importlib.import_module(COMMANDS[name][0])
  return int(module.main(rest) or 0)


if __name__ == "__main__":
  sys.exit(main())
