"""A study: its grid of runs (data), its training preset, its evaluations, its figures.

A `Run` names a registered recipe mixture (`linguamix mixtures list`) and the gin preset
it trains with; `tags` carry what the figures group by (P, seen languages, method, k,
seed, ...). Run names are the mixture names, so a run's folder says what it trained on.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  mixture: str
  tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  overrides: tuple[str, ...] = ()  # extra gin bindings 'NAME = VALUE' for this run only


@dataclasses.dataclass(frozen=True)
class Study:
  name: str
  title: str
  runs: Callable[[], Sequence[Run]]          # the published grid
  smoke_runs: Sequence[str]                  # names from `runs()` for --smoke
  presets: Mapping[str, str]                 # preset name -> gin file (first is the default)
  evals: Sequence[str]                       # eval task / mixture names (python -m linguamix.eval)
  smoke_evals: Sequence[str]                 # on the bundled XCOPA
  figures: Callable[..., list]               # (table, out_dir) -> [(title, png, note)]
  smoke_overrides: tuple[str, ...] = ()      # gin bindings that fit the recipes to the sample set
  judge: str | None = None                   # 'single' | 'pair:<baseline run>' | None
  notes: tuple[str, ...] = ()                # choices the report states

  @property
  def default_preset(self) -> str:
    return next(iter(self.presets))

  def grid(self, *, smoke: bool = False, pattern: str | None = None) -> list[Run]:
    runs = list(self.runs())
    if smoke:
      by_name = {r.name: r for r in runs}
      runs = [by_name[n] for n in self.smoke_runs]
    if pattern:
      patterns = pattern.split(",")
      runs = [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
    return runs
