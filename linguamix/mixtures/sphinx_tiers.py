"""sPhinX's per-language budgets by resource tier (docs/recipes.md).

The study samples 100k items per high-resource language, 50k per mid-resource and 25k
per low-resource, but never published which language is in which tier. The default
table below follows the resource classes of Joshi et al. (2020, "The State and Fate of
Linguistic Diversity"), roughly: classes 4-5 -> high, class 3 -> mid, classes 0-2 ->
low, over sPhinX's 51 languages (`linguamix.t5x_tasks.languages.SPHINX`: Bactrian-X's
52 without Galician). It sums to 3.3M items (3.2M without English), more than the
paper's 1.8M: the paper's split is unknown, so override it (`budgets(tiers=...)`,
`tier_budgets=...`) to match a study or a compute budget.

Plain Python so the augmentation command and the sPhinX mixtures share one table.
"""

from __future__ import annotations

from typing import Mapping

TIER_BUDGETS: dict[str, int] = {"high": 100_000, "mid": 50_000, "low": 25_000}

_DEFAULT = {
    "high": "ar cs de en es fa fi fr hi hr it ja ko nl pl pt ru sv tr vi zh",
    "mid": "af bn et he id ka kk lt lv mk ml ro sl ta th tl uk ur",
    "low": "az gu km mn mr my ne ps si sw te xh",
}
DEFAULT_TIERS: dict[str, str] = {
    lang: tier for tier, langs in _DEFAULT.items() for lang in langs.split()}


def budgets(tiers: Mapping[str, str] | None = None,
            tier_budgets: Mapping[str, int] | None = None,
            langs=None) -> dict[str, int]:
  """{lang: items} from a {lang: tier} table (default `DEFAULT_TIERS`).

  `tiers` entries override the default table's; `langs` restricts the result (every
  one must have a tier). Unknown tiers and languages raise, naming them.
  """
  table = {**DEFAULT_TIERS, **(tiers or {})}
  sizes = {**TIER_BUDGETS, **(tier_budgets or {})}
  for lang, tier in table.items():
    if tier not in sizes:
      raise ValueError(f"sPhinX tiers: language {lang!r} has unknown tier {tier!r}; "
                       f"tiers are {', '.join(sizes)}")
  for tier, size in sizes.items():
    if not isinstance(size, int) or size < 0:
      raise ValueError(f"sPhinX tiers: budget of tier {tier!r} must be a whole number >= 0, "
                       f"got {size!r}")
  if langs is None:
    langs = sorted(table)
  missing = [lang for lang in langs if lang not in table]
  if missing:
    raise ValueError(f"sPhinX tiers: no tier for {', '.join(missing)}; known: "
                     f"{' '.join(sorted(table))}")
  return {lang: sizes[table[lang]] for lang in langs}
