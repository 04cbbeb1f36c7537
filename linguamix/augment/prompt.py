"""The selective-translation prompt (versioned; the cache key includes the version).

sPhinX's own prompt is not public. This one asks for a JSON object with the three
Orca fields, translating only what the task needs in the target language and keeping
everything whose meaning depends on staying as it is. Change PROMPT_VERSION whenever
the wording changes: cached results of an older prompt are then not reused.
"""

from __future__ import annotations

import json
import re

PROMPT_VERSION = "sta-v1"
FIELDS = ("system_prompt", "question", "response")

SYSTEM = """\
You translate instruction-tuning examples into {language} ({code}) for training a \
multilingual assistant. An example has three fields: "system_prompt", "question" and \
"response".

Translate selectively:
- Translate every part a {language} speaker needs in {language} to understand and solve \
the task: instructions, questions, explanations and the natural-language parts of the \
response.
- Keep exactly as they are, byte for byte: code blocks and inline code, URLs, e-mail \
addresses, numbers and digits (do not convert them to another numeral system), \
mathematical expressions, proper names, and any material the task works on in its \
original language (for example the source sentence of a translation exercise, a quoted \
text to analyse, or words whose spelling the task is about).
- If the task is about a language (for example "translate into French"), keep the task \
meaningful: translate the instruction, not the material.
- An empty field stays empty. Do not add, drop or summarise content.

Reply with one JSON object with exactly the keys "system_prompt", "question" and \
"response" (string values) and nothing else."""

RETRY = ("Your previous answer was rejected: {reason}. Answer again, following every "
         "rule, with the JSON object only.")


def messages(item: dict[str, str], lang: str, reason: str | None = None,
             previous: str | None = None) -> list[dict[str, str]]:
  """Chat messages asking for `item` (Orca fields) in `lang`; a retry carries the reason."""
  system = SYSTEM.format(language=NAMES[lang], code=lang)
  user = json.dumps({f: item[f] for f in FIELDS}, ensure_ascii=False, indent=1)
  out = [{"role": "system", "content": system}, {"role": "user", "content": user}]
  if reason is not None:
    out += [{"role": "assistant", "content": previous or ""},
            {"role": "user", "content": RETRY.format(reason=reason)}]
  return out


def parse(text: str) -> dict[str, str]:
  """The reply's JSON object (a ```json fence around it is tolerated); ValueError otherwise."""
  body = text.strip()
  fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
  if fenced:
    body = fenced.group(1)
  try:
    obj = json.loads(body)
  except json.JSONDecodeError as e:
    raise ValueError(f"structure: reply is not a JSON object ({e.msg})") from None
  if not isinstance(obj, dict):
    raise ValueError(f"structure: reply is a JSON {type(obj).__name__}, not an object")
  missing = [f for f in FIELDS if not isinstance(obj.get(f), str)]
  if missing:
    raise ValueError(f"structure: field(s) {', '.join(missing)} missing or not text")
  return {f: obj[f] for f in FIELDS}


# Target languages the prompt can name (English names); ISO 639-1 codes.
NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "az": "Azerbaijani", "bg": "Bulgarian",
    "bn": "Bengali", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French", "gl": "Galician",
    "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer",
    "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian",
    "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "my": "Burmese", "ne": "Nepali",
    "nl": "Dutch", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "si": "Sinhala", "sl": "Slovenian", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "xh": "Xhosa", "zh": "Chinese",
}

