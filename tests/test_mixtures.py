"""linguamix.mixtures on the bundled sample set: Pinch / 40-shot, determinism, gin, CLI, errors."""

import json

import gin
import pytest
import seqio

import linguamix.mixtures as mixtures
from linguamix.mixtures import pinch, selection as plan_lib
from linguamix.t5x_tasks import languages
from linguamix import cli

GIN_DIR = __import__("pathlib").Path(mixtures.__file__).parents[1] / "gin"


def _train(name):
  return {l: v["train"] for l, v in mixtures.get(name).check().items()}


def test_40shot_exactly_40_non_english_examples():
  sel = _train("pinch_40shot")
  counts = {l: len(ids) for l, ids in sel.items()}
  assert sum(n for l, n in counts.items() if l != "en") == 40
  assert counts["en"] == 4600 and sum(counts.values()) == 4640
  # Remainder: one extra each to the first 7 non-English languages in the spec's order.
  assert [counts[l] for l in "ar zh cs et fi he hi it ru es sw".split()] == [4] * 7 + [3] * 4
  all_ids = [i for ids in sel.values() for i in ids]
  assert len(set(all_ids)) == 4640  # disjoint blocks: each item in one language
  assert sel == _train("pinch_p1")  # the same examples, under its own task names
  # The task datasets emit exactly those examples.
  task = seqio.get_mixture_or_task("pinch_p1.sw")
  ds = task.get_dataset({"inputs": 64, "targets": 16}, split="train", shuffle=False)
  assert [e["id"].decode() for e in ds.as_numpy_iterator()] == sel["sw"]
  rates = {t.name: mixtures.get("pinch_40shot").get_rate(t) for t in mixtures.get("pinch_40shot").tasks}
  assert rates["pinch_40shot.en"] == 4600 and rates["pinch_40shot.it"] == 3  # examples-proportional


@pytest.mark.parametrize("p,multi", [(0, 0), (1, 40), (10, 460), (50, 2320), (100, 4640)])
def test_pinch_shares(p, multi):
  assert pinch.multilingual_count(p, 4640) == multi
  counts = {l: len(i) for l, i in _train(f"pinch_p{p}").items()}
  assert counts.get("en", 0) == 4640 - multi and sum(counts.values()) == 4640
  if p == 0:
    assert list(counts) == ["en"]


def test_pinch_variants_partial_nlang_bilingual():
  partial = _train("pinch_partial_p10")
  assert set(partial) == {"en", "ar", "fi", "it", "ru", "sw"}
  assert sum(len(v) for l, v in partial.items() if l != "en") == 460
  for n in range(1, 7):
    counts = [len(v) for v in _train(f"pinch_nlang{n}").values()]
    assert len(counts) == n and sum(counts) == 4640 and max(counts) - min(counts) <= 1
  bi = _train("pinch_bi_en_sw")
  assert [len(bi["en"]), len(bi["sw"])] == [2320, 2320] and not set(bi["en"]) & set(bi["sw"])
  assert len([n for n in seqio.MixtureRegistry.names() if n.startswith("pinch_bi_")]) == 66


def test_seeds_and_shard_counts():
  a = plan_lib.plan(pinch.pinch_recipe("seed_a", 10, seed=3))
  b = plan_lib.plan(pinch.pinch_recipe("seed_b", 10, seed=3))
  c = plan_lib.plan(pinch.pinch_recipe("seed_c", 10, seed=4))
  assert a == b and a["en"]["train"] != c["en"]["train"]
  assert set(a["ar"]["train"]) != set(c["ar"]["train"])
  task = seqio.get_mixture_or_task("pinch_p10.ar")
  mixtures.get("pinch_p10").check()
  unions = {}
  for shards in (1, 2, 4):
    ids = []
    for i in range(shards):
      ds = task.get_dataset({"inputs": 64, "targets": 16}, split="train", shuffle=False,
                            shard_info=seqio.ShardInfo(i, shards))
      ids += [e["id"].decode() for e in ds.as_numpy_iterator()]
    assert len(ids) == len(set(ids)) == 42
    unions[shards] = set(ids)
  assert unions[1] == unions[2] == unions[4]
  # The mixture itself yields the same first examples for the same seed.
  mix = seqio.get_mixture_or_task("pinch_40shot")
  first = lambda: [e["targets"].tolist() for e in mix.get_dataset(
      {"inputs": 64, "targets": 16}, split="train", shuffle=True, seed=5).take(8).as_numpy_iterator()]
  assert first() == first()


def test_mixture_gin_resolves_to_registered_mixture():
  gin.clear_config()
  gin.parse_config_file(str(GIN_DIR / "mixture_40shot.gin"))
  try:
    name = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
    lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
  finally:
    gin.clear_config()
  assert name == "pinch_40shot" and lengths == {"inputs": 512, "targets": 512}
  assert isinstance(seqio.get_mixture_or_task(name), mixtures.RecipeMixture)
  for path in GIN_DIR.glob("mixture_*.gin"):
    text = path.read_text()
    assert "import linguamix.mixtures" in text
    gin.parse_config_file(str(path))
    name = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
    gin.clear_config()
    assert name in seqio.MixtureRegistry.names(), path


def test_mixtures_show_table_json_and_plot(tmp_path, capsys):
  assert cli.main(["mixtures", "show", "pinch_40shot"]) == 0
  out = capsys.readouterr().out
  assert "en         4,600" in out and "total      4,640" in out and "4,640 distinct ids" in out
  png = tmp_path / "p.png"
  assert cli.main(["mixtures", "show", "pinch_40shot", "--json", "--plot", str(png)]) == 0
  comp = json.loads(capsys.readouterr().out)
  rows = {r["lang"]: r for r in comp["languages"]}
  assert rows["sw"]["examples"] == 3 and rows["en"]["overlapping_ids"] == 0
  assert abs(sum(r["share"] for r in rows.values()) - 1) < 1e-9 and rows["en"]["tokens"] > 4600
  assert png.read_bytes()[:4] == b"\x89PNG"
  assert cli.main(["mixtures", "list"]) == 0
  listing = capsys.readouterr().out
  assert "pinch_40shot" in listing and "better_alpaca_down_disjoint" in listing
  assert "opengptx_bactrianx_small_defrites_sampled" in listing and "sphinx_tiers" in listing
  assert "li_typo_k14_s66" in listing


def test_bad_inputs_fail_at_build_or_inspect(capsys):
  with pytest.raises(mixtures.RecipeError, match=r"recipe too_big: impossible budget for en: "
                     r"9999999 examples wanted"):
    plan_lib.plan(pinch.pinch_recipe("too_big", 0, budget=9999999))
  with pytest.raises(mixtures.RecipeError, match=r"recipe bad_lang: language\(s\) xx not in bactrian_x"):
    mixtures.Recipe("bad_lang", "bactrian_x", ("en", "xx"), lambda n: {})
  with pytest.raises(mixtures.RecipeError, match="unknown method 'colour'"):
    mixtures.register_li("colour", 14, 66)
  mixtures.register("zero_rates", lambda: mixtures.Recipe(
      "zero_rates", "bactrian_x", ("en", "de"), lambda n: {"en": 5, "de": 5}, maximum=0),
      family="test", description="rates clipped to 0")
  with pytest.raises(mixtures.RecipeError, match=r"mixture zero_rates: mixing rates sum to zero"):
    seqio.get_mixture_or_task("zero_rates").get_dataset({"inputs": 8, "targets": 8})
  # k larger than the pool: raised when the mixture is built, naming it.
  name = mixtures.register_li("typo", 60, 66)
  with pytest.raises(mixtures.RecipeError, match=r"mixture li_typo_k60_s66: language selection"):
    mixtures.get(name).check()
  # Missing SEM file, reported by the inspect command without a traceback.
  assert cli.main(["mixtures", "show", "li_sem_k14_s66"]) == 1
  assert "li_sem_k14_s66" in capsys.readouterr().err
  # A budget typo is an error, not "all of de".
  with pytest.raises(mixtures.RecipeError, match=r"recipe 'typo_budget': budgets for languages it "
                     r"does not have \['dee'\], none for its languages \['de'\]"):
    plan_lib.plan(mixtures.Recipe("typo_budget", "bactrian_x", ("en", "de"),
                                  lambda n: {"en": 5, "dee": 5}))


def test_examples_proportional_rates_with_temperature_and_cap():
  name = "t_rates"
  mixtures.register(name, lambda: mixtures.Recipe(
      name, "bactrian_x", ("en", "de"), lambda n: {"en": 400, "de": 100}, mode="disjoint",
      temperature=2.0, maximum=225), family="test", description="")
  mix = mixtures.get(name)
  mix.check()
  rates = {t.name: mix.get_rate(t) for t in mix.tasks}
  assert rates == {"t_rates.en": 15.0, "t_rates.de": 10.0}  # min(n, 225) ** (1/2)


def test_an_explicit_vocabulary_is_used_whatever_gin_binds():
  """`build(name, options, vocabulary)` tokenizes with the vocabulary passed in even
  while gin binds the tasks' vocabulary (`task_vocabulary.vocabulary`, which the
  import-registered tasks and the registry's entries read) to another one."""
  name = "t_build_vocab"
  mixtures.register(name, lambda: pinch.split_recipe(name, ("en", "sw"), budget=20),
                    family="test", description="")
  byte = seqio.ByteVocabulary()
  lengths = {"inputs": 512, "targets": 512}
  with gin.unlock_config():
    gin.parse_config("import linguamix.t5x_tasks\n"
                     "linguamix.t5x_tasks.task_vocabulary.vocabulary = "
                     "@linguamix.t5x_tasks.sample_vocabulary()")
  try:
    mix = mixtures.build(name, None, byte)
    explicit = next(mix.get_dataset(lengths, shuffle=False, seed=0,
                                    copy_pretokenized=True).as_numpy_iterator())
    registered = seqio.get_mixture_or_task(name)  # the registry's entry: gin's vocabulary
    from_gin = next(registered.get_dataset(lengths, shuffle=False, seed=0,
                                           copy_pretokenized=True).as_numpy_iterator())
    spm = registered.output_features["inputs"].vocabulary.resolved
  finally:
    gin.clear_config()
  assert explicit["inputs_pretokenized"] == from_gin["inputs_pretokenized"]
  assert bytes(i - 3 for i in explicit["inputs"]) == explicit["inputs_pretokenized"]  # byte ids
  assert isinstance(spm, seqio.SentencePieceVocabulary)
  assert list(from_gin["inputs"]) == spm.encode(from_gin["inputs_pretokenized"].decode())
  assert list(from_gin["inputs"]) != list(explicit["inputs"])


def test_build_takes_name_options_and_vocabulary_explicitly():
  """`build` registers the recipe's tasks by that one call, over the vocabulary passed
  in, with the options applied; the registered name builds with gin's arguments on use."""
  name = "t_build"
  mixtures.register(name, lambda: pinch.split_recipe(name, ("en", "sw"), budget=20),
                    family="test", description="")
  byte = seqio.ByteVocabulary()
  mix = mixtures.build(name, {"sampling": "rate", "seed": 5}, byte)
  assert type(mix) is mixtures.RecipeMixture and mix.name == name
  assert (mix.recipe.sampling, mix.recipe.seed) == ("rate", 5)
  assert [t.name for t in mix.tasks] == ["t_build.en", "t_build.sw"]
  assert all(t.output_features[k].vocabulary is byte for t in mix.tasks for k in ("inputs", "targets"))
  example = next(seqio.get_mixture_or_task("t_build.sw").get_dataset(
      {"inputs": 512, "targets": 512}, shuffle=False).as_numpy_iterator())
  assert bytes(i - 3 for i in example["inputs"]) == example["inputs_pretokenized"]  # byte ids
  assert {l: len(v["train"]) for l, v in mix.check().items()} == {"en": 10, "sw": 10}
  # The registry's entry: the model gin's vocabulary, the recipe's own options.
  registered = seqio.get_mixture_or_task(name)
  assert registered.recipe.sampling == "epoch" and registered.recipe.seed == 0
  assert registered.output_features["inputs"].vocabulary == mixtures.registry.task_lib.VOCABULARY
  assert registered.check()["sw"]["train"] != mix.check()["sw"]["train"]  # seed 0 vs 5
  with pytest.raises(mixtures.RecipeError, match=r"'pinch_p15' is not a recipe mixture: "
                     r"Pinch's P .* got 15"):
    mixtures.build("pinch_p15")
  with pytest.raises(mixtures.RecipeError, match=r"\{'sampels': 'rate'\}.*Recipe fields: name"):
    mixtures.build(name, {"sampels": "rate"})
