"""Recipe mixtures: registered by name at import, built (tasks, ids, rates) on first use.

Building lazily keeps `import linguamix.mixtures` fast and data-free. Every use checks
the gin values the recipe was built from (its family's config, `mixture_options`,
`LangitConfig`) and rebuilds when they changed, so a binding parsed at any time takes
effect. Building checks everything a training run would trip over later -- budgets,
languages, rates -- so bad input fails when the mixture is built or inspected.

Training stream (`get_dataset`): `sampling='epoch'` (every recipe's default) is
epoch-exact (stream.py: each epoch every selected example once, seeded order;
`num_epochs=1` is one whole epoch). `sampling='rate'` is SeqIO's rate sampling with the
recipe's temperature and cap, chosen per mixture from gin:

    linguamix.mixtures.mixture_options.overrides = {
        'pinch_40shot': {'sampling': 'rate', 'temperature': 2.0, 'maximum': 1000}}
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from typing import Callable, Optional

import gin
import seqio

from linguamix.mixtures import selection as plan_lib
from linguamix.mixtures import stream
from linguamix.mixtures.selection import Recipe, RecipeError
from linguamix.t5x_tasks import langit
from linguamix.t5x_tasks import tasks as task_lib

_LAZY = ("_task_to_rate", "_task_map", "_tasks", "_sub_mixtures", "_sample_fn", "_source_info")
FAMILY_OF: dict[str, str] = {}      # mixture name -> recipe family (for `mixtures list`)
DESCRIPTIONS: dict[str, str] = {}
# Names with a parameter (pinch_p{P}): pattern -> why a name of that shape is not registered.
NAME_RULES: list[tuple[str, Callable[[re.Match], Optional[str]]]] = []


@gin.configurable(module="linguamix.mixtures")
def mixture_options(overrides: Optional[dict] = None) -> dict:
  """{mixture name: {Recipe field: value}}, e.g. {'pinch_p10': {'sampling': 'rate'}}."""
  return dict(overrides or {})


def examples_rate(task: seqio.Task, temperature: float = 1.0,
                  maximum: Optional[int] = None) -> float:
  """Examples-proportional rate: min(n, maximum) ** (1 / temperature)."""
  n = task.num_input_examples("train")
  if maximum is not None:
    n = min(n, maximum)
  return float(n) ** (1.0 / temperature)


class RecipeMixture(seqio.Mixture):
  """A seqio.Mixture over the per-language subset tasks `{name}.{lang}` of a `Recipe`."""

  def __init__(self, name: str, build: Callable[[], Recipe],
               config: Optional[Callable[[], object]] = None):
    self._name, self._build, self._config = name, build, config
    self._recipe, self._key, self._building = None, None, False

  def __getattr__(self, attr):
    if attr in _LAZY:
      self.build()
      return object.__getattribute__(self, attr)
    raise AttributeError(attr)

  def _gin_key(self) -> str:
    """The gin values this mixture is built from (repr: lists and dicts are unhashable)."""
    return repr((self._config() if self._config else None,
                 mixture_options().get(self._name), langit.LangitConfig()))

  @property
  def recipe(self) -> Recipe:
    self.build()
    return self._recipe

  def build(self) -> "RecipeMixture":
    if self._building:
      return self
    key = self._gin_key()
    if self._recipe is not None and key == self._key:
      return self
    if self._recipe is not None:
      logging.info("mixture %s: gin bindings changed; rebuilding", self._name)
    self._building = True
    try:
      recipe = self._build()
      options = mixture_options().get(self._name)
      if options:
        try:
          recipe = dataclasses.replace(recipe, **options)
        except TypeError as e:
          fields = ", ".join(f.name for f in dataclasses.fields(Recipe))
          raise RecipeError(f"mixture_options.overrides[{self._name!r}] = {options!r}: {e}; "
                            f"Recipe fields: {fields}") from None
      for lang in recipe.langs:
        task_lib.add_task(recipe.task_name(lang), recipe.source(lang),
                          selector=_selector(recipe, lang), use_langit=recipe.use_langit)
      rate = functools.partial(examples_rate, temperature=recipe.temperature,
                               maximum=recipe.maximum)
      seqio.Mixture.__init__(self, self._name,
                             [(recipe.task_name(l), rate) for l in recipe.langs])
      self._recipe, self._key = recipe, key
    finally:
      self._building = False
    return self

  @property
  def tasks(self) -> list[seqio.Task]:
    self.build()
    return seqio.Mixture.tasks.fget(self)

  def get_rate(self, task: seqio.Task) -> float:
    self.build()
    return super().get_rate(task)

  def check(self) -> dict:
    """Computes the id selection and the rates; raises RecipeError naming the problem."""
    recipe = self.recipe
    selection = plan_lib.plan(recipe)
    rates = {t.name: self.get_rate(t) for t in self.tasks}
    if not sum(rates.values()) > 0:
      raise RecipeError(f"mixture {self.name}: mixing rates sum to zero ({rates})")
    return selection

  def get_dataset(self, sequence_length=None, split: str = "train", use_cached: bool = False,
                  shuffle: bool = True, seed=None, shard_info=None, num_epochs=None,
                  copy_pretokenized: bool = False, compute_stats_empirically: bool = False,
                  log_mixing_proportions: bool = True, passthrough_features=None,
                  trim_output_features: bool = True, try_in_mem_cache: bool = True):
    self.check()
    if self.recipe.sampling == "rate":
      return super().get_dataset(
          sequence_length, split, use_cached, shuffle, seed, shard_info, num_epochs,
          copy_pretokenized, compute_stats_empirically, log_mixing_proportions,
          passthrough_features, trim_output_features, try_in_mem_cache)
    if use_cached:  # as SeqIO does for a task without a cache
      logging.warning("mixture %s has no SeqIO cache; preprocessing on the fly", self.name)
    keys = set(self.output_features)
    if copy_pretokenized:
      keys |= {f"{k}_pretokenized" for k in self.output_features}
    keys |= set(passthrough_features or ())
    by_name = {t.name: t for t in self.tasks}
    tasks = [by_name[self.recipe.task_name(l)] for l in self.recipe.langs]
    return stream.dataset(tasks, keys, sequence_length, split, shuffle=shuffle, seed=seed,
                          shard_info=shard_info, num_epochs=num_epochs,
                          trim_output_features=trim_output_features,
                          try_in_mem_cache=try_in_mem_cache)


def _selector(recipe: Recipe, lang: str):
  return lambda split: plan_lib.plan(recipe)[lang][split]


def register(name: str, build: Callable[[], Recipe], *, family: str, description: str,
             config: Optional[Callable[[], object]] = None) -> None:
  """Registers a recipe mixture under `name` (replacing one of the same name). `config`:
  the gin-configurable function whose value the recipe is built from (rebuilt when it
  changes)."""
  seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add_provider(name, RecipeMixture(name, build, config))
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
