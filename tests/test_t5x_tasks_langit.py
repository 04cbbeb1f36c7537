"""LANGIT n-shot prompting: same language, never self, N distribution, fit, determinism."""

import collections
import json

import gin
import pytest
import seqio

from linguamix import t5x_tasks
from linguamix.t5x_tasks import langit


@pytest.fixture(scope="module")
def langit_task(tmp_path_factory):
  root = tmp_path_factory.mktemp("langit")
  for lang in ("sw", "fi"):
    rows = [{"id": f"q{i}", "system_prompt": "", "question": f"{lang}-Q{i}",
             "response": f"{lang}-A{i}", "lang": lang} for i in range(60)]
    (root / f"{lang}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t5x_tasks.register_instruction_task(f"lt.{lang}", str(root / f"{lang}.jsonl"), lang,
                                        fields="orca", template="bactrian_seq2seq",
                                        validation_fraction=0.0, use_langit=True)
  return "lt"


def _examples(name, lengths):
  ds = seqio.get_mixture_or_task(name).get_dataset(lengths, split="train", shuffle=False)
  return list(ds.as_numpy_iterator())


def test_exemplars_same_language_never_self_flan_format(langit_task):
  exs = _examples("lt.sw", {"inputs": 512, "targets": 16})
  shots = collections.Counter()
  for ex in exs:
    text = ex["inputs_pretokenized"].decode()
    own = ex["id"].decode().replace("q", "sw-Q")
    blocks = text.split("\n\n\n")
    assert blocks[-1] == own  # the example comes last
    for block in blocks[:-1]:
      q, a = block.split("\n\n")
      assert q.startswith("sw-Q") and a == q.replace("Q", "A") and q != own
    assert len(blocks) - 1 == ex["langit_shots"]
    shots[int(ex["langit_shots"])] += 1
  assert set(shots) <= set(range(7)) and len(shots) >= 4  # N varies over 0..6


def test_shot_distribution_follows_weights():
  cfg = langit.LangitConfig(shot_weights=[0, 0, 1, 0, 0, 0, 3], seed=1)
  counts = collections.Counter(len(langit.draw_exemplars(f"x{i}", "sw", 100, i, cfg))
                               for i in range(2000))
  assert set(counts) == {2, 6}
  assert 0.70 < counts[6] / 2000 < 0.80
  picks = langit.draw_exemplars("x5", "sw", 100, 5, cfg)
  assert 5 not in picks and len(set(picks)) == len(picks)
  with pytest.raises(ValueError, match="shot_weights"):
    langit.LangitConfig(shot_weights=[1, 2])


def test_exemplars_dropped_until_inputs_fit(langit_task):
  full = {e["id"]: e for e in _examples("lt.fi", {"inputs": 512, "targets": 16})}
  tight = _examples("lt.fi", {"inputs": 20, "targets": 16})
  dropped = 0
  for ex in tight:
    assert len(ex["inputs"]) <= 20
    assert ex["inputs_pretokenized"].decode().endswith(ex["id"].decode().replace("q", "fi-Q"))
    ref = full[ex["id"]]
    assert ex["langit_shots"] <= ref["langit_shots"]
    # Kept exemplars are the last ones of the full draw (the farthest dropped first).
    assert ref["inputs_pretokenized"].decode().endswith(ex["inputs_pretokenized"].decode())
    dropped += ex["langit_shots"] < ref["langit_shots"]
  assert dropped > 0


def test_deterministic_for_a_seed_and_changes_with_it(langit_task):
  a = [e["inputs_pretokenized"] for e in _examples("lt.sw", {"inputs": 512, "targets": 16})]
  b = [e["inputs_pretokenized"] for e in _examples("lt.sw", {"inputs": 512, "targets": 16})]
  assert a == b
  with gin.unlock_config():
    gin.bind_parameter("linguamix.t5x_tasks.LangitConfig.seed", 7)
  try:
    c = [e["inputs_pretokenized"] for e in _examples("lt.sw", {"inputs": 512, "targets": 16})]
  finally:
    gin.clear_config()
  assert c != a


def test_a_task_given_its_config_ignores_gin(langit_task, tmp_path):
  """A task registered with a LangitConfig uses it; gin's binding (which the tasks
  registered without one read when their data is made) does not reach it."""
  rows = [{"id": f"q{i}", "system_prompt": "", "question": f"sw-Q{i}",
           "response": f"sw-A{i}", "lang": "sw"} for i in range(60)]
  (tmp_path / "sw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  t5x_tasks.register_instruction_task(
      "lt_explicit.sw", str(tmp_path / "sw.jsonl"), "sw", fields="orca",
      template="bactrian_seq2seq", validation_fraction=0.0, use_langit=True,
      langit_config=langit.LangitConfig(shot_weights=[0, 0, 1], max_shots=2))
  lengths = {"inputs": 512, "targets": 16}
  with gin.unlock_config():
    gin.bind_parameter("linguamix.t5x_tasks.LangitConfig.exemplar_sep", "\n@@\n")
  try:
    explicit = _examples("lt_explicit.sw", lengths)
    from_gin = _examples("lt.sw", lengths)
  finally:
    gin.clear_config()
  assert {int(e["langit_shots"]) for e in explicit} == {2}  # its own weights: always 2
  assert all(e["inputs_pretokenized"].decode().count("\n\n\n") == 2
             and b"@@" not in e["inputs_pretokenized"] for e in explicit)
  assert any(b"\n@@\n" in e["inputs_pretokenized"] for e in from_gin)  # the deferred task reads gin
