"""What a user caused reaches them as one `PROG: error: ...` line and a non-zero exit.

`run_main(main, argv, prog=...)` is the one place per entry point (the `linguamix`
dispatcher, `python -m linguamix.train|eval|infer`) that turns exceptions into that
line. `UserError` and `ValueError` (the project's convention for bad input), and the
library errors that mean "this path or file is wrong" (see `user_message`), print their
message; anything else is a bug: its traceback is printed and the line says so.
`--verbose` (or LINGUAMIX_VERBOSE=1) prints the traceback of user errors too.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Callable, Sequence

from linguamix import _quiet

EXIT_USAGE = 2      # bad input: flags, gin, files, values
EXIT_STOPPED = 1    # a run that cannot go on (NaN loss, endpoint down); outputs kept
EXIT_BUG = 70       # EX_SOFTWARE: an internal error
EXIT_INTERRUPTED = 130


class UserError(Exception):
  """Bad input or a state the user can fix; `label` and `exit_code` shape the line."""
  label = "error"
  exit_code = EXIT_USAGE


# gin appends "  In call to configurable 'train' (<function ...>)" to exceptions raised
# inside configurables: where, not what; the user's line keeps the what.
_GIN_CONTEXT = re.compile(r"\n\s*In call to configurable .*$", re.M)


def _library_message(e: BaseException) -> str | None:
  """The message of a library error that names a bad path, or None."""
  if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                    PermissionError, FileExistsError)):
    if e.filename is not None:
      return f"{e.strerror or type(e).__name__}: {e.filename}"
    return str(e)
  tf = sys.modules.get("tensorflow")  # gfile errors (local or gs://), only if TF is loaded
  if tf is not None and isinstance(e, (tf.errors.NotFoundError, tf.errors.PermissionDeniedError)):
    return e.message
  return None


def user_message(e: BaseException) -> tuple[str, str, int] | None:
  """(label, message, exit code) when `e` is the user's to fix, else None (a bug)."""
  if isinstance(e, UserError):
    return e.label, _clean(str(e)), e.exit_code
  message = _library_message(e)
  if message is not None:
    return "error", _clean(message), EXIT_USAGE
  if isinstance(e, ValueError):
    return "error", _clean(str(e)), EXIT_USAGE
  return None


def _clean(message: str) -> str:
  return _GIN_CONTEXT.sub("", message).strip()


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str], *, prog: str,
             verbose: bool | None = None) -> int:
  """Runs `main(argv)`; returns its exit status, or reports what it raised. `verbose`
  defaults to `--verbose` in argv (which is removed) or LINGUAMIX_VERBOSE."""
  if verbose is None:
    verbose = _quiet.verbose_requested(list(argv))
  argv = _quiet.strip_verbose(list(argv))
  try:
    return int(main(argv) or 0)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED
  except BrokenPipeError:  # the reader of stdout left (`... --help | head`): not a bug
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 141  # what a shell reports for a pipe's writer killed by SIGPIPE
  except Exception as e:  # noqa: BLE001 - the one boundary where everything is reported
    known = user_message(e)
    if known is None:
      traceback.print_exc()
      print(f"{prog}: internal error (a bug; please report it with the traceback above): "
            f"{type(e).__name__}: {e}", file=sys.stderr)
      return EXIT_BUG
    label, message, code = known
    if verbose:
      traceback.print_exc()
    print(f"{prog}: {label}: {message}", file=sys.stderr)
    return code
