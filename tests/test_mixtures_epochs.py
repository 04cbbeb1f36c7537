"""What is trained is the recipe: epoch-exact streams, host counts, leak-free validation,
LANGIT inside the budget, gin bindings that apply, `mixtures show` per epoch; on the
bundled sample set."""

import collections
import dataclasses
import json
import subprocess
import sys

import gin
import numpy as np
import pytest
import seqio

import linguamix.mixtures as mixtures
from linguamix.mixtures import registry
from linguamix import cli
from linguamix.mixtures import inspect as inspect_lib
from linguamix.mixtures import pinch

LENGTHS = {"inputs": 16, "targets": 8}  # short: the tests look at ids, not tokens
SPHINX_SMALL = {"high": 8, "mid": 4, "low": 2}


def _stream(name, *, seed=0, num_epochs=1, shuffle=True, shard_info=None, take=-1):
  ds = seqio.get_mixture_or_task(name).get_dataset(
      LENGTHS, split="train", shuffle=shuffle, seed=seed, num_epochs=num_epochs,
      shard_info=shard_info, passthrough_features=["id", "lang"])
  # The same elements in the same order, read 1,024 at a time: one by one, Python's
  # iterator costs ~1 ms an example, most of this file's time (62,006 rows in li_*).
  ds = ds.take(take).map(lambda e: (e["lang"], e["id"])).batch(1024)
  return [(l.decode(), i.decode()) for langs, ids in ds.as_numpy_iterator()
          for l, i in zip(langs, ids)]


SMALL = "t_epochs_small"  # 90 examples over three languages, for the host-count tests
mixtures.register(SMALL, lambda: pinch.split_recipe(SMALL, ("en", "sw", "ar"), budget=90),
                  family="test", description="")


def _selection(name, split="train"):
  return {l: v[split] for l, v in mixtures.get(name).check().items()}


@pytest.fixture
def small_sphinx():
  """sphinx_tiers at budgets the sample set holds, bound through gin as a user would."""
  with gin.unlock_config():
    gin.bind_parameter("linguamix.mixtures.sphinx_config.tier_budgets", SPHINX_SMALL)
  yield "sphinx_tiers"
  gin.clear_config()


DEFAULTS = ["pinch_40shot", "pinch_p10", "better_alpaca_down_disjoint", "opengptx_limax_endefrites",
            pytest.param("li_typo_k14_s66", marks=pytest.mark.slow), "sphinx_tiers"]


@pytest.mark.parametrize("name", DEFAULTS)
def test_each_epoch_is_the_selection_once_in_a_seeded_order(name, request):
  if name.startswith("sphinx"):
    request.getfixturevalue("small_sphinx")
  sel = _selection(name)
  expected = sorted((l, i) for l, ids in sel.items() for i in ids)
  n = len(expected)
  two = _stream(name, seed=7, num_epochs=2)
  assert len(two) == 2 * n
  first, second = two[:n], two[n:]
  assert sorted(first) == sorted(second) == expected  # every selected example exactly once
  assert first != second  # a fresh permutation per epoch
  shown = {r["lang"]: r["examples"] for r in inspect_lib.composition(name, count_tokens=False)["languages"]}
  assert collections.Counter(l for l, _ in first) == shown
  assert _stream(name, seed=7) == first  # num_epochs=1: one whole epoch; same seed, same stream
  assert _stream(name, seed=8, take=50) != first[:50]
  # shuffle=False: the selection itself, language after language.
  fixed = [(l, i) for l in mixtures.get(name).recipe.langs for i in sel[l]]
  assert _stream(name, shuffle=False) == fixed


def test_40shot_first_epoch_holds_exactly_its_40_multilingual_examples():
  """The issue's numbers: with rate sampling 37-43 non-English examples appeared in the
  first 4,640, and num_epochs=1 stopped after 2,562."""
  for seed in (0, 1):
    counts = collections.Counter(l for l, _ in _stream("pinch_40shot", seed=seed))
    assert counts["en"] == 4600 and sum(counts.values()) == 4640
    assert [counts[l] for l in "ar zh cs et fi he hi it ru es sw".split()] == [4] * 7 + [3] * 4


def test_hosts_see_one_global_stream():
  """1 host vs 2 and 4 (T5X's shard_info): host h holds global positions h, h+H, ...;
  so each global batch (the hosts' k-th B/H rows together) is the 1-host k-th batch."""
  one = _stream(SMALL, seed=3, num_epochs=2)
  batch = 8
  for hosts in (2, 4):
    per_host = [_stream(SMALL, seed=3, num_epochs=2, shard_info=seqio.ShardInfo(h, hosts))
                for h in range(hosts)]
    for h, rows in enumerate(per_host):
      assert rows == one[h::hosts]
    rows = batch // hosts
    for k in range(len(one) // batch):
      together = [x for host in per_host for x in host[k * rows:(k + 1) * rows]]
      assert sorted(together) == sorted(one[k * batch:(k + 1) * batch]), (hosts, k)


def test_trainer_rows_sharding_gives_identical_packed_batches_on_any_host_count():
  from linguamix.train import data as data_lib
  cfg = data_lib.DatasetConfig(SMALL, {"inputs": 32, "targets": 16}, "train", 8,
                               shuffle=True, shard_by="rows")
  conv = seqio.EncDecFeatureConverter(pack=True)

  def batches(hosts, h):
    ds = data_lib.host_dataset(cfg, conv, host_index=h, num_hosts=hosts, seed=5, num_epochs=2)
    return list(ds.as_numpy_iterator())

  one = batches(1, 0)
  assert len(one) > 90 * 2 // 8 // 2  # packed, over two epochs
  for hosts in (2, 4):
    parts = [batches(hosts, h) for h in range(hosts)]
    for k, whole in enumerate(one):
      for key, value in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[k][key] for p in parts]), value)


LEAK_FAMILIES = ("li_", "pinch_", "opengptx_", "better_alpaca_")


def _leak_names():
  names = []
  for name in sorted(registry.FAMILY_OF):  # recipes only: eval mixtures share prefixes
    if not name.startswith(LEAK_FAMILIES):
      continue
    if name.startswith("li_") and not ("_k14_" in name or name == "li_all"):
      continue  # the k14 grid and li_all: the same hold-out code for every k
    if name.startswith("li_sem"):
      continue  # needs a user-supplied embeddings file (test_mixtures_recipes covers SEM)
    names.append(name)
  return names


def test_no_validation_id_is_trained_in_any_language():
  names = _leak_names()
  assert len(names) > 100
  for name in names:
    sel = mixtures.get(name).check()
    trained = {i for v in sel.values() for i in v["train"]}
    held = {i for v in sel.values() for i in v["validation"]}
    assert held and not held & trained, name


def test_li_holds_out_the_same_ids_in_every_language():
  sel = mixtures.get("li_typo_k14_s66").check()
  held = [sorted(v["validation"]) for v in sel.values()]
  assert all(h == held[0] for h in held) and len(held[0]) == round(5000 / 14) == 357
  assert all(len(v["train"]) == 4786 - 357 for v in sel.values())
  comp = inspect_lib.composition("li_typo_k14_s66", count_tokens=False)
  assert "4786 per language = training + validation" in comp["counts"]
  assert comp["validation_ids"] == 357 and comp["validation_ids_trained"] == 0


def test_langit_exemplars_come_from_the_languages_training_selection(small_sphinx):
  mix = mixtures.get(small_sphinx)
  sel = mix.check()
  assert mix.recipe.use_langit
  drawn = 0
  for lang in ("en", "sw", "hi", "af"):
    source = seqio.get_mixture_or_task(mix.recipe.task_name(lang)).source
    train = set(sel[lang]["train"])
    recs = source.examples("train") + source.examples("validation")
    for rec, shots in zip(recs, source.langit_exemplars(recs)):
      ids = [s["id"] for s in shots]
      assert set(ids) <= train and rec["id"] not in ids, (lang, rec["id"], ids)
      drawn += len(ids)
    # And the exemplar texts the task emits are texts of that training selection.
    cols = source.columns("train")
    texts = {source.source.render(r)[0] for r in source.examples("train")}
    shown = {t.decode() if isinstance(t, bytes) else t for row in cols["langit_inputs"] for t in row}
    assert shown - {""} <= texts
  assert drawn > 0


def test_build_passes_its_langit_config_down(small_sphinx):
  """`build(..., langit_config=...)` makes the tasks' exemplars from that config, not
  from gin's `LangitConfig` (bound differently here), and keys the epochs by it."""
  from linguamix.t5x_tasks import langit
  # Under a name of its own, so the registered sphinx_tiers tasks stay as they are.
  recipe = dataclasses.replace(registry.recipe_of(small_sphinx), name="sphinx_tiers_mine")
  mine = langit.LangitConfig(shot_weights=[0, 1], max_shots=1, seed=3)
  with gin.unlock_config():
    gin.bind_parameter("linguamix.t5x_tasks.LangitConfig.max_shots", 4)
  mix = mixtures.build(recipe, langit_config=mine)
  assert repr(mine) in mix.epoch_key()
  source = seqio.get_mixture_or_task(mix.recipe.task_name("sw")).source
  cols = source.columns("train")
  assert set(cols["langit_n"]) == {1}  # one exemplar each, as `mine` says
  assert {len(row) for row in cols["langit_inputs"]} == {1}  # padded to its max_shots
  gin_built = mixtures.build(recipe)  # None: gin's, read once by build
  assert "max_shots=4" in gin_built.epoch_key()


def test_gin_bindings_change_a_built_recipe_whenever_parsed():
  name = "pinch_bi_en_sw"
  assert [len(v) for v in _selection(name).values()] == [2320, 2320]
  with gin.unlock_config():
    gin.parse_config("linguamix.mixtures.pinch_config.budget = 40")
  try:
    assert [len(v) for v in _selection(name).values()] == [20, 20]
    assert len(_stream(name)) == 40
  finally:
    gin.clear_config()
  assert [len(v) for v in _selection(name).values()] == [2320, 2320]


def test_rate_sampling_is_an_explicit_per_mixture_option():
  with gin.unlock_config():
    gin.bind_parameter("linguamix.mixtures.mixture_options.overrides",
                       {"pinch_40shot": {"sampling": "rate"}})
  try:
    mix = mixtures.get("pinch_40shot")
    assert mix.recipe.sampling == "rate"
    # SeqIO's sampling: num_epochs=1 stops as the first language runs dry.
    assert len(_stream("pinch_40shot", seed=0)) < 4640
    assert "rate-sampled" in inspect_lib.format_table(inspect_lib.composition("pinch_40shot", False))
    gin.bind_parameter("linguamix.mixtures.mixture_options.overrides",
                       {"pinch_40shot": {"samplng": "rate"}})
    with pytest.raises(mixtures.RecipeError, match=r"overrides\['pinch_40shot'\].*samplng"):
      mix.check()
  finally:
    gin.clear_config()
  assert mixtures.get("pinch_40shot").recipe.sampling == "epoch"
  assert len(_stream("pinch_40shot", seed=0)) == 4640


def test_40shot_trains_tasks_named_after_itself():
  mix = mixtures.get("pinch_40shot")
  assert sorted(t.name.split(".")[0] for t in mix.tasks) == ["pinch_40shot"] * 12
  assert _selection("pinch_40shot") == _selection("pinch_p1")


def test_show_prints_epoch_batches_and_json_names_not_reprs(capsys):
  argv = ["mixtures", "show", "pinch_bi_en_sw", "--lengths", "32,16", "--batch-size", "8", "--seed", "2"]
  assert cli.main(argv) == 0
  table = capsys.readouterr().out
  assert "stream: epoch-exact" in table and "budgets count training examples" in table
  assert cli.main(argv + ["--json"]) == 0
  out = capsys.readouterr().out
  assert "object at 0x" not in out and "<" not in out
  comp = json.loads(out)
  assert comp["vocabulary"].startswith("SentencePiece ") and "spm.model" in comp["vocabulary"]
  # An independent count: pack one epoch of the stream ourselves.
  ds = seqio.get_mixture_or_task("pinch_bi_en_sw").get_dataset(
      {"inputs": 32, "targets": 16}, split="train", shuffle=True, seed=2, num_epochs=1)
  rows = sum(1 for _ in seqio.EncDecFeatureConverter(pack=True)(
      ds, {"inputs": 32, "targets": 16}).as_numpy_iterator())
  assert comp["epoch"]["examples"] == 4640 and comp["epoch"]["packed_rows"] == rows
  assert f"{rows:,} packed rows = {rows / 8:,.2f} batches of 8" in table


def test_upstream_t5x_contract():
  """Mixture gins set only macros (and import the registry); the registry imports with
  SeqIO alone: no linguamix model, trainer or eval code."""
  gin_dir = __import__("pathlib").Path(mixtures.__file__).parents[1] / "gin"
  for path in gin_dir.glob("mixture_*.gin"):
    for line in path.read_text().splitlines():
      line = line.split("#")[0].strip()
      if "=" in line:
        assert line.split("=")[0].strip().isupper(), (path.name, line)
  code = ("import sys, linguamix.mixtures as m, seqio; seqio.get_mixture_or_task('pinch_40shot')"
          ".tasks; bad = [x for x in sys.modules if x.startswith(('linguamix.models', "
          "'linguamix.train', 'linguamix.evals', 'optax', 'orbax'))]; print(bad); "
          "sys.exit(1 if bad else 0)")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert run.returncode == 0, run.stdout + run.stderr[-2000:]


@pytest.mark.parametrize("in_memory", [True, False], ids=["preprocessed-once", "streamed"])
def test_recipe_stream_examples_are_seqios_own_per_task_examples(in_memory):
  """The stream gathers rows from one table over all member tasks and runs the recipe's
  preprocessing on them (once, or as they stream): each example must be, token for token,
  what its member task's own SeqIO pipeline gives for that id, in both epochs of a
  shuffled stream."""
  mixture = seqio.get_mixture_or_task("pinch_40shot")
  reference = {ex["id"]: ex for task in mixture.tasks
               for ex in task.get_dataset(LENGTHS, split="train", shuffle=False, num_epochs=1,
                                          trim_output_features=False).as_numpy_iterator()}
  ours = list(mixture.get_dataset(LENGTHS, split="train", shuffle=True, seed=3, num_epochs=2,
                                  passthrough_features=["id"],
                                  try_in_mem_cache=in_memory).as_numpy_iterator())
  assert len(reference) == 4640 and len(ours) == 2 * 4640
  assert {ex["id"] for ex in ours[:4640]} == set(reference)
  for ex in ours:
    for key in ("inputs", "targets"):
      # (the task keeps "id" untrimmed; SeqIO's trim is the cut to the feature length)
      np.testing.assert_array_equal(ex[key], reference[ex["id"]][key][:LENGTHS[key]])


def test_preprocessing_once_gives_the_streamed_examples_and_specs():
  """A selection preprocessed once and kept in memory streams exactly what preprocessing
  on the fly streams: same examples in the same order across an epoch boundary, on a
  host of three, with the same element specs (what converters and T5X see)."""
  mixture = seqio.get_mixture_or_task("pinch_40shot")
  kw = dict(split="train", shuffle=True, seed=5, num_epochs=2, passthrough_features=["id"],
            shard_info=seqio.ShardInfo(1, 3), copy_pretokenized=True)
  once = mixture.get_dataset(LENGTHS, try_in_mem_cache=True, **kw)
  streamed = mixture.get_dataset(LENGTHS, try_in_mem_cache=False, **kw)
  assert once.element_spec == streamed.element_spec
  a, b = list(once.as_numpy_iterator()), list(streamed.as_numpy_iterator())
  assert len(a) == len(b) == len(range(1, 2 * 4640, 3))
  for x, y in zip(a, b):
    assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
