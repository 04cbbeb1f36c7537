"""Language lists of the studies and the ISO 639-1 -> ISO 639-3 table.

Task names use ISO 639-1 (`bactrian_x.sw`); lang2vec, language identification and
the Aya dataset use ISO 639-3, hence the explicit table (first code is the one
lang2vec/URIEL uses; later ones are aliases seen in datasets).
"""

BACTRIAN_X = tuple(
    "af ar az bn cs de en es et fa fi fr gl gu he hi hr id it ja ka kk km ko lt lv mk "
    "ml mn mr my ne nl pl ps pt ro ru si sl sv sw ta te th tl tr uk ur vi xh zh".split())
PINCH = tuple("en ar zh cs et fi he hi it ru es sw".split())
BETTER_ALPACA = tuple("en bg cs de es fi fr ru zh".split())
ALPACA_X = BETTER_ALPACA + ("pt",)  # pt released, unused by the study
OPENGPTX = tuple("en de fr it es".split())
# oasst1's 35 language codes as its dataset card lists them (messages say pt-BR for pt).
OASST1 = tuple(
    "ar bg bn ca cs da de el en eo es eu fa fi fr gl he hu id it ja ko nb nl pl pt ro "
    "ru sk sv th tr uk vi zh".split())
# sPhinX: 50 target languages + English; the paper's list is not public, our default
# is Bactrian-X's 52 without Galician (documented in linguamix/mixtures/sphinx.py).
SPHINX = tuple(l for l in BACTRIAN_X if l != "gl")

ISO639_3: dict[str, tuple[str, ...]] = {
    "af": ("afr",), "am": ("amh",), "ar": ("arb", "ara"), "az": ("aze", "azj"),
    "be": ("bel",), "bg": ("bul",), "bn": ("ben",), "ca": ("cat",), "cs": ("ces",),
    "cy": ("cym",), "da": ("dan",), "de": ("deu",), "el": ("ell",), "en": ("eng",),
    "eo": ("epo",), "es": ("spa",), "et": ("est", "ekk"), "eu": ("eus",),
    "fa": ("pes", "fas"), "fi": ("fin",), "fr": ("fra",), "ga": ("gle",),
    "gl": ("glg",), "gu": ("guj",), "ha": ("hau",), "he": ("heb",), "hi": ("hin",),
    "hr": ("hrv",), "ht": ("hat",), "hu": ("hun",), "hy": ("hye",), "id": ("ind",),
    "ig": ("ibo",), "is": ("isl",), "it": ("ita",), "ja": ("jpn",), "jv": ("jav",),
    "ka": ("kat",), "kk": ("kaz",), "km": ("khm",), "kn": ("kan",), "ko": ("kor",),
    "ky": ("kir",), "lt": ("lit",), "lv": ("lav", "lvs"), "mg": ("mlg", "plt"),
    "mk": ("mkd",), "ml": ("mal",), "mn": ("mon", "khk"), "mr": ("mar",),
    "ms": ("zsm", "msa"), "mt": ("mlt",), "my": ("mya",), "nb": ("nob",),
    "ne": ("npi", "nep"), "nl": ("nld",), "pa": ("pan",), "pl": ("pol",),
    "ps": ("pbt", "pus"), "pt": ("por",), "qu": ("quy", "que"), "ro": ("ron",),
    "ru": ("rus",), "si": ("sin",), "sk": ("slk",), "sl": ("slv",), "sn": ("sna",),
    "so": ("som",), "sq": ("als", "sqi"), "sr": ("srp",), "sv": ("swe",),
    "sw": ("swh", "swa"), "ta": ("tam",), "te": ("tel",), "tg": ("tgk",),
    "th": ("tha",), "tl": ("tgl", "fil"), "tr": ("tur",), "uk": ("ukr",),
    "ur": ("urd",), "uz": ("uzn", "uzb"), "vi": ("vie",), "wo": ("wol",),
    "xh": ("xho",), "yo": ("yor",), "zh": ("cmn", "zho"), "zu": ("zul",),
}
# Aya's languages that have an ISO 639-1 code in the table above.
AYA = tuple(sorted(ISO639_3))


def iso639_3(lang: str) -> str:
  """ISO 639-3 code (lang2vec's) of an ISO 639-1 code; KeyError names the code."""
  if lang not in ISO639_3:
    raise KeyError(f"unknown language code {lang!r}: not in linguamix's ISO 639-1 table "
                   f"({len(ISO639_3)} codes, see linguamix/t5x_tasks/languages.py)")
  return ISO639_3[lang][0]


def is_known(code: str) -> bool:
  """Whether `normalize` knows the code."""
  try:
    normalize(code)
  except ValueError:
    return False
  return True


def normalize(code: str) -> str:
  """ISO 639-1 code for an ISO 639-1 or 639-3 code (`pt-BR` -> `pt`); ValueError otherwise."""
  base = code.split("-")[0].split("_")[0].lower()
  if base in ISO639_3:
    return base
  for two, threes in ISO639_3.items():
    if base in threes:
      return two
  raise ValueError(f"unknown language code {code!r}")
