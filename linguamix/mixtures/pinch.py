"""Pinch (Shaham et al. 2024): a fixed budget, P% of it spread over 11 non-English languages.

Names (budget 4,640 and seed 0 unless gin's `pinch_config` says otherwise):
* `pinch_p{P}`, P in 0, 1, 10, 20, ..., 100, over the 12 Pinch languages;
  `pinch_40shot`: the same examples as `pinch_p1` (same recipe and seed), registered
  under its own name, so its tasks, TensorBoard folders and files say `pinch_40shot`;
* `pinch_partial_p{P}`: en + ar fi it ru sw (cs et he hi es zh unseen);
* `pinch_nlang{n}`, n = 1..6: the first n of en ar fi it ru sw, budget split evenly;
* `pinch_bi_{a}_{b}`: a pair of the 12 languages, 50/50.

Choices where the study is silent (all documented, all parameters):
* multilingual examples = P% of the budget rounded down to a multiple of 10 — the study
  reports 1% of 4,640 as "40 examples"; this gives 0, 40, 460, 920, ..., 4,640;
* the multilingual part is split evenly over the non-English languages in the study's
  listing order (ar zh cs et fi he hi it ru es sw); the remainder goes one each to the first
  languages: 40 = 4 x (ar zh cs et fi he hi) + 3 x (it ru es sw);
* ids are disjoint blocks of one seeded permutation: the multilingual items replace
  English ones, so every item appears once (4,640 distinct ids at P = 1).
"""

from __future__ import annotations

import itertools

import gin

from linguamix.mixtures import registry
from linguamix.mixtures.selection import Recipe, RecipeError, even_split
from linguamix.t5x_tasks import languages

P_VALUES = (0, 1) + tuple(range(10, 101, 10))
PARTIAL = ("en", "ar", "fi", "it", "ru", "sw")
NLANG_ORDER = ("en", "ar", "fi", "it", "ru", "sw")


@gin.configurable(module="linguamix.mixtures")
def pinch_config(budget: int = 4640, seed: int = 0, family: str = "bactrian_x"):
  return budget, seed, family


def multilingual_count(p: int, budget: int) -> int:
  if not 0 <= p <= 100:
    raise RecipeError(f"Pinch: P must be in 0..100, got {p}")
  return budget * p // 100 // 10 * 10


def pinch_recipe(name: str, p: int, langs=languages.PINCH, *, budget=None, seed=None,
                 family=None) -> Recipe:
  """P% of `budget` over the non-English `langs`, the rest English; disjoint ids."""
  d_budget, d_seed, d_family = pinch_config()
  budget = d_budget if budget is None else budget
  others = [l for l in langs if l != "en"]
  m = multilingual_count(p, budget)
  counts = {"en": budget - m, **even_split(m, others)}
  kept = tuple(l for l in langs if counts[l] > 0)
  return Recipe(name, family or d_family, kept, lambda _: counts, mode="disjoint",
                seed=d_seed if seed is None else seed,
                description=f"Pinch: {p}% of {budget} ({m} examples) over "
                            f"{' '.join(others)}, rest English; disjoint ids")


def split_recipe(name: str, langs, *, budget=None, seed=None, family=None) -> Recipe:
  """The budget split evenly over `langs`; disjoint ids."""
  d_budget, d_seed, d_family = pinch_config()
  budget = d_budget if budget is None else budget
  counts = even_split(budget, list(langs))
  return Recipe(name, family or d_family, tuple(langs), lambda _: counts, mode="disjoint",
                seed=d_seed if seed is None else seed,
                description=f"Pinch: {budget} split evenly over {' '.join(langs)}; disjoint ids")


def register_all() -> None:
  registry.NAME_RULES.append((r"pinch(?:_partial)?_p(\d+)", lambda m: None if int(m[1]) in P_VALUES
                              else f"Pinch's P (percent multilingual) must be in 0..100, one of "
                                   f"{', '.join(map(str, P_VALUES))}; got {m[1]}"))
  for p in P_VALUES:
    registry.register(f"pinch_p{p}", lambda p=p: pinch_recipe(f"pinch_p{p}", p),
                      family="pinch", config=pinch_config,
                      description=f"Pinch, {p}% multilingual over 12 languages")
    registry.register(f"pinch_partial_p{p}",
                      lambda p=p: pinch_recipe(f"pinch_partial_p{p}", p, PARTIAL),
                      family="pinch", config=pinch_config,
                      description=f"Pinch, {p}% over en + ar fi it ru sw")
  registry.register("pinch_40shot", lambda: pinch_recipe("pinch_40shot", 1), family="pinch",
                    config=pinch_config,
                    description="Pinch 40-shot: 4,600 English + 40 over 11 languages "
                                "(the examples of pinch_p1)")
  for n in range(1, len(NLANG_ORDER) + 1):
    langs = NLANG_ORDER[:n]
    registry.register(f"pinch_nlang{n}", lambda n=n, langs=langs: split_recipe(
        f"pinch_nlang{n}", langs), family="pinch", config=pinch_config,
                      description=f"Pinch, budget split over {' '.join(langs)}")
  for a, b in itertools.combinations(languages.PINCH, 2):
    registry.register(f"pinch_bi_{a}_{b}", lambda a=a, b=b: split_recipe(
        f"pinch_bi_{a}_{b}", (a, b)), family="pinch",
        config=pinch_config, description=f"Pinch, bilingual {a}+{b} 50/50")
