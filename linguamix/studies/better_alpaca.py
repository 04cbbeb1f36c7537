"""Better Alpaca (Chen et al. 2024): nine monolingual runs, multilingual, and both
multilingual-downsampled variants (12 runs, run name = mixture name).

Evaluation: the 50 human-translated OpenAssistant test prompts per language
(`better_alpaca_test`) with language consistency; MT-Bench-X (de en es fr) answers for
the LLM judge's single-answer grading when --judge is given.
"""

from linguamix.studies.base import Run, Study

LANGUAGES = ("en", "bg", "cs", "de", "es", "fi", "fr", "ru", "zh")


def runs() -> list[Run]:
  out = [Run(f"better_alpaca_mono_{l}", f"better_alpaca_mono_{l}",
             {"variant": "mono", "langs": (l,)}) for l in LANGUAGES]
  out.append(Run("better_alpaca_multi", "better_alpaca_multi",
                 {"variant": "multi", "langs": LANGUAGES}))
  out += [Run(f"better_alpaca_down_{m}", f"better_alpaca_down_{m}",
              {"variant": "down", "ids": m, "langs": LANGUAGES}) for m in ("shared", "disjoint")]
  return out


STUDY = Study(
    name="better_alpaca",
    title="Monolingual or Multilingual Instruction Tuning: Which Makes a Better Alpaca (Chen et al., 2024)",
    runs=runs,
    smoke_runs=("better_alpaca_mono_en", "better_alpaca_mono_zh", "better_alpaca_down_disjoint"),
    presets={"lora": "studies/better_alpaca.gin", "full": "studies/better_alpaca_full.gin"},
    evals=("better_alpaca_test",) + tuple(f"mt_bench_x.{l}" for l in ("de", "en", "es", "fr")),
    smoke_evals=("xcopa.it", "xcopa.zh"),
    figures=("transfer_matrix", "multi_minus_mono"),
    judge="single",
)
