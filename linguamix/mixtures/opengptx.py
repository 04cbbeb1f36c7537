"""OpenGPT-X (Weber et al. 2024): EN/DE/FR/IT/ES compositions over three sources.

`opengptx_{source}_{composition}`:
* source: `limax` (LIMA-X, 1,030 per language), `bactrianx` (all of Bactrian-X),
  `bactrianx_small` (Bactrian-X downsampled to one seeded sample of 1,030 shared ids);
* composition: `en`, `de`, `fr`, `it`, `es` (monolingual), `endefrites` (all five, fully
  parallel), `defrites` (without English), `endefrites_sampled` / `defrites_sampled`
  (the size of one language, split evenly, disjoint ids: each item in one language).
"""

from __future__ import annotations

import gin

from linguamix.mixtures import registry
from linguamix.mixtures.selection import Recipe, even_split

SOURCES = {"limax": ("lima_x", None), "bactrianx": ("bactrian_x", None),
           "bactrianx_small": ("bactrian_x", 1030)}
COMPOSITIONS = {"en": ("en",), "de": ("de",), "fr": ("fr",), "it": ("it",), "es": ("es",),
                "endefrites": ("en", "de", "fr", "it", "es"),
                "defrites": ("de", "fr", "it", "es")}


@gin.configurable(module="linguamix.mixtures")
def opengptx_config(seed: int = 0, small_size: int = 1030):
  return seed, small_size


def recipe(name: str, source: str, composition: str) -> Recipe:
  seed, small = opengptx_config()
  family, universe = SOURCES[source]
  universe = small if universe else None
  sampled = composition.endswith("_sampled")
  langs = COMPOSITIONS[composition.removesuffix("_sampled")]
  if sampled:
    budgets, mode = (lambda n: even_split(n, list(langs))), "disjoint"
  else:
    budgets, mode = (lambda n: {l: None for l in langs}), "shared"
  return Recipe(name, family, langs, budgets, mode=mode, seed=seed, universe_size=universe,
                description=f"OpenGPT-X {composition} over {source}")


def register_all() -> None:
  for source in SOURCES:
    for comp in list(COMPOSITIONS) + ["endefrites_sampled", "defrites_sampled"]:
      name = f"opengptx_{source}_{comp}"
      registry.register(name, lambda name=name, source=source, comp=comp: recipe(
          name, source, comp), family="opengptx",
          config=opengptx_config, description=f"OpenGPT-X {comp} over {source}")
