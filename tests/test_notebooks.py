"""colab/*.ipynb run top to bottom on the CPU in smoke mode (nbclient, a real kernel).

Each notebook runs in its own kernel and temporary folder, two at a time, with the
bundled instruction sample set and a benchmark root holding the real XCOPA files
(the real files bundled in linguamix/evals/bundled) plus small XNLI and PAWS-X files in their release layouts; the checks
read what the notebook wrote and printed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
COLAB = REPO / "colab"
# Longest first: two run at a time.
NOTEBOOKS = ("transfer_matrix.ipynb", "finetune_mt5_tpu.ipynb", "quickstart.ipynb", "recipes.ipynb")

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


def _write_eval_root(root: pathlib.Path, real_data: pathlib.Path) -> None:
  root.mkdir(parents=True)
  (root / "xcopa").symlink_to(real_data / "xcopa")
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


# Executes one notebook in a child process (its own kernel) and saves it with outputs.
_RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
src, out, cwd = sys.argv[1:]
nb = nbformat.read(src, as_version=4)
try:
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
finally:
  nbformat.write(nb, out)
"""


@pytest.fixture(scope="session")
def executed(request, tmp_path_factory, real_data):
  """{notebook: (work folder, printed text, notebook with outputs)} for the selected
  notebooks, executed two at a time (the machine's two cores) in smoke mode."""
  selected = [item.callspec.params["name"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_notebook"]
  base = tmp_path_factory.mktemp("notebooks")
  eval_root = base / "benchmarks"
  _write_eval_root(eval_root, real_data)
  env = {k: v for k, v in os.environ.items() if k != "LINGUAMIX_DATA_ROOT"}  # the sample set
  env.update(LINGUAMIX_SMOKE="1", LINGUAMIX_EVAL_DATA_ROOT=str(eval_root), JAX_PLATFORMS="cpu")

  def start(name):
    cwd = base / name.split(".")[0]
    cwd.mkdir()
    log = open(cwd / "runner.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(COLAB / name), str(cwd / name), str(cwd)],
        cwd=cwd, env={**env, "LINGUAMIX_WORK": str(cwd / "work")}, stdout=log, stderr=log)
    return proc, cwd

  pending = [n for n in NOTEBOOKS if n in selected]  # longest first
  running, results = {}, {}
  while pending or running:
    while pending and len(running) < 2:
      name = pending.pop(0)
      running[name] = start(name)
    for name, (proc, cwd) in list(running.items()):
      if proc.poll() is not None:
        del running[name]
        results[name] = (proc.returncode, cwd)
    time.sleep(0.5)
  out = {}
  for name, (status, cwd) in results.items():
    nb = nbformat.read(cwd / name, as_version=4) if (cwd / name).exists() else None
    out[name] = (status, cwd, nb)
  return out


def _text(nb) -> str:
  text = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.output_type == "stream":
        text.append(out.text)
      elif "text/plain" in out.get("data", {}):
        text.append(out.data["text/plain"])
  return "".join(text)


def _png(path: pathlib.Path) -> None:
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def _metrics(eval_dir: pathlib.Path) -> dict:
  return {p.stem: json.loads(p.read_text()) for p in (eval_dir / "metrics").glob("*.json")}


SMOKE_TASKS = {"xnli.en", "xnli.sw", "paws_x.en", "paws_x.de", "xcopa.it", "xcopa.sw"}


def check_quickstart(work: pathlib.Path, text: str) -> None:
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


def check_recipes(work: pathlib.Path, text: str) -> None:
  for name in ("pinch_40shot", "better_alpaca_multi", "opengptx_bactrianx_endefrites",
               "li_typo_k14_s66", "sphinx_tiers"):
    assert f"mixture {name}:" in text
  assert "total      4,640" in text
  assert "az,bn,de,et,fa,hi,it,ja,mk,sw,ta,tl,vi,zh" in text  # TYPO k=14 seed 66 (docs/recipes.md)
  # The default tier table (docs/recipes.md): 21 high x 100k + 18 mid x 50k + 12 low x 25k.
  assert "total 3,300,000 items over 51 languages" in text
  assert "high  100,000 each x 21" in text and "low    25,000 each x 12" in text
  for png in ("compositions.png", "language_selection.png", "sphinx_tiers.png"):
    _png(work / png)


def check_finetune(work: pathlib.Path, text: str) -> None:
  assert "mT5-tiny on cpu x 1" in text
  summary = json.loads((work / "finetune_tiny" / "summary.json").read_text())
  # Started from the stand-in checkpoint's step 2, as from the public checkpoint's 1,000,000.
  assert summary["start_step"] == 2 and summary["final_step"] == 4
  assert "steps 2 -> 4" in text
  metrics = _metrics(work / "finetune_eval")
  assert set(metrics) == SMOKE_TASKS and all(m["step"] == 4 for m in metrics.values())
  for family in ("xnli", "paws_x", "xcopa"):
    _png(work / "finetune_report" / f"{family}_acc.png")


def check_transfer(work: pathlib.Path, text: str) -> None:
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


CHECKS = {"transfer_matrix.ipynb": check_transfer, "finetune_mt5_tpu.ipynb": check_finetune,
          "quickstart.ipynb": check_quickstart, "recipes.ipynb": check_recipes}


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook(name, executed):
  status, cwd, nb = executed[name]
  log = (cwd / "runner.log").read_text(errors="replace")
  assert status == 0, f"{name} failed:\n{log[-4000:]}"
  assert any("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", [])), \
      f"{name} displayed no chart"
  CHECKS[name](cwd / "work", _text(nb))


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


def test_benchmark_download_cell_unpacks_release_archives(tmp_path, monkeypatch):
  """The notebooks' download cell, against a loopback server holding archives in the
  releases' layouts (XNLI-1.0.zip, PAWS-X x-final.tar.gz, the XCOPA repository zip)."""
  import http.server
  import io
  import tarfile
  import threading
  import zipfile

  site = tmp_path / "site"
  (site / "XNLI").mkdir(parents=True)
  with zipfile.ZipFile(site / "XNLI" / "XNLI-1.0.zip", "w") as z:
    z.writestr("XNLI-1.0/xnli.dev.tsv", "language\tgold_label\n")
    z.writestr("XNLI-1.0/xnli.test.tsv", "language\tgold_label\n")
  (site / "paws").mkdir()
  with tarfile.open(site / "paws" / "x-final.tar.gz", "w:gz") as t:
    data = b"id\tsentence1\tsentence2\tlabel\n"
    info = tarfile.TarInfo("x-final/de/test_2k.tsv")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
  (site / "xcopa").mkdir()
  with zipfile.ZipFile(site / "xcopa" / "master.zip", "w") as z:
    z.writestr("xcopa-master/data/sw/test.sw.jsonl", "{}\n")
    z.writestr("xcopa-master/README.md", "")

  handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **k)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  base = f"http://127.0.0.1:{server.server_address[1]}"
  try:
    nb = nbformat.read(COLAB / "quickstart.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if "def download_benchmarks" in c.source)
    for url, local in (("https://dl.fbaipublicfiles.com/XNLI/", f"{base}/XNLI/"),
                       ("https://storage.googleapis.com/paws/pawsx/", f"{base}/paws/"),
                       ("https://github.com/cambridgeltl/xcopa/archive/refs/heads/", f"{base}/xcopa/")):
      assert url in source
      source = source.replace(url, local)
    monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", "")  # unset for the cell; restored after
    work = tmp_path / "work"
    work.mkdir()
    exec(source, {"os": os, "shutil": __import__("shutil"), "WORK": str(work)})
  finally:
    server.shutdown()
    server.server_close()
  root = work / "benchmarks"
  assert (root / "xnli" / "xnli.dev.tsv").read_text().startswith("language\tgold_label")
  assert (root / "paws_x" / "de" / "test_2k.tsv").exists()
  assert (root / "xcopa" / "sw" / "test.sw.jsonl").exists()
  assert os.environ["LINGUAMIX_EVAL_DATA_ROOT"] == str(root)
