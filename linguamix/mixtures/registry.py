"""Recipe mixtures: registered by name at import, built (tasks, ids, rates) on first use.

Building lazily keeps `import linguamix.mixtures` fast and data-free, and lets gin
bindings parsed after import (budgets, seeds, the data root) apply. Building checks
everything a training run would trip over later — budgets, languages, rates — so bad
input fails when the mixture is built or inspected, never mid-training.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Optional

import seqio

from linguamix.mixtures import selection as plan_lib
from linguamix.mixtures.selection import Recipe, RecipeError
from linguamix.t5x_tasks import tasks as task_lib

_LAZY = ("_task_to_rate", "_task_map", "_tasks", "_sub_mixtures", "_sample_fn", "_source_info")
FAMILY_OF: dict[str, str] = {}      # mixture name -> recipe family (for `mixtures list`)
DESCRIPTIONS: dict[str, str] = {}
# Names with a parameter (pinch_p{P}): pattern -> why a name of that shape is not registered.
NAME_RULES: list[tuple[str, Callable[[re.Match], Optional[str]]]] = []


def examples_rate(task: seqio.Task, temperature: float = 1.0,
                  maximum: Optional[int] = None) -> float:
  """Examples-proportional rate: min(n, maximum) ** (1 / temperature)."""
  n = task.num_input_examples("train")
  if maximum is not None:
    n = min(n, maximum)
  return float(n) ** (1.0 / temperature)


class RecipeMixture(seqio.Mixture):
  """A seqio.Mixture over the per-language subset tasks of a `Recipe`."""

  def __init__(self, name: str, build: Callable[[], Recipe], task_prefix: Optional[str] = None):
    self._name, self._build, self._recipe = name, build, None
    self._task_prefix = task_prefix

  def __getattr__(self, attr):
    if attr in _LAZY:
      self.build()
      return object.__getattribute__(self, attr)
    raise AttributeError(attr)

  @property
  def recipe(self) -> Recipe:
    self.build()
    return self._recipe

  def build(self) -> "RecipeMixture":
    if self._recipe is not None:
      return self
    if self._task_prefix:  # an alias: the same tasks as another recipe mixture
      recipe = seqio.MixtureRegistry.get(self._task_prefix).recipe
    else:
      recipe = self._build()
      for lang in recipe.langs:
        task_lib.add_task(recipe.task_name(lang), recipe.source(lang),
                          selector=_selector(recipe, lang), use_langit=recipe.use_langit)
    rate = functools.partial(examples_rate, temperature=recipe.temperature,
                             maximum=recipe.maximum)
    seqio.Mixture.__init__(self, self._name, [(recipe.task_name(l), rate) for l in recipe.langs])
    self._recipe = recipe
    return self

  def check(self) -> dict:
    """Computes the id selection and the rates; raises RecipeError naming the problem."""
    recipe = self.recipe
    selection = plan_lib.plan(recipe)
    rates = {t.name: self.get_rate(t) for t in self.tasks}
    if not sum(rates.values()) > 0:
      raise RecipeError(f"mixture {self.name}: mixing rates sum to zero ({rates})")
    return selection

  def get_dataset(self, *args, **kwargs):
    self.check()
    return super().get_dataset(*args, **kwargs)


def _selector(recipe: Recipe, lang: str):
  return lambda split: plan_lib.plan(recipe)[lang][split]


def register(name: str, build: Callable[[], Recipe], *, family: str, description: str,
             alias_of: Optional[str] = None) -> None:
  """Registers a recipe mixture under `name` (replacing one of the same name)."""
  seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add_provider(name, RecipeMixture(name, build, alias_of))
  FAMILY_OF[name], DESCRIPTIONS[name] = family, description


def explain_unknown(name: str) -> Optional[str]:
  """Why `name` is not a mixture, when a recipe's name pattern says (else None)."""
  for pattern, explain in NAME_RULES:
    if (m := re.fullmatch(pattern, name)):
      return explain(m)
  return None


def get(name: str) -> RecipeMixture:
  if name not in seqio.MixtureRegistry.names() and (why := explain_unknown(name)):
    raise RecipeError(f"{name!r} is not a mixture: {why}")
  mixture = seqio.get_mixture_or_task(name)
  if not isinstance(mixture, RecipeMixture):
    raise RecipeError(f"{name!r} is not a linguamix recipe mixture")
  return mixture
