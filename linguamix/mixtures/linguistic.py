"""Linguistically-informed selection (Soykan & Sahin 2024) over Bactrian-X's 52 languages.

`li_{method}_k{k}_s{seed}` for method in typo geo learn sem fam random, k in 1..14, 20,
26, 52 and the study's seeds 66, 42, 10; `li_all` (all 52). The languages come from
`language_selection.select_languages(method, k, seed)`, computed when the mixture is
built. Each chosen language gets `67017 // k` items (4,786 for k = 14) from one seeded
id sample (seed 42) shared by all of them, drawn from the whole of Bactrian-X; then
about 5,000 rows are held out for validation.

What "4,786 per language" means (docs/recipes.md, section 3; the study's order: budget,
then hold-out): the items *selected* per language, training + validation. The hold-out
is by id, so no translation of a validation item is trained: round(5000 / k) ids (357
for k = 14, i.e. 4,998 rows) are validation in all k languages; each language trains
on the other 4,786 - 357 = 4,429. (Holding out 5,000 random rows instead would put
translations of nearly every validation item into training.)

SEM reads the word2vec file bound to `li_config.sem_embeddings_path`. Any other k /
seed: `register_li(method, k, seed)`.
"""

from __future__ import annotations

import gin

from linguamix.mixtures import registry
from linguamix.mixtures.selection import Recipe, RecipeError

METHODS = ("typo", "geo", "learn", "sem", "fam", "random")
K_VALUES = tuple(range(1, 15)) + (20, 26, 52)
SEEDS = (66, 42, 10)


@gin.configurable(module="linguamix.mixtures")
def li_config(items: int = 67017, id_seed: int = 42, validation_rows: int = 5000,
              sem_embeddings_path: str | None = None, family: str = "bactrian_x"):
  return items, id_seed, validation_rows, sem_embeddings_path, family


def recipe(name: str, method: str, k: int, seed: int) -> Recipe:
  from linguamix.mixtures import language_selection
  items, id_seed, validation_rows, sem_path, family = li_config()
  if method == "sem" and not sem_path:
    raise RecipeError(f"mixture {name}: SEM needs a word2vec-format file of language "
                      "embeddings keyed by ISO 639-3; none given (gin: "
                      "linguamix.mixtures.li_config.sem_embeddings_path = '/path/clics.vec')")
  try:
    langs = language_selection.select_languages(method, k, seed, sem_embeddings_path=sem_path)
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise RecipeError(f"mixture {name}: language selection {method} k={k} seed={seed} "
                      f"failed: {e}") from e
  per_language = items // k
  held = max(1, round(validation_rows / k))
  return Recipe(name, family, tuple(langs), lambda n: {l: per_language for l in langs},
                seed=id_seed, pool_split="all", validation_ids=held,
                description=f"{method.upper()} k={k} seed={seed}: {items}//{k} = "
                            f"{per_language} per language, shared ids (seed {id_seed})",
                counts=f"{per_language} per language = training + validation (the study's "
                       f"budget); round({validation_rows}/{k}) = {held} ids held out in all "
                       f"{k} languages ({held * k} rows), so {per_language - held} trained "
                       "per language and no validation item trained in any language")


def register_li(method: str, k: int, seed: int, name: str | None = None) -> str:
  if method not in METHODS + ("all",):
    raise RecipeError(f"linguistically-informed: unknown method {method!r}; known: "
                      f"{', '.join(METHODS + ('all',))}")
  if not isinstance(k, int) or k < 1:
    raise RecipeError(f"linguistically-informed: k must be a positive integer, got {k!r}")
  name = name or f"li_{method}_k{k}_s{seed}"
  registry.register(name, lambda: recipe(name, method, k, seed), family="linguistic",
                    config=li_config,
                    description=f"linguistically-informed {method.upper()}, k={k}, seed {seed}")
  return name


def register_all() -> None:
  for method in METHODS:
    for k in K_VALUES:
      for seed in SEEDS:
        register_li(method, k, seed)
  register_li("all", 52, 42, name="li_all")
