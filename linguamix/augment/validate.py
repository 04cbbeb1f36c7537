"""Checks on a translated item: structure, language, preserved spans, length ratio.

Each check returns a reason string (`kind: detail`) or None; the first failing one
rejects the item. The kinds (structure, spans, language, length) key the summary.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re

from linguamix.augment.prompt import FIELDS

# Untranslatable spans, extracted in this order (each removed before the next), so a
# number inside a URL or code block is checked as part of it, not on its own.
SPAN_PATTERNS = (
    ("code block", re.compile(r"```.*?(?:```|\Z)", re.DOTALL)),
    ("inline code", re.compile(r"`[^`\n]+`")),
    ("URL", re.compile(r"https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]")),
    ("number", re.compile(r"(?<![0-9])[0-9]+(?:[.,][0-9]+)*")),
)
MIN_LETTERS_FOR_LANGUAGE_ID = 20


@dataclasses.dataclass(frozen=True)
class Checks:
  min_length_ratio: float = 0.25  # output chars / source chars, all fields together
  max_length_ratio: float = 4.0
  check_language: bool = True


def spans(text: str) -> tuple[list[tuple[str, str]], str]:
  """[(kind, span)] of `text` in order of SPAN_PATTERNS, and the prose left over."""
  found = []
  for kind, pattern in SPAN_PATTERNS:
    found += [(kind, m) for m in pattern.findall(text)]
    text = pattern.sub(" ", text)
  return found, text


@functools.cache
def _identifier():
  from py3langid.langid import LanguageIdentifier, MODEL_FILE  # pylint: disable=g-import-not-at-top
  return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def supported_languages() -> set[str]:
  """ISO 639-1 codes the offline language identifier (py3langid) knows."""
  return set(_identifier().labels)


def check(source: dict[str, str], output: dict[str, str], lang: str,
          checks: Checks = Checks()) -> str | None:
  """Why `output` (parsed Orca fields) is not an acceptable `lang` version of `source`."""
  for field in FIELDS:
    if source[field].strip() and not output[field].strip():
      return f"structure: field {field} is empty in the reply"
    if not source[field].strip() and output[field].strip():
      return f"structure: field {field} is empty in the input but filled in the reply"
  prose = []
  for field in FIELDS:
    want, _ = spans(source[field])
    got, rest = spans(output[field])
    prose.append(rest)
    missing = collections.Counter(want) - collections.Counter(got)
    if missing:
      listed = ", ".join(f"{kind} {span!r}" for kind, span in list(missing)[:3])
      return f"spans: {field} lost {listed}"
  source_chars = sum(len(source[f]) for f in FIELDS)
  ratio = sum(len(output[f]) for f in FIELDS) / max(source_chars, 1)
  if not checks.min_length_ratio <= ratio <= checks.max_length_ratio:
    return (f"length: output/input ratio {ratio:.2f} outside "
            f"[{checks.min_length_ratio}, {checks.max_length_ratio}]")
  text = " ".join(" ".join(prose).split())
  if checks.check_language and sum(c.isalpha() for c in text) >= MIN_LETTERS_FOR_LANGUAGE_ID:
    found, probability = _identifier().classify(text)
    if found != lang:
      return f"language: identified as {found} (p={probability:.2f}), expected {lang}"
  return None
