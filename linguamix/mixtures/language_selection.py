"""Linguistically-informed language selection (Soykan & Şahin 2024; docs/recipes.md).

Choose k of Bactrian-X's 52 languages by one of seven methods:

* TYPO, GEO, LEARN, SEM: k-means with k clusters on the raw feature vectors
  (`KMeans(n_clusters=k, n_init=10, random_state=seed)`), then for each centroid
  the nearest language (Euclidean). Features: lang2vec
  `syntax_knn+phonology_knn+inventory_knn` (289 dims), `geo` (299), `learned`
  (512), or a user-supplied word2vec-format text file keyed by ISO 639-3 (SEM).
* FAM: one language per family (first active lang2vec `fam` feature); families
  are visited in a seeded random order.
* RANDOM: a seeded uniform sample. ALL: the whole pool.

Decisions the study left open (documented in the README):

* The pool is sorted by ISO 639-1 code; k-means' seeded initialisation depends on the
  row order, so the order is part of the result.
* Duplicate nearest languages: centroids are visited in cluster-index order and each
  takes the nearest language not already taken by an earlier centroid (ties go to the
  earlier language in pool order). So k clusters always give k distinct languages.
* lang2vec keys languages by its own ISO 639-1 -> 639-3 table (`letter_codes.json`:
  macrolanguage codes, `ar -> ara`, `zh -> zho`); with it exactly 16 of the 52 lack a
  `learned` vector, as the study reports. linguamix's table
  (`linguamix.t5x_tasks.languages.ISO639_3`) names the individual-language codes
  (`arb`, `cmn`) first, so lang2vec lookups use lang2vec's table and SEM files are
  searched under every code of both tables.
* A language whose features are missing (lang2vec `'--'`, no `learned` vector, not in
  the SEM file) is left out of that method's pool and reported under `excluded`.
* FAM with k above the number of families keeps going round-robin: every family's
  next language (a seeded shuffle of its members) in the same family order.

lang2vec is imported lazily: this module imports with NumPy alone.
"""

from __future__ import annotations

import functools
import importlib
import os
import pathlib
import sys
from typing import Any, Sequence

import numpy as np

from linguamix.t5x_tasks import languages

METHODS = ("typo", "geo", "learn", "sem", "fam", "random", "all")
# Method -> lang2vec feature set clustered by k-means.
LANG2VEC_FEATURES = {
    "typo": "syntax_knn+phonology_knn+inventory_knn",
    "geo": "geo",
    "learn": "learned",
}


def select_languages(method: str, k: int, seed: int, *, pool: Sequence[str] | None = None,
                     sem_embeddings_path: str | None = None) -> list[str]:
  """The k languages `method` chooses from `pool` (default: Bactrian-X's 52), sorted ISO 639-1 codes."""
  return selection_details(method, k, seed, pool=pool,
                           sem_embeddings_path=sem_embeddings_path)["selected"]


def selection_details(method: str, k: int, seed: int, *, pool: Sequence[str] | None = None,
                      sem_embeddings_path: str | None = None) -> dict[str, Any]:
  """The selection with its evidence, JSON-ready.

  Keys: method, k, seed, features (what was clustered, or None), dims, pool (after
  exclusions), excluded ({code: reason}), selected (sorted), and per method:
  clusters ({code: cluster index}), distances ({code: distance to its centroid}),
  centroid_choice ([code chosen for centroid 0, 1, ...]) for k-means methods;
  families ({code: family}) and family_order for FAM.
  """
  method = str(method).lower()
  if method not in METHODS:
    raise ValueError(f"unknown selection method {method!r}: choose one of {', '.join(METHODS)}")
  pool = _check_pool(pool)
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
    raise ValueError(f"selection {method}: k must be a positive integer, got {k!r}")
  if method == "sem" and not sem_embeddings_path:
    raise ValueError("selection sem: no embeddings file given; SEM needs a word2vec-format "
                     "text file of language embeddings keyed by ISO 639-3 "
                     "(sem_embeddings_path=... or --sem-embeddings FILE)")

  details: dict[str, Any] = {"method": method, "k": int(k), "seed": int(seed),
                             "features": None, "dims": None, "excluded": {}}
  if method in LANG2VEC_FEATURES or method == "sem":
    if method == "sem":
      features, vectors, excluded = _sem_vectors(pool, sem_embeddings_path)
    else:
      features = LANG2VEC_FEATURES[method]
      vectors, excluded = _lang2vec_vectors(pool, features)
    pool = [code for code in pool if code in vectors]
    details.update(features=features, excluded=excluded)
    _check_k(method, k, pool, excluded)
    x_LxD = np.stack([vectors[code] for code in pool])
    details["dims"] = int(x_LxD.shape[1])
    details.update(_kmeans_choice(pool, x_LxD, k, seed))
  elif method == "fam":
    _check_k(method, k, pool, {})
    details["features"] = "fam"
    details.update(_family_choice(pool, k, seed))
  elif method == "random":
    _check_k(method, k, pool, {})
    chosen = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    details["selected"] = [pool[i] for i in chosen]
  else:  # all
    if k != len(pool):
      raise ValueError(f"selection all: selects the whole pool of {len(pool)} languages, "
                       f"but k={k} was given")
    details["selected"] = list(pool)
  details["pool"] = list(pool)
  details["selected"] = sorted(details["selected"])
  return details


def _check_pool(pool: Sequence[str] | None) -> list[str]:
  if pool is None:
    return sorted(languages.BACTRIAN_X)
  for code in pool:
    if code not in languages.BACTRIAN_X:
      raise ValueError(f"unknown language {code!r} in the selection pool: expected ISO 639-1 "
                       f"codes of Bactrian-X's 52 languages ({' '.join(sorted(languages.BACTRIAN_X))})")
  if len(set(pool)) != len(pool):
    raise ValueError(f"selection pool lists a language twice: {list(pool)}")
  return sorted(pool)


def _check_k(method: str, k: int, pool: list[str], excluded: dict[str, str]) -> None:
  if k > len(pool):
    left_out = f"; left out: {', '.join(sorted(excluded))}" if excluded else ""
    raise ValueError(f"selection {method}: k={k} is larger than the pool of "
                     f"{len(pool)} languages{left_out}")


def _lang2vec_vectors(pool: list[str], feature_set: str
                      ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Feature vectors from lang2vec's bundled data; languages with '--' values are excluded."""
  if feature_set == "learned":
    table = _learned_table()
    rows = {code: table.get(lang2vec_code(code)) for code in pool}
  else:
    iso3 = [lang2vec_code(code) for code in pool]
    values = _lang2vec().get_features(iso3, feature_set)
    # lang2vec writes '--' for unknown values; never trust its URIEL_LANGUAGES set.
    rows = {code: None if "--" in values[i3] else values[i3] for code, i3 in zip(pool, iso3)}
  vectors = {code: np.asarray(row, np.float64) for code, row in rows.items() if row is not None}
  excluded = {code: f"lang2vec has no {feature_set} features for "
                    f"{lang2vec_code(code)}" for code, row in rows.items() if row is None}
  return vectors, excluded


def _learned_table() -> dict[str, np.ndarray]:
  """lang2vec's `learned` vectors (ISO 639-3 -> 512 floats).

  lang2vec's own loader calls `np.load` without `allow_pickle`, which NumPy >= 1.16.3
  refuses for this pickled dict; read the file the wheel ships ourselves instead.
  """
  path = pathlib.Path(_lang2vec().__file__).parent / "data" / "learned.npy"
  return np.load(path, allow_pickle=True, encoding="latin1").item()


def lang2vec_code(code: str) -> str:
  """The ISO 639-3 code lang2vec keys an ISO 639-1 code by (its `letter_codes.json`)."""
  return _lang2vec().LETTER_CODES[code]


def _iso639_3_candidates(code: str) -> tuple[str, ...]:
  """Codes a resource may key `code` by: lang2vec's, then linguamix's table."""
  return tuple(dict.fromkeys((lang2vec_code(code),) + languages.ISO639_3[code]))


def _lang2vec():
  """The `lang2vec.lang2vec` library module, imported on first use.

  The lang2vec wheel also installs a `bin/lang2vec.py` script, and a console script
  (`linguamix ...`) runs with bin/ first on sys.path, where that file shadows the
  package. Import with such directories hidden.
  """
  if "lang2vec.lang2vec" not in sys.modules:
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not os.path.isfile(os.path.join(p or ".", "lang2vec.py"))]
    try:
      importlib.import_module("lang2vec.lang2vec")
    finally:
      sys.path[:] = saved
  return sys.modules["lang2vec.lang2vec"]


def _sem_vectors(pool: list[str], path: str
                 ) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
  table = read_word2vec_text(path)
  vectors, excluded = {}, {}
  for code in pool:
    candidates = _iso639_3_candidates(code)
    keys = [key for key in candidates if key in table]
    if keys:
      vectors[code] = table[keys[0]]
    else:
      excluded[code] = f"no embedding for {'/'.join(candidates)} in {path}"
  if not vectors:
    raise ValueError(f"selection sem: {path} has an embedding for none of the "
                     f"{len(pool)} pool languages (keys must be ISO 639-3 codes such as "
                     f"{', '.join(lang2vec_code(c) for c in pool[:3])})")
  return f"sem:{path}", vectors, excluded


def read_word2vec_text(path: str) -> dict[str, np.ndarray]:
  """A word2vec-format text file: a `COUNT DIMS` header, then `KEY v1 ... vDIMS` lines."""
  file = pathlib.Path(path)
  if not file.is_file():
    raise FileNotFoundError(f"SEM embeddings file not found: {path}")
  with file.open(encoding="utf-8") as f:
    lines = f.read().split("\n")  # a key may hold U+0085 or U+2028: not line ends
  header = lines[0].split() if lines else []
  if len(header) != 2 or not all(part.isdigit() for part in header):
    raise ValueError(f"{path}:1: expected the word2vec header 'COUNT DIMS', got {lines[:1]}")
  count, dims = int(header[0]), int(header[1])
  table = {}
  for number, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    key, *values = line.split()
    if len(values) != dims:
      raise ValueError(f"{path}:{number}: {key!r} has {len(values)} values, header says {dims}")
    try:
      table[key] = np.asarray([float(v) for v in values], np.float64)
    except ValueError as e:
      raise ValueError(f"{path}:{number}: {key!r}: {e}") from None
  if len(table) != count:
    raise ValueError(f"{path}: header says {count} embeddings, the file has {len(table)}")
  return table


def _kmeans_choice(pool: list[str], x_LxD: np.ndarray, k: int, seed: int) -> dict[str, Any]:
  from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
  kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x_LxD)
  dist_KxL = np.linalg.norm(kmeans.cluster_centers_[:, None, :] - x_LxD[None], axis=-1)
  taken: list[int] = []
  for dist_L in dist_KxL:
    # The nearest language not taken by an earlier centroid (stable: ties in pool order).
    taken.append(next(int(i) for i in np.argsort(dist_L, kind="stable") if i not in taken))
  labels = [int(label) for label in kmeans.labels_]
  return {
      "selected": [pool[i] for i in taken],
      "centroid_choice": [pool[i] for i in taken],
      "clusters": {code: labels[i] for i, code in enumerate(pool)},
      "distances": {code: round(float(dist_KxL[labels[i], i]), 6) for i, code in enumerate(pool)},
  }


def language_families(pool: Sequence[str]) -> dict[str, str]:
  """Each language's family: its first active lang2vec `fam` feature (without `F_`)."""
  families = _family_table()
  return {code: families[lang2vec_code(code)] for code in pool}


@functools.cache
def _family_table() -> dict[str, str]:
  # lang2vec's `fam` set read the way its get_features does (source "FAM", every
  # feature, in file order), without its per-feature lookup, which is quadratic in the
  # 3,718 family features and takes seconds.
  path = pathlib.Path(_lang2vec().__file__).parent / "data" / "family_features.npz"
  database = np.load(path)
  langs = {str(code): i for i, code in enumerate(database["langs"])}
  source = int(np.flatnonzero(database["sources"] == "FAM")[0])
  names = [str(name) for name in database["feats"]]
  data_LxFxS = database["data"]  # an NpzFile re-reads an array on every access
  families = {}
  for i3 in sorted({lang2vec_code(code) for code in languages.BACTRIAN_X}):
    active = np.flatnonzero(data_LxFxS[langs[i3], :, source] == 1.0)
    if not active.size:
      raise ValueError(f"selection fam: lang2vec lists no family for {i3}")
    families[i3] = names[active[0]].removeprefix("F_")
  return families


def _family_choice(pool: list[str], k: int, seed: int) -> dict[str, Any]:
  families = language_families(pool)
  rng = np.random.default_rng(seed)
  order = [str(f) for f in rng.permutation(sorted(set(families.values())))]
  members = {f: [str(c) for c in rng.permutation([c for c in pool if families[c] == f])]
             for f in order}
  selected: list[str] = []
  while len(selected) < k:  # round-robin; k <= len(pool) so this ends
    for family in order:
      if members[family] and len(selected) < k:
        selected.append(members[family].pop(0))
  return {"selected": selected, "families": families, "family_order": order}
