"""The documentation is checked like code: README.md and docs/*.md.

* every relative link resolves (file, and #anchor as GitHub renders headings);
* every repository path named in backticks exists;
* nothing cites a file a user of linguamix does not have (the project's internal notes);
* every command line of a ```bash block either runs here, on a CPU, in seconds, and exits
  0, or says why not with a trailing `# (not run in CI: reason)` comment. The README's
  install and test commands are what `.ci/run` runs, and its main job is run, shortened,
  by tests/test_train.py; the test checks both.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
NOT_RUN = "# (not run in CI:"
TIMEOUT_S = 240  # generous: a loaded 2-core CI machine imports TensorFlow in ~40 s

# Commands of the README's first two blocks, run elsewhere: command -> (file, text there).
RUN_ELSEWHERE = {
    "python -m pip install -e .": (".ci/run", 'python -m pip install -q -e ".['),
    'python -m pip install -e ".[test,tpu]"': (".ci/run", 'python -m pip install -q -e ".[test,tpu]"'),
    "python -m pytest -q": (".ci/run", "python -m pytest -q"),
    'python -m linguamix.train --gin_file=mixture_40shot.gin --gin.MODEL_DIR=\\"/tmp/linguamix_run\\"':
        ("tests/test_train.py", "def test_default_model_learns_the_bundled_40shot_mixture"),
}

# Internal notes the package was built from; users have docs/ instead.
INTERNAL_CITATION = re.compile(r"spec/|recipes\.md §|\bevals\.md\b|\bt5x\.md\b|\bdatasets\.md\b")


def _text(path: pathlib.Path) -> str:
  return path.read_text(encoding="utf-8")


def _outside_fences(text: str):
  """(line number, line) of the lines outside ``` fences."""
  fenced = False
  for number, line in enumerate(text.splitlines(), 1):
    if line.lstrip().startswith("```"):
      fenced = not fenced
      continue
    if not fenced:
      yield number, line


def _anchors(path: pathlib.Path) -> set[str]:
  """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -N repeats."""
  anchors, repeats = set(), {}
  for _, line in _outside_fences(_text(path)):
    m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not m:
      continue
    slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
    if slug in repeats:
      repeats[slug] += 1
      slug = f"{slug}-{repeats[slug]}"
    else:
      repeats[slug] = 0
    anchors.add(slug)
  return anchors


def _links(path: pathlib.Path):
  for number, line in _outside_fences(_text(path)):
    line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
    for target in re.findall(r"\]\(([^)\s]+)\)", line):
      if not re.match(r"[a-z]+:", target):
        yield number, target


LINKS = [(p, n, t) for p in PAGES for n, t in _links(p)]


@pytest.mark.parametrize("page,line,target", LINKS,
                         ids=[f"{p.name}:{n}:{t}" for p, n, t in LINKS])
def test_relative_links_resolve(page, line, target):
  file_part, _, anchor = target.partition("#")
  dest = (page.parent / file_part).resolve() if file_part else page
  assert dest.exists(), f"{page.name}:{line}: {target} -> {dest} does not exist"
  if anchor and dest.suffix == ".md":
    assert anchor in _anchors(dest), (
        f"{page.name}:{line}: no heading #{anchor} in {dest.name}; it has "
        f"{', '.join(sorted(_anchors(dest)))}")


def test_anchor_rule_matches_github():
  """The slug rule on headings of the kinds the pages use (GitHub keeps letters, digits,
  hyphens and underscores, drops other punctuation, turns spaces into hyphens)."""
  page = REPO / "docs" / "evaluation.md"
  assert "requests-identical-to-lm-evaluation-harness" in _anchors(page)
  assert "open-ended-answers-language-consistency-and-the-llm-judge" in _anchors(page)
  assert "getting-the-real-files-linguamix-prepare" in _anchors(REPO / "docs" / "data.md")


def test_named_repository_paths_exist():
  missing = []
  for page in PAGES:
    for number, line in _outside_fences(_text(page)):
      for path in re.findall(r"`((?:linguamix|tests|benchmarks|colab|docs)/[\w./-]+)`", line):
        if not (REPO / path.rstrip("/")).exists() and not any(
            (REPO / path.rstrip("/")).parent.glob(pathlib.Path(path).name)):
          missing.append(f"{page.relative_to(REPO)}:{number}: {path}")
  assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def _shipped_text_files():
  roots = [REPO / "linguamix", REPO / "colab", REPO / "benchmarks", REPO / "docs", REPO / "tests"]
  suffixes = {".py", ".gin", ".md", ".ipynb", ".sh", ".txt", ".toml", ".cfg"}
  files = [REPO / "README.md", REPO / "pyproject.toml"]
  for root in roots:
    files += [p for p in root.rglob("*") if p.suffix in suffixes and p.is_file()]
  return [p for p in files if p != pathlib.Path(__file__).resolve()]


def test_no_citation_of_files_users_do_not_have():
  hits = []
  for path in _shipped_text_files():
    for number, line in enumerate(_text(path).splitlines(), 1):
      if INTERNAL_CITATION.search(line):
        hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
  assert not hits, ("cite the project's own docs/ page instead:\n" + "\n".join(hits))


def _bash_commands(page: pathlib.Path):
  """(line, command) for each command of the page's ```bash blocks: continuation lines
  (trailing backslash, or an open quote) joined; comment-only lines skipped."""
  fenced, pending, start = None, "", 0
  for number, line in enumerate(_text(page).splitlines(), 1):
    stripped = line.strip()
    if stripped.startswith("```"):
      fenced = stripped[3:].strip() if fenced is None else None
      continue
    if fenced != "bash":
      continue
    if not pending:
      if not stripped or stripped.startswith("#"):
        continue
      start = number
    pending = f"{pending}\n{line}" if pending else line
    if pending.rstrip().endswith("\\"):
      continue
    try:
      shlex.split(pending, comments=True)
    except ValueError:  # an open quote: the command goes on
      continue
    yield start, pending
    pending = ""
  assert not pending, f"{page.name}:{start}: unterminated command in a bash block"


COMMANDS = [(p, n, c) for p in PAGES for n, c in _bash_commands(p)]


def _run(argv: list[str], where: str) -> tuple[int, str]:
  """`python ARGV` from the repository root, as a user runs it; a command meant to take
  seconds that runs for minutes fails (it wants a not-run marker)."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
  try:
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    pytest.fail(f"{where}: {' '.join(argv)!r} ran over {TIMEOUT_S} s: mark it "
                f"'{NOT_RUN} reason)' or show a faster command")
  return proc.returncode, proc.stdout + proc.stderr


def test_every_page_has_commands_and_markers_are_explained():
  """The convention holds: each marker gives a reason, and the pages do show commands."""
  assert len(COMMANDS) > 40
  for page, number, command in COMMANDS:
    if NOT_RUN in command:
      reason = command.split(NOT_RUN, 1)[1].split(")", 1)[0].strip()
      assert reason, f"{page.name}:{number}: a not-run marker needs a reason"


@pytest.mark.parametrize("page,line,command", COMMANDS,
                         ids=[f"{p.name}:{n}" for p, n, _ in COMMANDS])
def test_bash_command_runs_or_is_marked(page, line, command):
  where = f"{page.relative_to(REPO)}:{line}"
  if NOT_RUN in command:
    return
  flat = " ".join(l.rstrip("\\").strip() for l in command.splitlines())
  flat = flat.split(" #", 1)[0].strip() if " #" in flat else flat
  if flat in RUN_ELSEWHERE:
    assert page.name == "README.md", f"{where}: only the README's first blocks run elsewhere"
    file, text = RUN_ELSEWHERE[flat]
    assert text in _text(REPO / file), f"{where}: {flat!r} is said to run in {file}"
    return
  argv = shlex.split(command, comments=True)
  if argv[0] == "linguamix":  # the console script is `python -m linguamix`
    rc, output = _run(["-m", "linguamix", *argv[1:]], where)
  elif argv[0] == "python" and (argv[1:2] == ["-m"] and argv[2].startswith("linguamix")
                                or argv[1].startswith("benchmarks/")):
    rc, output = _run(argv[1:], where)
  else:
    pytest.fail(f"{where}: {flat!r} is neither run by this test nor marked "
                f"'{NOT_RUN} reason)'")
  assert rc == 0, f"{where}: {flat!r} exited {rc}:\n{output[-2000:]}"
  assert output.strip(), f"{where}: {flat!r} printed nothing"
