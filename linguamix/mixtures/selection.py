"""Exact, seeded, per-language id selections: the budgets of a recipe made concrete.

A `Recipe` names a task family, languages in order, a budget per language and how ids
are shared between languages:

* `shared`      one seeded permutation of the ids every language has; each language
                takes its first n (parallel: the same items in every language);
* `disjoint`    consecutive blocks of that one permutation, in language order (each
                item appears in at most one language);
* `independent` each language its own seeded permutation of its own ids (sPhinX).

Budgets are exact (`None` = all of the universe); asking for more than the data holds
is an error naming the recipe, the language and both numbers. The permutation depends
only on the seed and the set of ids, so the same seed gives the same examples in the
same order on any host count (sharding happens after selection).

Validation never leaks: it is either the source's own split (a validation file, or the
ids whose hash falls under `validation_fraction`, the same ids in every language), or,
with `pool_split='all'`, `validation_ids` ids drawn from the selected ones and held out
in every language at once (an id validated in one language is trained in none).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from linguamix import t5x_tasks
from linguamix.t5x_tasks import tasks as task_lib

MODES = ("shared", "disjoint", "independent")
# `epoch`: each epoch every selected example once, seeded order (stream.py); `rate`:
# SeqIO's sampling, each draw picks a task with P ~ min(n, maximum) ** (1 / temperature).
SAMPLING = ("epoch", "rate")


class RecipeError(ValueError):
  """A recipe that cannot be built; the message names the recipe and the value."""


@dataclasses.dataclass(frozen=True, eq=False)
class Recipe:
  name: str                                   # mixture name; tasks are `{name}.{lang}`
  family: str                                 # task family the items come from
  langs: tuple[str, ...]
  # universe size -> {lang: exact count or None (all)}; evaluated with the data.
  budgets: Callable[[int], Mapping[str, Optional[int]]]
  mode: str = "shared"
  seed: int = 0
  universe_size: Optional[int] = None         # first keep a seeded sample of this many ids
  pool_split: str = "train"                   # `all`: validation = `validation_ids` ids
  validation_ids: Optional[int] = None        # held out of the selection, in every language
  use_langit: bool = False
  sampling: str = "epoch"                     # or `rate` (SAMPLING)
  temperature: float = 1.0                    # rate = min(n, maximum) ** (1 / temperature)
  maximum: Optional[int] = None
  description: str = ""
  counts: str = ("budgets count training examples; validation is the source's own held-out "
                 "split (its validation file, or 1% of ids by hash, the same ids in every "
                 "language), in no training selection")

  def __post_init__(self):
    if self.mode not in MODES:
      raise RecipeError(f"recipe {self.name}: unknown id mode {self.mode!r}; known: {MODES}")
    if self.family not in task_lib.FAMILIES:
      raise RecipeError(f"recipe {self.name}: unknown task family {self.family!r}")
    fam = task_lib.FAMILIES[self.family]
    unknown = [l for l in self.langs if l not in fam.langs]
    if unknown:
      raise RecipeError(f"recipe {self.name}: language(s) {', '.join(unknown)} not in "
                        f"{self.family} ({' '.join(fam.langs)})")
    if not self.langs:
      raise RecipeError(f"recipe {self.name}: no languages")
    if self.temperature <= 0:
      raise RecipeError(f"recipe {self.name}: temperature must be > 0, got {self.temperature}")
    if (self.pool_split == "all") != (self.validation_ids is not None):
      raise RecipeError(f"recipe {self.name}: pool_split='all' needs validation_ids and "
                        "vice versa")
    if self.sampling not in SAMPLING:
      raise RecipeError(f"recipe {self.name}: unknown sampling {self.sampling!r}; known: "
                        f"{', '.join(SAMPLING)}")

  def task_name(self, lang: str) -> str:
    return f"{self.name}.{lang}"

  def source(self, lang: str):
    return task_lib.FAMILIES[self.family].source(lang)


def even_split(total: int, langs: Sequence[str]) -> dict[str, int]:
  """`total` over `langs` as evenly as possible; the first `total % len` get one more."""
  q, r = divmod(total, len(langs))
  return {l: q + (i < r) for i, l in enumerate(langs)}


def _rng(seed: int, salt: str = "") -> np.random.Generator:
  return np.random.default_rng([seed, zlib.crc32(salt.encode())])


_PLANS: dict = {}


def plan(recipe: Recipe) -> dict[str, dict[str, list[str]]]:
  """{lang: {'train': ids, 'validation': ids}} (cached per recipe and data root)."""
  key = (recipe, t5x_tasks.data_root())  # recipes hash by identity (eq=False)
  if key not in _PLANS:
    _PLANS[key] = _compute(recipe)
  return _PLANS[key]


def _permute(ids: Sequence[str], rng) -> list[str]:
  ordered = sorted(ids)
  return [ordered[i] for i in rng.permutation(len(ordered))]


def _compute(r: Recipe) -> dict[str, dict[str, list[str]]]:
  pools = {l: [rec["id"] for rec in r.source(l).records(r.pool_split)] for l in r.langs}
  train: dict[str, list[str]] = {}
  if r.mode == "independent":
    for l in r.langs:
      perm = _permute(pools[l], _rng(r.seed, l))
      n = _budgets(r, len(perm))[l]
      train[l] = perm[:_check(r, l, n, len(perm), f"{r.family}.{l} ({r.pool_split})")]
  else:
    common = set(pools[r.langs[0]]).intersection(*map(set, pools.values()))
    perm = _permute(common, _rng(r.seed))
    where = f"the ids {r.family} ({r.pool_split}) has in all of {' '.join(r.langs)}"
    if r.universe_size is not None:
      perm = perm[:_check(r, "*", r.universe_size, len(perm), where)]
      where = f"the universe of {r.universe_size} sampled ids"
    budgets = _budgets(r, len(perm))
    offset = 0
    for l in r.langs:
      n = _check(r, l, budgets[l], len(perm) - (offset if r.mode == "disjoint" else 0),
                 where + (f", after {offset} given to earlier languages" if offset and
                          r.mode == "disjoint" else ""))
      start = offset if r.mode == "disjoint" else 0
      train[l] = perm[start:start + n]
      offset += n
  if r.pool_split == "all":
    return _hold_out_ids(r, train)
  return {l: {"train": train[l],
              "validation": [rec["id"] for rec in r.source(l).records("validation")]}
          for l in r.langs}


def _budgets(r: Recipe, universe: int) -> dict:
  """The recipe's budgets, which must name exactly its languages (a typo is not 'all')."""
  budgets = r.budgets(universe)
  # a zero budget for a language the recipe left out (Pinch at P = 0) is harmless
  unknown = sorted(l for l in set(budgets) - set(r.langs) if budgets[l] != 0)
  missing = sorted(set(r.langs) - set(budgets))
  if unknown or missing:
    raise RecipeError(f"recipe {r.name!r}: budgets for languages it does not have {unknown}, "
                      f"none for its languages {missing}")
  return budgets


def _check(r: Recipe, lang: str, n: Optional[int], available: int, where: str) -> int:
  if n is None:
    return available
  if not isinstance(n, (int, np.integer)) or n < 0:
    raise RecipeError(f"recipe {r.name}: budget for {lang} must be a whole number >= 0, got {n!r}")
  if n > available:
    raise RecipeError(f"recipe {r.name}: impossible budget for {lang}: {n} examples wanted, "
                      f"but {where} number only {available}")
  return int(n)


def _hold_out_ids(r: Recipe, train):
  """Draws `validation_ids` of the selected ids; they are validation in every language
  that has them and training in none (parallel sets: the same item, translated)."""
  ids = list(dict.fromkeys(i for l in r.langs for i in train[l]))
  if not 0 < r.validation_ids < len(ids):
    raise RecipeError(f"recipe {r.name}: validation_ids={r.validation_ids} must be between 1 "
                      f"and the {len(ids)} selected ids minus one")
  held = {ids[k] for k in _rng(r.seed, "validation").choice(len(ids), r.validation_ids,
                                                            replace=False)}
  return {l: {"train": [i for i in train[l] if i not in held],
              "validation": [i for i in train[l] if i in held]} for l in r.langs}
