"""Better Alpaca, OpenGPT-X, linguistically-informed and sPhinX recipes: exact counts and ids.

Small sets written in the real layouts under a temporary data root, plus the bundled
sample set where the study's numbers (4,786 per language for k = 14) fit in it.
"""

import collections
import json

import gin
import pytest
import seqio

import linguamix.mixtures as mixtures
from linguamix.mixtures import sphinx_tiers
from linguamix.t5x_tasks import languages


def _train(name):
  return {l: v["train"] for l, v in mixtures.get(name).check().items()}


def _rebuild(name, module, *args):
  """A fresh mixture under a new name, so gin bindings made now apply."""
  mixtures.register(name, lambda: module.recipe(name, *args), family="test", description="")
  return name


@pytest.fixture
def small_root(tmp_path, monkeypatch):
  for lang in languages.ALPACA_X:
    rows = [{"instruction": f"{lang} i{i}", "input": "", "output": f"o{i}"} for i in range(91)]
    (tmp_path / "alpaca_x").mkdir(exist_ok=True)
    (tmp_path / "alpaca_x" / f"alpaca_data_cleaned.{lang}.json").write_text(json.dumps(rows))
  (tmp_path / "lima_x").mkdir()
  for lang in languages.OPENGPTX:
    for split, n in (("train", 40), ("val", 5)):
      rows = [{"conversations": [f"{lang} q{i}", f"a{i}"]} for i in range(n)]
      (tmp_path / "lima_x" / f"{split}_limax_{lang.upper()}.jsonl").write_text(
          "".join(json.dumps(r) + "\n" for r in rows))
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(tmp_path))
  return tmp_path


def test_better_alpaca_mono_multi_and_downsampled(small_root):
  from linguamix.mixtures import better_alpaca
  mono = _train(_rebuild("t_ba_mono", better_alpaca, ["fi"], "all"))
  n = len(mono["fi"])
  assert 85 <= n <= 91  # all of it, minus the 1% hold-out by id
  multi = _train(_rebuild("t_ba_multi", better_alpaca, languages.BETTER_ALPACA, "all"))
  assert list(multi) == list(languages.BETTER_ALPACA)
  assert all(sorted(v) == sorted(mono["fi"]) for v in multi.values())  # 9 x all, parallel
  shared = _train(_rebuild("t_ba_sh", better_alpaca, languages.BETTER_ALPACA, "shared"))
  disjoint = _train(_rebuild("t_ba_dj", better_alpaca, languages.BETTER_ALPACA, "disjoint"))
  for sel in (shared, disjoint):
    sizes = [len(v) for v in sel.values()]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1  # the budget of one language
  longest = max(shared.values(), key=len)
  assert all(v == longest[:len(v)] for v in shared.values())  # same ids (prefixes)
  union = [i for v in disjoint.values() for i in v]
  assert sorted(union) == sorted(mono["fi"])  # every English item exactly once


def test_opengptx_compositions(small_root):
  from linguamix.mixtures import opengptx
  full = _train(_rebuild("t_og_all", opengptx, "limax", "endefrites"))
  assert list(full) == ["en", "de", "fr", "it", "es"]
  assert all(len(v) == 40 and v == full["en"] for v in full.values())  # fully parallel
  assert list(_train(_rebuild("t_og_de", opengptx, "limax", "defrites"))) == ["de", "fr", "it", "es"]
  sampled = _train(_rebuild("t_og_s", opengptx, "limax", "endefrites_sampled"))
  assert [len(v) for v in sampled.values()] == [8] * 5
  ids = [i for v in sampled.values() for i in v]
  assert len(set(ids)) == 40  # each item in exactly one language
  val = mixtures.get("t_og_s").check()["de"]["validation"]
  assert len(val) == 5  # LIMA-X's own val file


def test_opengptx_bactrian_x_small_is_1030_shared_ids():
  sel = _train("opengptx_bactrianx_small_endefrites")
  assert all(len(v) == 1030 and v == sel["en"] for v in sel.values())
  sampled = _train("opengptx_bactrianx_small_defrites_sampled")
  assert [len(v) for v in sampled.values()] == [258, 258, 257, 257]
  assert set().union(*map(set, sampled.values())) <= set(sel["en"])  # within the 1,030


def test_linguistically_informed_67017_over_k_on_lang2vec():
  from linguamix.mixtures import language_selection
  sel = mixtures.get("li_typo_k14_s66").check()
  chosen = language_selection.select_languages("typo", 14, 66)
  assert sorted(sel) == chosen and len(chosen) == 14
  per_lang = {l: v["train"] + v["validation"] for l, v in sel.items()}
  assert all(len(v) == 67017 // 14 == 4786 for v in per_lang.values())
  first = per_lang[chosen[0]]
  assert all(sorted(v) == sorted(first) for v in per_lang.values())  # one shared id sample
  # ~5,000 rows held out by id: round(5000 / 14) = 357 ids in all 14 languages.
  assert sum(len(v["validation"]) for v in sel.values()) == 357 * 14
  # Another method, same k: the same id sample (seed 42) for its languages.
  geo = mixtures.get("li_geo_k14_s66").check()
  assert sorted(next(iter(geo.values()))["train"] + next(iter(geo.values()))["validation"]) \
      == sorted(first)
  # k = 12 needs 5,584 per language: more than the sample set's 5,200 -> clear error.
  with pytest.raises(mixtures.RecipeError, match=r"li_random_k12_s42: impossible budget .* 5584"):
    mixtures.get("li_random_k12_s42").check()


def test_sphinx_tier_budgets_independent_subsets_and_langit():
  from linguamix.mixtures import sphinx
  with gin.unlock_config():
    gin.bind_parameter("linguamix.mixtures.sphinx_config.tier_budgets",
                       {"high": 40, "mid": 20, "low": 10})
    gin.bind_parameter("linguamix.mixtures.sphinx_config.tiers", {"sw": "mid"})
  try:
    name = _rebuild("t_sphinx", sphinx, True)
    sel = _train(name)
  finally:
    gin.clear_config()
  expected = {"high": 40, "mid": 20, "low": 10}
  assert len(sel) == 51
  for lang, ids in sel.items():
    tier = "mid" if lang == "sw" else sphinx_tiers.DEFAULT_TIERS[lang]
    assert len(ids) == expected[tier], lang
  assert sel["de"] != sel["fr"] and len(set(sel["de"]) & set(sel["fr"])) < 40
  task = seqio.get_mixture_or_task("t_sphinx.hi")
  exs = list(task.get_dataset({"inputs": 256, "targets": 32}, split="train",
                              shuffle=False).as_numpy_iterator())
  assert [e["id"].decode() for e in exs] == sel["hi"]
  assert collections.Counter(int(e["langit_shots"]) for e in exs).keys() - {0} != set()
  with pytest.raises(mixtures.RecipeError, match=r"recipe sphinx_tiers: impossible budget for af: "
                     r"50000 examples wanted, but sphinx.af \(train\) number only"):
    mixtures.get("sphinx_tiers").check()


def test_sem_mixture_reads_the_bound_embeddings_file(tmp_path):
  import numpy as np
  from linguamix.mixtures import language_selection, linguistic
  name = "t_li_sem"
  mixtures.register(name, lambda: linguistic.recipe(name, "sem", 13, 42), family="test",
                    description="")
  with pytest.raises(mixtures.RecipeError, match="t_li_sem: SEM needs .*li_config.sem_embeddings_path"):
    mixtures.get(name).check()
  rng = np.random.default_rng(0)
  lines = [f"{language_selection.lang2vec_code(l)} " + " ".join(f"{v:.4f}" for v in rng.normal(size=4))
           for l in languages.BACTRIAN_X]
  vec = tmp_path / "clics.vec"
  vec.write_text(f"{len(lines)} 4\n" + "\n".join(lines) + "\n")
  with gin.unlock_config():
    gin.bind_parameter("linguamix.mixtures.li_config.sem_embeddings_path", str(vec))
  try:
    mixtures.register(name, lambda: linguistic.recipe(name, "sem", 13, 42), family="test",
                      description="")
    sel = mixtures.get(name).check()
    expected = language_selection.select_languages("sem", 13, 42, sem_embeddings_path=str(vec))
  finally:
    gin.clear_config()
  assert sorted(sel) == expected
  assert all(len(v["train"]) + len(v["validation"]) == 67017 // 13 for v in sel.values())
