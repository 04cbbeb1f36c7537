"""sPhinX: per-language budgets by resource tier, each language its own subset, + LANGIT.

* `sphinx_tiers`: the tier table of `sphinx_tiers.py` (high 100k / mid 50k / low 25k
  over 51 languages), each language an independent seeded sample of its own `sphinx`
  data, every example prefixed with LANGIT exemplars (`LangitConfig`);
* `sphinx_tiers_nolangit`: the same without LANGIT.
Override from gin: `sphinx_config.tiers = {'sw': 'mid'}`,
`sphinx_config.tier_budgets = {'high': 400, 'mid': 200, 'low': 100}`.
"""

from __future__ import annotations

import gin

from linguamix.mixtures import registry, sphinx_tiers
from linguamix.mixtures.selection import Recipe


@gin.configurable(module="linguamix.mixtures")
def sphinx_config(tiers=None, tier_budgets=None, seed: int = 0, family: str = "sphinx"):
  return tiers, tier_budgets, seed, family


def recipe(name: str, use_langit: bool) -> Recipe:
  tiers, tier_budgets, seed, family = sphinx_config()
  budgets = sphinx_tiers.budgets(tiers, tier_budgets)
  from linguamix.t5x_tasks import tasks as task_lib
  langs = tuple(l for l in task_lib.FAMILIES[family].langs if budgets.get(l))
  return Recipe(name, family, langs, lambda n: budgets, mode="independent", seed=seed,
                use_langit=use_langit,
                description="sPhinX tiers" + (" + LANGIT" if use_langit else ""))


def register_all() -> None:
  registry.register("sphinx_tiers", lambda: recipe("sphinx_tiers", True), family="sphinx",
                    config=sphinx_config,
                    description="sPhinX: 100k/50k/25k by tier, own subsets, LANGIT")
  registry.register("sphinx_tiers_nolangit", lambda: recipe("sphinx_tiers_nolangit", False),
                    family="sphinx", config=sphinx_config,
                    description="sPhinX tiers without LANGIT")
