"""Every `linguamix` command answers --help and usage errors without importing TensorFlow
or JAX; run as programs, the commands keep the libraries' C++ log lines off stderr."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from linguamix import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "jax", "seqio", "flax", "matplotlib", "sklearn", "torch")
# What TensorFlow 2.21, XLA and SentencePiece print on a CPU machine (issue 14).
NOISE = re.compile(r"absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc|port\.cc:\d+\]|"
                   r"cpu_feature_guard\.cc|util\.cc:\d+\] oneDNN supports|normalizer\.cc\(\d+\) LOG|precompiled_charsmap")


def _python(code: str, *, env: dict | None = None, timeout: float = 300):
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                        capture_output=True, text=True, timeout=timeout)


def test_top_level_help_lists_every_command(capsys):
  assert cli.main(["--help"]) == 0
  out = capsys.readouterr().out
  assert all(name in out for name in cli.COMMANDS)
  assert cli.main(["no-such-command"]) == 2


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_command_help(name, capsys):
  try:
    rc = cli.main([name, "--help"])
  except SystemExit as e:  # argparse exits after printing help
    rc = e.code
  assert rc == 0
  assert f"linguamix {name}" in capsys.readouterr().out


def test_help_and_usage_errors_import_no_heavy_library():
  """One fresh interpreter: every --help, the argument errors and `mixtures list`;
  then tensorflow, jax, seqio ... must still be absent from sys.modules."""
  result = _python(f"""
      import contextlib, io, json, sys
      from linguamix import cli
      from linguamix.cli import train as main
      calls = [[name, "--help"] for name in cli.COMMANDS] + [
          ["select-languages", "--method", "typo"],  # --k missing
          ["select-languages", "--method", "nope", "--k", "3"],
          ["mixtures", "frobnicate"], ["tasks"], ["report"], ["judge", "--lang", "de"],
          ["bench", "train", "--steps", "x"], ["mixtures", "list", "--all"]]
      codes = {{}}
      for argv in calls:
        with contextlib.redirect_stdout(io.StringIO()) as out, \\
             contextlib.redirect_stderr(io.StringIO()) as err:
          try:
            codes[" ".join(argv)] = cli.main(argv)
          except SystemExit as e:
            codes[" ".join(argv)] = e.code
        if argv == ["mixtures", "list", "--all"]:
          listed = out.getvalue()
      for name, entry in [("train", main.main), ("eval", main.eval_main), ("infer", main.infer_main)]:
        for argv in (["--help"], ["--no-such-flag"]):
          with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
              codes[name + " " + argv[0]] = entry(argv)
            except SystemExit as e:
              codes[name + " " + argv[0]] = e.code
      print(json.dumps({{"codes": codes, "listed": listed,
                        "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
      """)
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.splitlines()[-1])
  assert report["heavy"] == []
  codes = report["codes"]
  assert all(codes[f"{name} --help"] == 0 for name in cli.COMMANDS), codes
  assert all(codes[f"{name} --help"] == 0 for name in ("train", "eval", "infer")), codes
  errors = [k for k in codes if "--help" not in k and k != "mixtures list --all"]
  assert all(codes[k] == 2 for k in errors), codes
  assert "li_fam_k7_s10" in report["listed"] and "pinch_40shot" in report["listed"]


# The `python -m` programs outside linguamix/cli/: each only hands its argv to it.
PYTHON_M_SHIMS = ("linguamix/__main__.py", "linguamix/eval.py", "linguamix/infer.py",
                  "linguamix/train/__main__.py")


def _imported_modules(tree: ast.AST, package: str) -> set[str]:
  """Absolute names of every module an `import` / `from ... import` in `tree` names."""
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: resolved against the importing module's package
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      found.add(base)
      found.update(f"{base}.{alias.name}" for alias in node.names)
  return found


def _command_modules_named(tree: ast.AST) -> set[str]:
  """Modules of the command layer a string in `tree` names for importing by name:
  `linguamix.cli.<module>` in any string but a docstring, and any `linguamix.cli...`
  given to `importlib.import_module` / `__import__`. (`python -m linguamix.cli` in a
  command line a study writes is a program name, not an import.)"""
  docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)}
  found = set()
  for node in ast.walk(tree):
    if (isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings):
      found.update(re.findall(r"linguamix\.cli\.\w+", node.value))
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
      name = ast.unparse(node.func)
      arg = node.args[0].value
      if (name.endswith("import_module") or name == "__import__") and isinstance(arg, str) \
          and (arg == "linguamix.cli" or arg.startswith("linguamix.cli.")):
        found.add(arg)
  return found


def test_library_never_imports_the_command_layer():
  root = REPO / "linguamix"
  offenders = []
  for path in sorted(root.rglob("*.py")):
    rel = path.relative_to(REPO).as_posix()
    if rel.startswith("linguamix/cli/") or rel in PYTHON_M_SHIMS:
      continue
    package = ".".join(path.relative_to(REPO).parent.parts)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = _imported_modules(tree, package)
    offenders += [f"{rel}: {n}" for n in sorted(names)
                  if n == "linguamix.cli" or n.startswith("linguamix.cli.")]
    offenders += [f"{rel}: names {n}" for n in sorted(_command_modules_named(tree))]
  assert offenders == []
  # The check sees the imports it forbids: each shim imports the command layer.
  shim = REPO / "linguamix/eval.py"
  assert "linguamix.cli" in _imported_modules(ast.parse(shim.read_text()), "linguamix")
  # ... and the command-layer modules a library would name to import them at run time.
  by_name = ast.parse('"""Calls linguamix.cli.train."""\n'
                      'TABLE = {"linguamix.train": ("linguamix.cli.train", "main")}\n'
                      'importlib.import_module("linguamix.cli")\n'
                      'COMMAND = ["python", "-m", "linguamix.cli", "judge"]\n')
  assert _command_modules_named(by_name) == {"linguamix.cli.train", "linguamix.cli"}


def test_light_tables_match_the_code_they_stand_for():
  """The name table `mixtures list` prints and the constants the light parsers keep."""
  from linguamix.cli import judge as judge_command
  from linguamix.cli import mixtures as mixtures_command
  from linguamix.cli import select_languages
  from linguamix.evals import judge
  from linguamix.mixtures import language_selection
  # A fresh interpreter: other tests register mixtures of their own.
  fresh = _python("import json; from linguamix.cli import mixtures; "
                  "print(json.dumps(list(mixtures.name_table().items())))")
  assert fresh.returncode == 0, fresh.stderr
  registered = json.loads(fresh.stdout.splitlines()[-1])
  table = [[name, list(entry)] for name, entry in mixtures_command.names().items()]
  assert table == registered, (  # entries and registration order
      "linguamix/mixtures/names.json is stale: python -m linguamix.cli.mixtures --write-names")
  assert select_languages.METHODS == language_selection.METHODS
  assert judge_command.BASE_URL_ENV == judge.BASE_URL_ENV


def test_stderr_filter_drops_library_noise_and_makes_bars_sparse_off_a_terminal():
  """C-level writes to fd 2 (as TensorFlow's and SentencePiece's C++ make them) and a tqdm
  bar, stderr a pipe: the noise goes, the rest stays, the bar becomes a few plain lines."""
  script = """
      import os, sys, time
      from linguamix import _quiet
      _quiet.install(verbose=_quiet.verbose_requested(sys.argv[1:]))
      os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
      os.write(2, b"I0000 00:00:1796159135.865843    8158 cudart_stub.cc:31] Could not find cuda drivers\\n")
      os.write(2, b"normalizer.cc(51) ")  # SentencePiece writes its line in pieces
      os.write(2, b"LOG(INFO) precompiled_charsmap is empty. use identity normalization.\\n")
      os.write(2, b"E0000 00:00:1796159135.9 8158 cuda_platform.cc:52] failed call to cuInit\\n")
      os.write(2, b"E0000 00:00:1796412170.31 6744 util.cc:131] oneDNN supports DT_INT32 only on "
                  b"platforms with AVX-512. Falling back to the default Eigen-based implementation if present.\\n")
      os.write(2, b"E0000 00:00:1796159135.9 8158 trainer.cc:7] a real C++ error\\n")
      print("a Python warning", file=sys.stderr)
      from tqdm import tqdm
      for i in tqdm(range(200), mininterval=0):
        if i == 100:
          os.write(2, b"I0000 00:00:1796159136.1 8158 port.cc:153] oneDNN custom operations\\n")
      print("stdout stays", flush=True)
      """
  quiet = _python(textwrap.dedent(script) + "raise SystemExit('error: last words')\n")
  assert quiet.returncode == 1
  assert quiet.stdout == "stdout stays\n"
  lines = quiet.stderr.splitlines()
  assert not [line for line in lines if NOISE.search(line)], quiet.stderr
  assert "E0000 00:00:1796159135.9 8158 trainer.cc:7] a real C++ error" in lines
  assert "a Python warning" in lines and lines[-1] == "error: last words"
  assert "\r" not in quiet.stderr
  bars = [line for line in lines if "/200" in line]
  assert 1 <= len(bars) <= 3 and bars[-1].startswith("100%") and "200/200" in bars[-1], bars
  verbose = _python(script, env={"LINGUAMIX_VERBOSE": "1"})
  assert len([line for line in verbose.stderr.splitlines() if NOISE.search(line)]) == 6


def test_bundled_vocabulary_loads_without_sentencepiece_logging(capfd):
  """The sample SentencePiece model has a (no-op) charsmap: tf-text's and Python's
  SentencePiece do not log `precompiled_charsmap is empty` on each load."""
  import sentencepiece as spm
  import seqio
  from linguamix.t5x_tasks import vocab
  capfd.readouterr()
  sp = seqio.SentencePieceVocabulary(vocab.SAMPLE_SPM, extra_ids=0)
  ids = sp.encode_tf("Kwa sababu  the rain,\tit fell.").numpy().tolist()
  assert ids == spm.SentencePieceProcessor(model_file=vocab.SAMPLE_SPM).encode(
      "Kwa sababu  the rain,\tit fell.")
  assert sp.decode(ids) == "Kwa sababu  the rain,\tit fell."  # identity normalization kept
  assert "precompiled_charsmap" not in capfd.readouterr().err


@pytest.mark.slow
def test_a_real_command_is_quiet_and_verbose_brings_the_logs_back():
  """`linguamix tasks list --names` as a program imports TensorFlow and SeqIO: at the default
  verbosity nothing of TensorFlow's C++ reaches stderr; --verbose shows it."""
  code = "import sys; from linguamix import cli; sys.argv = ['linguamix', *sys.argv[1:]]; sys.exit(cli.main())"
  run = lambda *args: subprocess.run(  # noqa: E731
      [sys.executable, "-c", code, "tasks", "list", "--names", *args], cwd=REPO,
      env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
  quiet = run()
  assert quiet.returncode == 0 and "bactrian_x.sw" in quiet.stdout.split()
  assert quiet.stderr == "", quiet.stderr
  verbose = run("--verbose")
  assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
  assert NOISE.search(verbose.stderr), "TensorFlow 2.21 logs at import on a CPU machine"


def test_python_dash_m_linguamix_is_the_command():
  """`python -m linguamix` (no installed script needed) runs the same parser."""
  run = subprocess.run([sys.executable, "-m", "linguamix", "--help"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                       text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  assert all(name in run.stdout for name in cli.COMMANDS)
  bad = subprocess.run([sys.executable, "-m", "linguamix", "no-such-command"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                       text=True, timeout=120)
  assert bad.returncode == 2 and "no-such-command" in bad.stderr


def test_a_reader_that_leaves_early_is_not_a_bug():
  """`linguamix plan --help | head -1`: the closed pipe ends the command quietly (141)."""
  proc = subprocess.Popen([sys.executable, "-m", "linguamix", "plan", "--help"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, bufsize=0)
  proc.stdout.close()  # the reader is gone before the help is written
  err = proc.stderr.read().decode()
  assert proc.wait(timeout=120) == 141, err
  assert "Traceback" not in err and "internal error" not in err
