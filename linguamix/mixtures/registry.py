"""Recipe mixtures: `build(name, options, vocabulary)` makes one; the registry names them.

`build` is explicit: it makes the recipe's `Recipe` (its family's numbers from gin, e.g.
`pinch_config`, read once), applies `options` (Recipe fields), registers the
per-language tasks `{name}.{lang}` over `vocabulary` (and a LANGIT recipe's
`langit_config`) with one call (`register_tasks`) and returns a `RecipeMixture`, a
`seqio.Mixture` made by its own constructor.

`import linguamix.mixtures` must make every name resolve through
`seqio.get_mixture_or_task` (upstream T5X's `MIXTURE_OR_TASK_NAME`) before gin has
parsed the bindings the recipes read, and without reading any data. So each name is
registered as a `RegisteredRecipe`: a Mixture that calls `build` on first use with the
arguments gin gives at that moment (`mixture_options`, the family's config, the model
gin's vocabulary) and builds again when those arguments change. Building checks
everything a training run would trip over later -- budgets, languages, rates -- so bad
input fails when the mixture is built or inspected.

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
from typing import Any, Callable, Mapping, Optional

import gin
import seqio

from linguamix.mixtures import selection as plan_lib
from linguamix.mixtures import stream
from linguamix.mixtures.selection import Recipe, RecipeError
from linguamix.t5x_tasks import langit
from linguamix.t5x_tasks import tasks as task_lib


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered recipe name: how to make its Recipe."""
  recipe: Callable[[], Recipe]
  config: Optional[Callable[[], object]] = None  # the gin-configurable it reads


RECIPES: dict[str, Entry] = {}  # name -> Entry, in registration order
FAMILY_OF: dict[str, str] = {}  # name -> recipe family, for `mixtures list`
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


def recipe_of(name: str, options: Optional[Mapping[str, Any]] = None) -> Recipe:
  """The registered recipe `name`, with `options` (Recipe fields) replaced."""
  if name not in RECIPES:
    why = explain_unknown(name)
    raise RecipeError(f"{name!r} is not a recipe mixture" + (f": {why}" if why else ""))
  return _replace(RECIPES[name].recipe(), options)


def _replace(recipe: Recipe, options: Optional[Mapping[str, Any]]) -> Recipe:
  if not options:
    return recipe
  try:
    return dataclasses.replace(recipe, **options)
  except TypeError as e:
    fields = ", ".join(f.name for f in dataclasses.fields(Recipe))
    raise RecipeError(f"mixture {recipe.name}: options {dict(options)!r} (from gin: "
                      f"mixture_options.overrides[{recipe.name!r}]): {e}; Recipe fields: "
                      f"{fields}") from None


def register_tasks(recipe: Recipe, vocabulary: Optional[seqio.Vocabulary] = None,
                   langit_config: Optional[langit.LangitConfig] = None) -> list[seqio.Task]:
  """Registers (or replaces) the tasks `{recipe.name}.{lang}`, one per language, over
  the recipe's id selection; `vocabulary` None: the model gin's; `langit_config`
  (LANGIT recipes) None: gin's when the data is made."""
  return [task_lib.add_task(recipe.task_name(lang), recipe.source(lang),
                            selector=_selector(recipe, lang), use_langit=recipe.use_langit,
                            vocabulary=vocabulary, langit_config=langit_config)
          for lang in recipe.langs]


def build(name: str | Recipe, options: Optional[Mapping[str, Any]] = None,
          vocabulary: Optional[seqio.Vocabulary] = None,
          langit_config: Optional[langit.LangitConfig] = None) -> "RecipeMixture":
  """The mixture of a registered recipe name (or of a `Recipe`), its tasks registered.

  `options`: Recipe fields to replace (`sampling`, `temperature`, `maximum`, `seed`, ...).
  `vocabulary`: the tasks' vocabulary; None is the model gin's, resolved when used.
  `langit_config`: a LANGIT recipe's exemplar settings; None is gin's `LangitConfig`,
  read once here.
  """
  recipe = _replace(name, options) if isinstance(name, Recipe) else recipe_of(name, options)
  if recipe.use_langit:
    langit_config = langit.resolved(langit_config)
  return RecipeMixture(recipe, register_tasks(recipe, vocabulary, langit_config),
                       langit_config if recipe.use_langit else None)


class RecipeMixture(seqio.Mixture):
  """A seqio.Mixture over the per-language subset tasks `{name}.{lang}` of a `Recipe`."""

  def __init__(self, recipe: Recipe, tasks: list[seqio.Task],
               langit_config: Optional[langit.LangitConfig] = None):
    rate = functools.partial(examples_rate, temperature=recipe.temperature,
                             maximum=recipe.maximum)
    super().__init__(recipe.name, [(task, rate) for task in tasks])
    self._recipe = recipe
    self._langit_config = langit_config

  @property
  def recipe(self) -> Recipe:
    return self._recipe

  def check(self) -> dict:
    """Computes the id selection and the rates; raises RecipeError naming the problem."""
    selection = plan_lib.plan(self.recipe)
    rates = {t.name: self.get_rate(t) for t in self.tasks}
    if not sum(rates.values()) > 0:
      raise RecipeError(f"mixture {self.name}: mixing rates sum to zero ({rates})")
    return selection

  def epoch_key(self) -> str:
    """What decides an epoch's examples besides the selected ids and the vocabulary: the
    recipe's fields (its budgets as the ids they select) and LANGIT's config."""
    fields = [(f.name, getattr(self.recipe, f.name)) for f in dataclasses.fields(Recipe)
              if f.name not in ("budgets", "description", "counts")]
    return repr((fields, self._langit_config))

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


class RegisteredRecipe(RecipeMixture):
  """The registry's entry for a recipe name: `build(name, ...)` on first use, with the
  arguments gin gives then, and again when they change.

  SeqIO has no lazily built provider, and its Mixture constructor needs the tasks; so
  this one does not call it: every Mixture member it has is the built mixture's,
  through SeqIO's public members below and `__getattr__` for the rest.
  """

  def __init__(self, name: str):  # pylint: disable=super-init-not-called
    self._registered_name = name
    self._built: Optional[RecipeMixture] = None
    self._arguments = None

  def _gin_arguments(self):
    """What `build` gets from gin now, and its repr (lists and dicts are unhashable);
    LANGIT's config is part of the tasks' data, so a change rebuilds too."""
    entry = RECIPES[self._registered_name]
    options = mixture_options().get(self._registered_name)
    langit_config = langit.LangitConfig()
    return options, langit_config, repr((entry.config() if entry.config else None, options,
                                         langit_config))

  def built(self) -> RecipeMixture:
    options, langit_config, arguments = self._gin_arguments()
    if self._built is None or arguments != self._arguments:
      if self._built is not None:
        logging.info("mixture %s: gin bindings changed; rebuilding", self._registered_name)
      self._built = build(self._registered_name, options, langit_config=langit_config)
      self._arguments = arguments
    return self._built

  def __getattr__(self, attr):
    if attr.startswith("__") or attr in ("_registered_name", "_built", "_arguments"):
      raise AttributeError(attr)
    return getattr(self.built(), attr)

  name = property(lambda self: self._registered_name)
  recipe = property(lambda self: self.built().recipe)
  tasks = property(lambda self: self.built().tasks)
  total_rate = property(lambda self: self.built().total_rate)
  rate_per_task_name = property(lambda self: self.built().rate_per_task_name)
  splits = property(lambda self: self.built().splits)
  output_features = property(lambda self: self.built().output_features)
  source_info = property(lambda self: self.built().source_info)

  def get_rate(self, task: seqio.Task) -> float:
    return self.built().get_rate(task)

  def num_input_examples(self, split: str) -> int:
    return self.built().num_input_examples(split)

  def check(self) -> dict:
    return self.built().check()

  def get_task_dataset(self, *args, **kwargs):
    return self.built().get_task_dataset(*args, **kwargs)

  def get_dataset(self, *args, **kwargs):
    return self.built().get_dataset(*args, **kwargs)


def _selector(recipe: Recipe, lang: str):
  return lambda split: plan_lib.plan(recipe)[lang][split]


def register(name: str, recipe: Callable[[], Recipe], *, family: str, description: str,
             config: Optional[Callable[[], object]] = None) -> None:
  """Registers a recipe under `name` (replacing one of the same name), in `RECIPES` and
  as a SeqIO mixture built on first use. `config`: the gin-configurable function whose
  value the recipe is made from (built again when it changes)."""
  RECIPES[name] = Entry(recipe, config)
  FAMILY_OF[name], DESCRIPTIONS[name] = family, description
  seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add_provider(name, RegisteredRecipe(name))


def name_table() -> dict[str, list[str]]:
  """name -> [family, description] of every registered recipe, in registration order:
  what `linguamix/mixtures/names.json` holds (docs/recipes.md)."""
  return {name: [family, DESCRIPTIONS[name]] for name, family in FAMILY_OF.items()}


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
