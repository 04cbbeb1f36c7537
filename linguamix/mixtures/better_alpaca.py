"""Better Alpaca (Chen et al. 2024): monolingual, multilingual, multilingual-downsampled.

Over `alpaca_x` (Alpaca-cleaned translated; parallel by position):
* `better_alpaca_mono_{lang}`: one language, all of it;
* `better_alpaca_multi`: all 9 languages, all of each (9x the budget);
* `better_alpaca_down_shared` / `better_alpaca_down_disjoint`: all 9 with the budget of
  one language (N = the ids all 9 share): each language gets N/9 (remainder one each to
  the first languages in en bg cs de es fi fr ru zh order), either the same ids in every
  language (`shared`) or disjoint blocks so every English item is used exactly once.
"""

from __future__ import annotations

import gin

from linguamix.mixtures import registry
from linguamix.mixtures.selection import Recipe, even_split
from linguamix.t5x_tasks import languages


@gin.configurable(module="linguamix.mixtures")
def better_alpaca_config(seed: int = 0, family: str = "alpaca_x"):
  return seed, family


def recipe(name: str, langs, kind: str) -> Recipe:
  seed, family = better_alpaca_config()
  if kind == "all":
    return Recipe(name, family, tuple(langs), lambda n: {l: None for l in langs}, seed=seed,
                  description=f"Better Alpaca: all of {' '.join(langs)}")
  return Recipe(name, family, tuple(langs), lambda n: even_split(n, list(langs)), mode=kind,
                seed=seed, description=f"Better Alpaca: budget of one language over 9, {kind} ids")


def register_all() -> None:
  config = dict(family="better_alpaca", config=better_alpaca_config)
  for lang in languages.BETTER_ALPACA:
    registry.register(f"better_alpaca_mono_{lang}",
                      lambda lang=lang: recipe(f"better_alpaca_mono_{lang}", [lang], "all"),
                      description=f"Better Alpaca monolingual {lang}", **config)
  registry.register("better_alpaca_multi",
                    lambda: recipe("better_alpaca_multi", languages.BETTER_ALPACA, "all"),
                    description="Better Alpaca multilingual, 9 x all", **config)
  for mode in ("shared", "disjoint"):
    registry.register(f"better_alpaca_down_{mode}", lambda mode=mode: recipe(
        f"better_alpaca_down_{mode}", languages.BETTER_ALPACA, mode),
                      description=f"Better Alpaca multilingual-downsampled, {mode} ids", **config)
