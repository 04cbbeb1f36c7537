"""T5X's command line, for `python -m linguamix.train` / `.eval` / `.infer` and the gin flags
of `linguamix bench`, `plan` and `study`: `--gin_file` (repeatable), `--gin.NAME=VALUE`,
`--gin_bindings`, `--gin_search_paths`, `--tfds_data_dir`; gin parsing with the package's
gin root.

`parse_and_configure(argv, run_gin=...)` parses the flags, adds the run gin (and the
quickstart defaults when no model gin defines `MODEL`), parses everything with gin and
checks the required macros, before any JAX compilation.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re

import gin

from linguamix import _quiet
from linguamix.gin import ROOT as GIN_ROOT

# Parsed after the user's files (before --gin bindings) when no gin file defines MODEL:
# the tiny default model with CPU-sized lengths and steps, so the main job needs no
# other flag and finishes in minutes on a CPU.
QUICKSTART_GIN = "runs/quickstart.gin"
_GIN_DOT = re.compile(r"^--gin\.([A-Za-z_][\w./]*)=(.*)$", re.S)


class UsageError(ValueError):
  """Bad flags or gin configuration, reported before any compilation."""


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog=prog, description=description,
      epilog="Any --gin.NAME=VALUE is rewritten to --gin_bindings='NAME = VALUE' "
             "(string values need quotes: --gin.MODEL_DIR=\\\"/tmp/run\\\"). "
             + _quiet.PROCESS_HELP)
  p.add_argument("--gin_file", action="append", default=[],
                 help="gin file to parse; repeatable, later files win. Relative paths are "
                      "searched in --gin_search_paths and the package's gin folder.")
  p.add_argument("--gin_bindings", action="append", default=[],
                 help="gin binding 'NAME = VALUE'; repeatable, applied after the files.")
  p.add_argument("--gin_search_paths", default=".",
                 help="comma-separated folders searched for gin files and includes "
                      f"(the package's gin root {GIN_ROOT} is always searched).")
  p.add_argument("--tfds_data_dir", default=None,
                 help="TFDS data directory for tasks that read TFDS (sets seqio's TFDS dir).")
  p.add_argument("--verbose", action="store_true",
                 help="show TensorFlow's, XLA's, SentencePiece's and SeqIO's log lines, and the "
                      "traceback along with an error line (also LINGUAMIX_VERBOSE=1)")
  return p


def split_gin_dot_flags(argv: list[str]) -> tuple[list[str], list[str]]:
  """Pulls `--gin.NAME=VALUE` out of argv as bindings `NAME = VALUE`."""
  rest, bindings = [], []
  for arg in argv:
    m = _GIN_DOT.match(arg)
    if m:
      bindings.append(f"{m.group(1)} = {m.group(2)}")
    elif arg.startswith("--gin."):
      raise UsageError(f"flag {arg!r}: expected --gin.NAME=VALUE")
    else:
      rest.append(arg)
  return rest, bindings


class _QuietSearchMisses(logging.Filter):
  """gin logs an ERROR for every search path that lacks an included file; only the
  file missing from all of them is an error (reported by _resolve or gin itself)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found: ")


logging.getLogger().addFilter(_QuietSearchMisses())


def _search_paths(flag_value: str) -> list[str]:
  paths = [p for p in flag_value.split(",") if p]
  return paths + [str(GIN_ROOT)]


def _resolve(path: str, search_paths: list[str]) -> str:
  if os.path.isabs(path):
    if os.path.exists(path):
      return path
  else:
    for root in search_paths:
      candidate = os.path.join(root, path)
      if os.path.exists(candidate):
        return candidate
  raise UsageError(f"gin file {path!r} not found (searched {', '.join(search_paths)})")


def _parse(files: list[str], bindings: list[str]) -> None:
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)
  except (ValueError, SyntaxError, ImportError, TypeError) as e:
    raise UsageError(f"gin configuration error: {e}") from e


def macro_value(name: str, default=None):
  """The bound value of gin macro `name`, or `default` when unbound."""
  try:
    return gin.query_parameter(f"{name}/macro.value")
  except ValueError:
    return default


def bound_argument(selector: str):
  """The value gin passes for `selector` (e.g. "trainer.train.model"): references called."""
  value = gin.query_parameter(selector)
  if type(value).__name__ == "ConfigurableReference":
    return value.scoped_configurable_fn() if value.evaluate else value.scoped_configurable_fn
  return value


def _referenced_macros() -> set[str]:
  """Macro names some binding refers to (`%NAME`)."""
  from gin import config as gin_config
  found: set[str] = set()

  def walk(v):
    if type(v).__name__ == "ConfigurableReference":
      sel = v.scoped_selector
      if sel.endswith("/gin.macro"):
        found.add(sel[:-len("/gin.macro")])
    elif isinstance(v, dict):
      for x in v.values():
        walk(x)
    elif isinstance(v, (list, tuple)):
      for x in v:
        walk(x)

  for params in gin_config._CONFIG.values():  # no public API lists the bindings
    walk(params)
  return found


def _check_unused_macros(bindings: list[str]) -> None:
  """A macro set on the command line that nothing uses is a typo (`--gin.TRAIN_STEP=`)."""
  used = _referenced_macros()
  for b in bindings:
    name = b.split("=", 1)[0].strip()
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and name not in used:
      close = difflib.get_close_matches(name, sorted(used), n=3)
      hint = f"; did you mean {', '.join(close)}?" if close else ""
      raise UsageError(f"gin macro {name} is set ({b!r}) but no configuration uses it{hint}")


def _is_required(value) -> bool:
  return type(value).__name__ == "ConfigurableReference" and "REQUIRED" in repr(value)


def parse_and_configure(argv: list[str], *, prog: str, description: str, run_gin: str,
                        required_macros: tuple[str, ...],
                        default_gin: str = QUICKSTART_GIN) -> argparse.Namespace:
  argv, dot_bindings = split_gin_dot_flags(list(argv))
  args = build_parser(prog, description).parse_args(argv)
  search = _search_paths(args.gin_search_paths)
  for root in search:
    gin.add_config_file_search_path(root)
  user_files = [_resolve(f, search) for f in args.gin_file]
  bindings = list(args.gin_bindings) + dot_bindings
  run_file = _resolve(run_gin, search)
  # Pass 1: does any user file (or binding) define the model? A binding of the default
  # model's configurables (--gin.mt5.MT5Config.scan_layers=True) cannot parse before the
  # default model gin is added: then the files alone decide.
  files = [run_file] + user_files
  try:
    _parse(files, bindings)
  except UsageError:
    _parse(files, [])
    model = macro_value("MODEL")
    if model is not None and not _is_required(model):
      _parse(files, bindings)  # the bindings are wrong for the user's model: say so
  model = macro_value("MODEL")
  if model is None or _is_required(model):
    files = [run_file] + user_files + [_resolve(default_gin, search)]
    _parse(files, bindings)
  _check_unused_macros(bindings)
  unset = object()
  missing = [m for m in required_macros
             if (v := macro_value(m, unset)) is unset or _is_required(v)]
  if missing:
    raise UsageError(
        f"required gin macro(s) not set: {', '.join(missing)} (declared in {run_gin}); "
        + " ".join(f"pass --gin.{m}=..." for m in missing))
  if args.tfds_data_dir:
    import seqio
    seqio.set_tfds_data_dir_override(args.tfds_data_dir)
  args.parsed_gin_files = files
  args.parsed_bindings = bindings
  return args
