"""docs/adding.md, followed once: its recipe, dataset and benchmark code run as written.

Each test takes a `# NAME.py` block out of the page, writes it to a file, imports it the
way a user's module is imported, and checks that what it registered works: the recipe's
exact counts on the bundled sample set, the dataset's prompts, the benchmark's requests
and a known accuracy, then the benchmark scored by a tiny real mT5.
"""

import importlib.util
import json
import pathlib
import re
import sys

import numpy as np
import pytest
import seqio

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "adding.md"


def page_block(filename: str) -> str:
  """The ```python block of docs/adding.md whose first line is `# filename`."""
  blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
  found = [b for b in blocks if b.startswith(f"# {filename}\n")]
  assert len(found) == 1, f"docs/adding.md has {len(found)} blocks named {filename}"
  return found[0]


def import_page_module(filename: str, folder: pathlib.Path):
  path = folder / filename
  path.write_text(page_block(filename), encoding="utf-8")
  name = f"docs_adding_{path.stem}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  finally:
    del sys.modules[name]
  return module


def test_recipe_block_registers_exact_disjoint_counts(tmp_path):
  import linguamix.mixtures  # noqa: F401  (the recipes' tasks, as a user's gin imports it)
  from linguamix.mixtures import inspect, registry
  import_page_module("my_recipes.py", tmp_path)
  try:
    comp = inspect.composition("toy_en_sw", count_tokens=False)
    assert {r["lang"]: r["examples"] for r in comp["languages"]} == {"en": 100, "sw": 50}
    assert comp["distinct_ids"] == 150 and comp["ids_in_several_languages"] == 0
    assert comp["validation_ids_trained"] == 0
    assert registry.FAMILY_OF["toy_en_sw"] == "toy"
  finally:
    seqio.MixtureRegistry.remove("toy_en_sw")
    registry.FAMILY_OF.pop("toy_en_sw", None)
    registry.DESCRIPTIONS.pop("toy_en_sw", None)


def test_dataset_block_registers_a_task_with_the_alpaca_prompt(tmp_path, monkeypatch):
  rows = [{"prompt": f"Sema neno {i}.", "completion": f"neno {i}"} for i in range(60)]
  data = tmp_path / "mine.jsonl"
  data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  monkeypatch.setenv("MY_DATA", str(data))
  import_page_module("my_data.py", tmp_path)
  try:
    task = seqio.get_mixture_or_task("mydata.sw")
    seen = {}
    for split in ("train", "validation"):
      for ex in task.get_dataset(None, split=split, shuffle=False).as_numpy_iterator():
        seen[ex["inputs_pretokenized"].decode()] = (split, ex["targets_pretokenized"].decode())
    assert len(seen) == 60
    assert {s for s, _ in seen.values()} == {"train", "validation"}  # 5% held out by hash
    # The Alpaca prompt without input, as published (docs/data.md), byte for byte.
    prompt = ("Below is an instruction that describes a task. Write a response that "
              "appropriately completes the request.\n\n### Instruction:\nSema neno 7.\n\n"
              "### Response:\n")
    assert seen[prompt][1] == "neno 7"
  finally:
    seqio.TaskRegistry.remove("mydata.sw")


QUESTIONS = {  # lang -> [(question, choices, label)]
    "en": [("What is red?", ["the sky", "a tomato", "grass"], 1),
           ("What barks?", ["a dog", "a fish", "a tree"], 0),
           ("What is cold?", ["fire", "the sun", "ice"], 2),
           ("What flies?", ["a stone", "a bird", "a shoe"], 1)],
    "de": [("Was ist rot?", ["der Himmel", "eine Tomate", "das Gras"], 1),
           ("Was bellt?", ["ein Hund", "ein Fisch", "ein Stein"], 0)],
}


@pytest.fixture
def toy_qa(tmp_path, monkeypatch):
  """The page's toy_qa module imported, over release files in its documented layout."""
  root = tmp_path / "eval_data"
  for lang, items in QUESTIONS.items():
    folder = root / "toy_qa" / lang
    folder.mkdir(parents=True)
    folder.joinpath("test.jsonl").write_text("".join(
        json.dumps({"idx": i, "question": q, "choices": c, "label": label}) + "\n"
        for i, (q, c, label) in enumerate(items)), encoding="utf-8")
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  import linguamix.evals  # noqa: F401
  from linguamix.evals import registry
  module = import_page_module("toy_qa.py", tmp_path)
  yield module
  registry.BENCHMARKS.pop("toy_qa", None)
  seqio.MixtureRegistry.remove("toy_qa")
  for lang in QUESTIONS:
    seqio.TaskRegistry.remove(f"toy_qa.{lang}")


def test_benchmark_block_builds_lm_eval_style_requests(toy_qa):
  ds = seqio.get_mixture_or_task("toy_qa.en").get_dataset(None, split="default", shuffle=False)
  rows = [(int(ex["idx"]), int(ex["choice"]), ex["inputs_pretokenized"].decode(),
           ex["targets_pretokenized"].decode()) for ex in ds.as_numpy_iterator()]
  want = [(i, c, f"{q} Answer:", " " + choice)
          for i, (q, choices, _) in enumerate(QUESTIONS["en"]) for c, choice in enumerate(choices)]
  assert rows == want
  mixture = seqio.get_mixture_or_task("toy_qa")
  assert sorted(t.name for t in mixture.tasks) == ["toy_qa.de", "toy_qa.en"]


def test_benchmark_block_scores_a_known_accuracy(toy_qa, tmp_path):
  from evals_helpers import LookupScorer
  from linguamix.evals import registry, runner
  # The scorer prefers the gold choice, except on English question 2: acc 3/4 and 2/2.
  table = {}
  for lang, items in QUESTIONS.items():
    word = toy_qa.ANSWER[lang]
    for i, (q, choices, label) in enumerate(items):
      best = 0 if (lang, i) == ("en", 2) else label  # en 2: a wrong choice wins
      for c, choice in enumerate(choices):
        table[(f"{q} {word}", choice)] = -1.0 if c == best else -3.0
  model = LookupScorer(registry.output_features()["targets"].vocabulary, table)
  results = runner.evaluate(model, None, "toy_qa", str(tmp_path / "out"), batch_size=8, jit=False)
  assert results["toy_qa.en"]["acc"] == pytest.approx(75.0)
  assert results["toy_qa.de"]["acc"] == pytest.approx(100.0)
  assert results["toy_qa.en"]["num_examples"] == 4
  assert "acc_stderr" in results["toy_qa.en"]
  assert (tmp_path / "out" / "metrics" / "toy_qa.en.json").exists()


def test_benchmark_block_is_scored_by_a_tiny_mt5(toy_qa, tmp_path, fast_init_compile):
  import flax.linen as nn
  import jax
  from linguamix.evals import runner
  from linguamix.models import encoder_decoder, mt5
  from linguamix.t5x_tasks import vocab
  model = encoder_decoder.EncoderDecoderModel(mt5.MT5Config(
      vocab_size=vocab.VOCABULARY.vocab_size, emb_dim=16, num_heads=2, num_encoder_layers=1,
      num_decoder_layers=1, head_dim=8, mlp_dim=32, dtype="float32"), vocab.VOCABULARY)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = nn.meta.unbox(jax.jit(lambda rng: model.init_variables(rng, shapes))(
      jax.random.PRNGKey(0)))["params"]
  out = tmp_path / "out"
  results = runner.evaluate(model, params, "toy_qa.de", str(out), batch_size=8,
                            sequence_length={"inputs": 32, "targets": 16})
  lines = [json.loads(l) for l in (out / "scores" / "toy_qa.de.jsonl").read_text().splitlines()]
  assert [len(l["choices"]) for l in lines] == [3, 3]
  for line in lines:
    scores = [c["score"] for c in line["choices"]]
    assert all(s < 0 for s in scores)  # summed log-probabilities of real tokens
    assert line["pred"] == int(np.argmax(scores))
  assert results["toy_qa.de"]["acc"] == pytest.approx(
      100 * np.mean([l["pred"] == l["label"] for l in lines]))
