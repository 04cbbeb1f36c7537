"""Language consistency: the share of answers written in the prompt's language.

Identifies each answer with py3langid, whose model ships inside the package (offline).
It answers in ISO 639-1 codes, the project's language codes.
"""

from __future__ import annotations

import collections
import functools
from typing import Iterable, Mapping

import py3langid


@functools.lru_cache(maxsize=1)
def _identifier(languages: tuple[str, ...] | None):
  identifier = py3langid.langid.LanguageIdentifier.from_modelpath(
      py3langid.langid.MODEL_DIR / py3langid.langid.MODEL_FILE)
  if languages:
    identifier.set_languages(list(languages))
  return identifier


def identify(text: str, languages: Iterable[str] | None = None) -> str:
  """ISO 639-1 code of `text` ('' for an empty answer), optionally among `languages`."""
  if not text.strip():
    return ""
  return _identifier(tuple(sorted(languages)) if languages else None).classify(text)[0]


def language_consistency(answers: Iterable[tuple[str, str]],
                         languages: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
  """{lang: {consistency (percent), num_answers, most_common_other}} from (lang, answer)."""
  totals, same = collections.Counter(), collections.Counter()
  others: Mapping[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for lang, answer in answers:
    found = identify(answer, languages)
    totals[lang] += 1
    if found == lang:
      same[lang] += 1
    else:
      others[lang][found or "(empty)"] += 1
  return {lang: {"consistency": 100.0 * same[lang] / totals[lang], "num_answers": totals[lang],
                 "most_common_other": others[lang].most_common(1)[0][0] if others[lang] else ""}
          for lang in sorted(totals)}
