"""Linguistically-informed language selection on lang2vec's real bundled features."""

import json
import os
import pathlib
import sys

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from linguamix.t5x_tasks import languages
from linguamix.cli import select_languages
from linguamix.mixtures import language_selection as ls

# Bactrian-X's 52 languages as its dataset card lists them.
BACTRIAN_X = sorted(
    "af ar az bn cs de en es et fa fi fr gl gu he hi hr id it ja ka kk km ko lt lv mk ml mn mr"
    " my ne nl pl ps pt ro ru si sl sv sw ta te th tl tr uk ur vi xh zh".split())
# The study (Soykan & Sahin 2024): 16 of the 52 have no lang2vec `learned` vector.
NO_LEARNED = sorted("ar az en fa gl gu he ka kk ml mn mr ps si sw te".split())


def _reference_kmeans(feature_set, k, seed):
  """The study's algorithm written out from lang2vec and scikit-learn directly."""
  from sklearn.cluster import KMeans
  l2v = ls._lang2vec()
  with open(os.path.join(os.path.dirname(l2v.__file__), "data", "letter_codes.json")) as f:
    letter_codes = json.load(f)  # lang2vec's own ISO 639-1 -> 639-3 table
  values = l2v.get_features([letter_codes[c] for c in BACTRIAN_X], feature_set)
  x = np.array([values[letter_codes[c]] for c in BACTRIAN_X], dtype=float)
  centers = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x).cluster_centers_
  nearest = [int(np.argmin(np.linalg.norm(x - c, axis=1))) for c in centers]
  return sorted(BACTRIAN_X[i] for i in nearest), len(set(nearest)) == k


def test_tables_agree_on_bactrian_x():
  assert sorted(languages.BACTRIAN_X) == BACTRIAN_X
  for code in BACTRIAN_X:  # the two tables agree on every language
    assert ls.lang2vec_code(code) in languages.ISO639_3[code], code


@pytest.mark.parametrize("method, feature_set, dims", [
    ("typo", "syntax_knn+phonology_knn+inventory_knn", 289),
    ("geo", "geo", 299),
])
def test_kmeans_methods_follow_the_study_algorithm(method, feature_set, dims):
  for seed in (66, 42, 10):
    reference, distinct = _reference_kmeans(feature_set, 14, seed)
    details = ls.selection_details(method, 14, seed)
    assert details["dims"] == dims and details["features"] == feature_set
    assert len(details["selected"]) == 14 and details["selected"] == sorted(details["selected"])
    # On the real features no two centroids share a nearest language.
    assert distinct and details["selected"] == reference, seed
    # Every language has a cluster and a distance to its centroid.
    assert sorted(details["clusters"]) == BACTRIAN_X
    assert set(details["clusters"].values()) <= set(range(14))
    assert all(d >= 0 for d in details["distances"].values())


def test_typo_k14_seed66_is_pinned_and_deterministic():
  first = ls.select_languages("typo", 14, 66)
  assert first == "az bn de et fa hi it ja mk sw ta tl vi zh".split()
  assert ls.select_languages("TYPO", 14, 66) == first


def test_replicate_seeds_differ():
  typo = {seed: tuple(ls.select_languages("typo", 14, seed)) for seed in (66, 42, 10)}
  assert len(set(typo.values())) == 3
  rand = {seed: tuple(ls.select_languages("random", 14, seed)) for seed in (66, 42, 10)}
  assert len(set(rand.values())) == 3 and all(len(set(r)) == 14 for r in rand.values())
  assert ls.select_languages("random", 14, 42) == list(rand[42])


def test_learn_pool_excludes_languages_without_learned_vectors():
  details = ls.selection_details("learn", 14, 66)
  assert details["dims"] == 512
  assert sorted(details["excluded"]) == NO_LEARNED
  assert len(details["pool"]) == 36 and not set(details["pool"]) & set(NO_LEARNED)
  assert set(details["selected"]) <= set(details["pool"]) and len(details["selected"]) == 14
  with pytest.raises(ValueError, match=r"k=37 is larger than the pool of 36 languages; left out: ar, az"):
    ls.select_languages("learn", 37, 66)


def test_fam_one_language_per_family_in_seeded_order():
  families = ls.language_families(BACTRIAN_X)
  assert families["en"] == "Indo-European" and families["fi"] == "Uralic"
  assert len(set(families.values())) == 14
  for seed in (66, 42, 10):
    chosen = ls.select_languages("fam", 14, seed)
    assert len({families[c] for c in chosen}) == 14  # every family exactly once
  small = {seed: tuple(ls.select_languages("fam", 5, seed)) for seed in (66, 42, 10)}
  assert all(len({families[c] for c in s}) == 5 for s in small.values())
  assert len(set(small.values())) == 3
  # Beyond 14 families: round-robin, still distinct languages.
  assert len(set(ls.select_languages("fam", 20, 42))) == 20


def test_all_and_pool_restriction():
  assert ls.select_languages("all", 52, 0) == BACTRIAN_X
  for method in ("typo", "geo", "fam", "random"):
    chosen = ls.select_languages(method, 3, 66, pool=["fi", "et", "de", "en"])
    assert len(set(chosen)) == 3 and set(chosen) <= {"fi", "et", "de", "en"}, method


def _write_w2v(path, rows):
  dims = len(next(iter(rows.values())))
  lines = [f"{len(rows)} {dims}"] + [f"{k} " + " ".join(map(str, v)) for k, v in rows.items()]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def test_sem_reads_word2vec_text_and_resolves_duplicate_nearest(tmp_path):
  # de and fr identical: k-means finds 3 distinct points for 4 clusters, so two
  # centroids share a nearest language; the next nearest free language is taken.
  path = _write_w2v(tmp_path / "clics.txt", {
      "deu": [0.0, 0.0], "fra": [0.0, 0.0], "eng": [5.0, 0.0], "cmn": [0.0, 5.0],  # zh by cmn
      "xyz": [9.0, 9.0]})
  with pytest.warns(ConvergenceWarning, match="distinct clusters"):
    details = ls.selection_details("sem", 4, 66, pool=["de", "fr", "en", "zh"],
                                   sem_embeddings_path=path)
  assert details["selected"] == ["de", "en", "fr", "zh"]
  assert details["dims"] == 2 and details["features"] == f"sem:{path}"
  assert len(ls.select_languages("sem", 2, 66, pool=["de", "en", "zh"], sem_embeddings_path=path)) == 2


def test_bad_input_is_named(tmp_path):
  with pytest.raises(ValueError, match="unknown selection method 'typology'"):
    ls.select_languages("typology", 14, 66)
  with pytest.raises(ValueError, match="k=53 is larger than the pool of 52"):
    ls.select_languages("typo", 53, 66)
  with pytest.raises(ValueError, match="k must be a positive integer"):
    ls.select_languages("random", 0, 66)
  with pytest.raises(ValueError, match="unknown language 'xx' in the selection pool"):
    ls.select_languages("random", 1, 66, pool=["en", "xx"])
  with pytest.raises(ValueError, match="selects the whole pool of 52 languages, but k=14"):
    ls.select_languages("all", 14, 66)
  with pytest.raises(ValueError, match="no embeddings file given"):
    ls.select_languages("sem", 14, 66)
  with pytest.raises(FileNotFoundError, match="missing.txt"):
    ls.select_languages("sem", 14, 66, sem_embeddings_path=str(tmp_path / "missing.txt"))
  unrelated = _write_w2v(tmp_path / "other.txt", {"qqq": [1.0], "zzz": [2.0]})
  with pytest.raises(ValueError, match="has an embedding for none of the 52 pool languages"):
    ls.select_languages("sem", 14, 66, sem_embeddings_path=unrelated)
  few = _write_w2v(tmp_path / "few.txt", {"eng": [1.0], "deu": [2.0], "fra": [3.0]})
  with pytest.raises(ValueError, match=r"k=14 is larger than the pool of 3 languages; left out: af"):
    ls.select_languages("sem", 14, 66, sem_embeddings_path=few)
  broken = tmp_path / "broken.txt"
  broken.write_text("2 2\neng 1.0 2.0\ndeu 1.0\n")
  with pytest.raises(ValueError, match=r"broken.txt:3: 'deu' has 1 values, header says 2"):
    ls.select_languages("sem", 1, 66, sem_embeddings_path=str(broken))


def test_lang2vec_script_on_sys_path_does_not_shadow_the_package(tmp_path, monkeypatch):
  # lang2vec's wheel installs bin/lang2vec.py; console scripts run with bin/ first on sys.path.
  (tmp_path / "lang2vec.py").write_text("raise RuntimeError('imported the bin/ script')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  for name in ("lang2vec", "lang2vec.lang2vec"):
    monkeypatch.delitem(sys.modules, name, raising=False)
  module = ls._lang2vec()
  assert pathlib.Path(module.__file__).parent.name == "lang2vec"
  assert str(tmp_path) == sys.path[0]  # sys.path is restored


def test_command_json_and_errors(capsys):
  assert select_languages.main(["--method", "learn", "--k", "3", "--seed", "10", "--json"]) == 0
  details = json.loads(capsys.readouterr().out)
  assert details["features"] == "learned" and len(details["clusters"]) == 36
  assert len(details["distances"]) == 36 and len(details["selected"]) == 3
  assert select_languages.main(["--method", "sem", "--k", "3"]) == 2
  assert "no embeddings file given" in capsys.readouterr().err
  assert select_languages.main(["--method", "all"]) == 0
  assert capsys.readouterr().out.strip() == ",".join(BACTRIAN_X)
