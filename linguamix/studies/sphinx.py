"""sPhinX: the tiered mixture with and without LANGIT n-shot prompts (2 runs).

Evaluation: XCOPA, XStoryCloze, XWinograd, XQuAD, Belebele, FLORES.
"""

from linguamix.studies.base import Run, Study


def runs() -> list[Run]:
  return [Run("sphinx_tiers", "sphinx_tiers", {"langit": True}),
          Run("sphinx_tiers_nolangit", "sphinx_tiers_nolangit", {"langit": False})]


STUDY = Study(
    name="sphinx",
    title="sPhinX: Sample Efficient Multilingual Instruction Fine-Tuning Through N-shot Guided Prompting",
    runs=runs,
    smoke_runs=("sphinx_tiers", "sphinx_tiers_nolangit"),
    presets={"full": "studies/sphinx.gin"},
    evals=("xcopa", "xstorycloze", "xwinograd", "xquad", "belebele", "flores"),
    smoke_evals=("xcopa.it", "xcopa.zh"),
    figures=("langit_deltas",),
    # The sample set has 500 items per language, not 100k / 50k / 25k; the smoke grid
    # keeps the 21 high-resource languages (fewer tasks to build on a laptop).
    smoke_overrides=("linguamix.mixtures.sphinx_config.tier_budgets = "
                     "{'high': 8, 'mid': 0, 'low': 0}",),
)
