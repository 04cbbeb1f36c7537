"""Pinch (Shaham et al. 2024): the P sweep, partial-language, 1->6 languages, bilingual.

Grid (41 runs, run name = mixture name):
* `pinch_p{P}`, P in 0, 1, 10, 20, ..., 100 (12): P% of the 4,640 budget over the 11
  non-English languages;
* `pinch_partial_p{P}` (12): tuned on en + ar fi it ru sw; cs et he hi es zh unseen;
* `pinch_nlang{n}`, n = 1..6 (6): the budget over the first n of en ar fi it ru sw;
* `pinch_bi_en_{x}` (11): English + one other Pinch language, 50/50 (the registry has
  every pair of the 12; the grid pairs English with each other language).
Evaluation: open-ended prompts in the Pinch languages that have a public test set
(Better Alpaca's human-translated OpenAssistant prompts: cs en es fi ru zh;
MT-Bench-X: en es it) with language consistency; the paper's side-by-side LLM judge
against the English-only run (P = 0) on MT-Bench-X when --judge is given.
"""

from linguamix.studies.base import Run, Study

LANGUAGES = ("en", "ar", "zh", "cs", "et", "fi", "he", "hi", "it", "ru", "es", "sw")
P_VALUES = (0, 1) + tuple(range(10, 101, 10))
PARTIAL_SEEN = ("en", "ar", "fi", "it", "ru", "sw")
NLANG_ORDER = ("en", "ar", "fi", "it", "ru", "sw")


def runs() -> list[Run]:
  out = [Run(f"pinch_p{p}", f"pinch_p{p}", {"variant": "p", "p": p, "seen": LANGUAGES})
         for p in P_VALUES]
  out += [Run(f"pinch_partial_p{p}", f"pinch_partial_p{p}",
              {"variant": "partial", "p": p, "seen": PARTIAL_SEEN}) for p in P_VALUES]
  out += [Run(f"pinch_nlang{n}", f"pinch_nlang{n}",
              {"variant": "nlang", "n": n, "seen": NLANG_ORDER[:n]})
          for n in range(1, len(NLANG_ORDER) + 1)]
  out += [Run(f"pinch_bi_en_{x}", f"pinch_bi_en_{x}", {"variant": "bi", "seen": ("en", x)})
          for x in LANGUAGES[1:]]
  return out


STUDY = Study(
    name="pinch",
    title="Multilingual Instruction Tuning With Just a Pinch of Multilinguality (Shaham et al., 2024)",
    runs=runs,
    smoke_runs=("pinch_p0", "pinch_p100", "pinch_partial_p100"),
    presets={"full": "studies/pinch.gin"},
    evals=tuple(f"better_alpaca_test.{l}" for l in ("cs", "en", "es", "fi", "ru", "zh"))
    + tuple(f"mt_bench_x.{l}" for l in ("en", "es", "it")),
    smoke_evals=("xcopa.it", "xcopa.zh"),
    figures=("pinch_curves", "transfer_matrix"),
    judge="pair:pinch_p0",
    notes=("The Pinch test prompts are not public: the open-ended evaluation uses the public "
           "prompt sets that cover Pinch languages (Better Alpaca's test prompts, MT-Bench-X).",),
)
