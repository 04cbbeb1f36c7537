"""OpenGPT-X (Weber et al. 2024): monolingual EN DE FR IT ES, ENDEFRITES, DEFRITES and
their sampled variants, over LIMA-X, Bactrian-X and Bactrian-X-small (27 runs, run
name = mixture name).

Evaluation: MT-Bench-X in the five languages, both turns (the second with the model's
own first answer in the conversation), rendered with the OpenGPT-X chat template, with
language consistency per turn; when --judge is given, MT-Bench's single-answer grading of
both turns by the LLM judge in each language's judge prompts. The report has the scores
per language, per turn and per composition (run), and each multilingual composition
minus the monolingual run of the evaluation language.
"""

from linguamix.studies.base import Run, Study

SOURCES = ("limax", "bactrianx", "bactrianx_small")
MONOLINGUAL = ("en", "de", "fr", "it", "es")
MULTILINGUAL = {"endefrites": ("en", "de", "fr", "it", "es"), "defrites": ("de", "fr", "it", "es")}


def runs() -> list[Run]:
  out = []
  for source in SOURCES:
    out += [Run(f"opengptx_{source}_{l}", f"opengptx_{source}_{l}",
                {"variant": "mono", "source": source, "langs": (l,)}) for l in MONOLINGUAL]
    for comp, langs in MULTILINGUAL.items():
      for sampled in ("", "_sampled"):
        out.append(Run(f"opengptx_{source}_{comp}{sampled}", f"opengptx_{source}_{comp}{sampled}",
                       {"variant": "multi", "source": source, "langs": langs,
                        "sampled": bool(sampled)}))
  return out


STUDY = Study(
    name="opengptx",
    title="Do Polyglot Models Demand for Multilingual Instructions? (Weber et al., 2024)",
    runs=runs,
    smoke_runs=("opengptx_limax_it", "opengptx_limax_endefrites", "opengptx_limax_defrites"),
    presets={"full": "studies/opengptx.gin"},
    evals=("mt_bench_x",),
    smoke_evals=("xcopa.it",),
    figures=("multi_minus_mono", "transfer_matrix"),
    judge="single",
)
