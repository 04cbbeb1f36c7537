"""Linguistically-informed selection (Soykan & Sahin 2024).

Grid (289 runs, run name = mixture name):
* the six selection methods (TYPO GEO LEARN SEM FAM RANDOM) x seeds 66, 42, 10 at
  k = 14 (18 runs) and ALL (`li_all`, the 52 languages);
* the k-scaling runs: every method and seed at k = 1..13, 20, 26 (270 runs); with the
  k = 14 runs and ALL (k = 52) they draw the scaling curve.
SEM needs the CLICS embeddings file: `--gin.linguamix.mixtures.li_config.sem_embeddings_path=...`.
Evaluation: XNLI, PAWS-X, XCOPA, XStoryCloze, XWinograd, zero-shot, lm-eval style.
"""

from linguamix.studies.base import Run, Study

METHODS = ("typo", "geo", "learn", "sem", "fam", "random")
SEEDS = (66, 42, 10)
MAIN_K = 14
SCALING_K = tuple(range(1, 14)) + (20, 26)
ALL_K = 52


def runs() -> list[Run]:
  out = [Run(f"li_{m}_k{MAIN_K}_s{s}", f"li_{m}_k{MAIN_K}_s{s}",
             {"method": m, "k": MAIN_K, "seed": s}) for m in METHODS for s in SEEDS]
  out.append(Run("li_all", "li_all", {"method": "all", "k": ALL_K, "seed": None}))
  out += [Run(f"li_{m}_k{k}_s{s}", f"li_{m}_k{k}_s{s}", {"method": m, "k": k, "seed": s})
          for k in SCALING_K for m in METHODS for s in SEEDS]
  return out


STUDY = Study(
    name="linguistic",
    title="Linguistically-Informed Multilingual Instruction Tuning (Soykan & Sahin, 2024)",
    runs=runs,
    smoke_runs=("li_random_k14_s66", "li_typo_k14_s66", "li_random_k2_s66"),
    presets={"lora": "studies/linguistic.gin"},
    evals=("xnli", "paws_x", "xcopa", "xstorycloze", "xwinograd"),
    smoke_evals=("xcopa.it", "xcopa.zh"),
    figures=("methods_vs_random", "k_scaling"),
    # The sample set has 5,200 items per language, not 67,017: scale the budget down.
    smoke_overrides=("linguamix.mixtures.li_config.items = 5200",
                     "linguamix.mixtures.li_config.validation_rows = 100"),
)
