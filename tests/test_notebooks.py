"""colab/*.ipynb run top to bottom on the CPU in smoke mode (nbclient, a real kernel).

Each notebook runs in a temporary working directory with the bundled instruction sample
set and a benchmark root holding the real XCOPA files (../shared/data) plus small XNLI
and PAWS-X files in their release layouts; the checks read what the notebook wrote.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import pathlib

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
COLAB = REPO / "colab"
NOTEBOOKS = ("quickstart.ipynb", "recipes.ipynb", "finetune_mt5_tpu.ipynb", "transfer_matrix.ipynb")

XNLI_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
               "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID",
               "pairID", "genre", "label1", "label2", "label3", "label4", "label5",
               "sentence1_tokenized", "sentence2_tokenized", "match"]
XNLI_PAIRS = {
    "en": [("It rains.", "It is dry."), ("He came.", "He came late."),
           ("She reads.", "She reads a book."), ("The door is open.", "The door is not shut.")],
    "sw": [("Mvua inanyesha.", "Ni kavu."), ("Alikuja.", "Alikuja kwa kuchelewa."),
           ("Anasoma.", "Anasoma kitabu."), ("Mlango uko wazi.", "Mlango haujafungwa.")],
}
XNLI_LABELS = ["contradiction", "neutral", "neutral", "entailment"]
PAWS_PAIRS = {
    "en": [("He was born in Paris in 1995 .", "In 1995 , he was born in Paris ."),
           ("The river flows north .", "The river flows south .")] * 3,
    "de": [("Er wurde 1995 in Paris geboren.", "1995 wurde er in Paris geboren."),
           ("Der Fluss fließt nach Norden.", "Der Fluss fließt nach Süden.")] * 3,
}


def _tsv(path: pathlib.Path, rows) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n", encoding="utf-8")


@pytest.fixture
def eval_root(tmp_path, shared_data) -> pathlib.Path:
  root = tmp_path / "benchmarks"
  root.mkdir()
  (root / "xcopa").symlink_to(shared_data / "xcopa")
  xnli = [XNLI_HEADER]
  for lang, pairs in XNLI_PAIRS.items():
    for i, ((s1, s2), label) in enumerate(zip(pairs, XNLI_LABELS)):
      xnli.append([lang, label, "(x)", "(y)", "(x)", "(y)", s1, s2, i, i, "fiction",
                   label, label, label, label, label, s1, s2, "True"])
  _tsv(root / "xnli" / "xnli.dev.tsv", xnli)
  for lang, pairs in PAWS_PAIRS.items():
    _tsv(root / "paws_x" / lang / "test_2k.tsv",
         [["id", "sentence1", "sentence2", "label"]] +
         [[i, s1, s2, 1 - i % 2] for i, (s1, s2) in enumerate(pairs)])
  return root


def _execute(name: str, tmp_path: pathlib.Path, eval_root: pathlib.Path, monkeypatch):
  """Runs the notebook in tmp_path; returns (work folder, all text the cells printed)."""
  from nbclient import NotebookClient
  work = tmp_path / "work"
  monkeypatch.setenv("LINGUAMIX_SMOKE", "1")
  monkeypatch.setenv("LINGUAMIX_WORK", str(work))
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(eval_root))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("LINGUAMIX_DATA_ROOT", raising=False)  # the bundled sample set
  nb = nbformat.read(COLAB / name, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  text = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.output_type == "stream":
        text.append(out.text)
      elif "text/plain" in out.get("data", {}):
        text.append(out.data["text/plain"])
  assert any("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", [])), \
      f"{name} displayed no chart"
  return work, "".join(text)


def _png(path: pathlib.Path) -> None:
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def _metrics(eval_dir: pathlib.Path) -> dict:
  return {p.stem: json.loads(p.read_text()) for p in (eval_dir / "metrics").glob("*.json")}


SMOKE_TASKS = {"xnli.en", "xnli.sw", "paws_x.en", "paws_x.de", "xcopa.it", "xcopa.sw"}


@pytest.mark.slow
def test_quickstart(tmp_path, eval_root, monkeypatch):
  work, text = _execute("quickstart.ipynb", tmp_path, eval_root, monkeypatch)
  assert "runtime: cpu x 1; smoke mode: True" in text
  assert "mixture pinch_40shot" in text and "total      4,640" in text
  _png(work / "pinch_40shot.png")
  summary = json.loads((work / "quickstart_run" / "summary.json").read_text())
  assert summary["final_step"] == 2 and (work / "quickstart_run" / "checkpoint_2").is_dir()
  assert f"step 2: train loss {summary['final_train']['loss']:.4f}" in text
  metrics = _metrics(work / "quickstart_eval")
  assert set(metrics) == SMOKE_TASKS
  assert metrics["xnli.en"]["num_examples"] == 4 and metrics["paws_x.de"]["num_examples"] == 6
  assert all(0 <= m["metrics"]["acc"] <= 100 for m in metrics.values())
  assert f"xcopa.sw: acc {metrics['xcopa.sw']['metrics']['acc']:.4f}" in text
  assert "| acc |" in text  # summary.md printed
  for family in ("xnli", "paws_x", "xcopa"):
    _png(work / "quickstart_report" / f"{family}_acc.png")


@pytest.mark.slow
def test_recipes(tmp_path, eval_root, monkeypatch):
  work, text = _execute("recipes.ipynb", tmp_path, eval_root, monkeypatch)
  for name in ("pinch_40shot", "better_alpaca_multi", "opengptx_bactrianx_endefrites",
               "li_typo_k14_s66", "sphinx_tiers"):
    assert f"mixture {name}:" in text
  assert "total      4,640" in text
  assert "az,bn,de,et,fa,hi,it,ja,mk,sw,ta,tl,vi,zh" in text  # TYPO k=14 seed 66 (README)
  from linguamix.mixtures import sphinx_tiers
  budgets = sphinx_tiers.budgets()
  assert f"total {sum(budgets.values()):,} items over {len(budgets)} languages" in text
  assert "high  100,000 each x" in text
  for png in ("compositions.png", "language_selection.png", "sphinx_tiers.png"):
    _png(work / png)


@pytest.mark.slow
def test_finetune_mt5(tmp_path, eval_root, monkeypatch):
  work, text = _execute("finetune_mt5_tpu.ipynb", tmp_path, eval_root, monkeypatch)
  assert "mT5-tiny on cpu x 1" in text
  summary = json.loads((work / "finetune_tiny" / "summary.json").read_text())
  # Started from the stand-in checkpoint's step 2, as from the public checkpoint's 1,000,000.
  assert summary["start_step"] == 2 and summary["final_step"] == 4
  assert "steps 2 -> 4" in text
  assert set(_metrics(work / "finetune_eval")) == SMOKE_TASKS
  assert all(m["step"] == 4 for m in _metrics(work / "finetune_eval").values())


@pytest.mark.slow
def test_transfer_matrix(tmp_path, eval_root, monkeypatch):
  work, text = _execute("transfer_matrix.ipynb", tmp_path, eval_root, monkeypatch)
  recipes = ["pinch_p0", "pinch_bi_en_sw"]
  for recipe in recipes:
    assert set(_metrics(work / "evals" / recipe)) == SMOKE_TASKS
  for family, langs in (("xnli", ["en", "sw"]), ("paws_x", ["de", "en"]), ("xcopa", ["it", "sw"])):
    _png(work / "transfer" / f"transfer_{family}_acc.png")
    with open(work / "transfer" / f"transfer_{family}_acc.csv") as f:
      rows = list(csv.reader(f))
    assert rows[0] == ["recipe"] + langs and [r[0] for r in rows[1:]] == recipes
    for recipe, row in zip(recipes, rows[1:]):
      m = _metrics(work / "evals" / recipe)
      assert [float(v) for v in row[1:]] == pytest.approx(
          [m[f"{family}.{l}"]["metrics"]["acc"] for l in langs], abs=1e-4)
  assert "xcopa acc vs pinch_p0" in text and "+0.0" in text  # the baseline row


def _build_module():
  spec = importlib.util.spec_from_file_location("build_notebooks", COLAB / "build_notebooks.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_stripped_and_current(name):
  nb = nbformat.read(COLAB / name, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and all(c.outputs == [] and c.execution_count is None for c in code), \
      f"{name} has outputs: clear them (or rebuild with python colab/build_notebooks.py)"
  setup = code[0].source
  assert "LINGUAMIX_SMOKE" in setup and "jax.devices()" in setup and "pip" in setup
  build = _build_module()
  built = nbformat.writes(build.build(build.NOTEBOOKS[name]))
  assert built.rstrip("\n") == (COLAB / name).read_text().rstrip("\n"), \
      f"{name} differs from colab/build_notebooks.py: run python colab/build_notebooks.py"
