"""Quiet commands: the one place that decides what reaches the terminal's stderr.

TensorFlow 2.21 and XLA log through absl's C++ logger before it is initialised, which
ignores TF_CPP_MIN_LOG_LEVEL for those lines (TF issue #100442); SentencePiece's C++
logs on its own. So the entry points (`linguamix`, `python -m linguamix.train/.eval/
.infer`) call `install()` before anything heavy is imported: it sets the environment
TensorFlow reads at import, and passes file descriptor 2 through a small filter thread
that drops the C++ info/warning lines (and the CUDA probing errors of a CPU machine).
Python tracebacks and every other line pass unchanged, in order. `--verbose` or
LINGUAMIX_VERBOSE=1 keeps everything; LINGUAMIX_STDERR_FILTER=0 leaves file descriptor 2
as it was (no pipe, no thread: for a debugger, profiler or launcher that owns stderr).

When stderr is not a terminal (CI, a log file), progress bars' carriage-return frames
become plain lines, at most one per `PLAIN_BAR_PERIOD_S` per bar plus the last one.

Library use (`import linguamix.mixtures` from gin, tests) never installs anything.
"""

from __future__ import annotations

import atexit
import faulthandler
import fcntl
import os
import re
import select
import sys
import termios
import threading
import time

ENV_VERBOSE = "LINGUAMIX_VERBOSE"
ENV_FILTER = "LINGUAMIX_STDERR_FILTER"
# The --help epilog of every entry point that installs the filter or restarts for malloc.
PROCESS_HELP = (
    "At start-up the commands that run models restart Python once with glibc malloc "
    "settings that spare XLA's step buffers their page faults (LINGUAMIX_MALLOC_TUNING=0: "
    "no restart), and every command passes stderr through a thread that drops the "
    "libraries' C++ log lines (LINGUAMIX_STDERR_FILTER=0: stderr untouched). See "
    "docs/performance.md.")
PLAIN_BAR_PERIOD_S = 30.0

# Whole lines dropped at the default verbosity.
NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # absl C++ (TensorFlow, XLA) and absl Python, info and warning: I1201 21:05:29.123 42 f.cc:7]
    # (before absl is initialised the time reads 00:00:<unix seconds>)
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] "
    # CUDA probing on a machine without a GPU (cuInit, cuDNN/cuBLAS factories)
    rb"|E\d{4} [\d:.]+ +\d+ (?:cuda_\w+|gpu_\w+)\.cc:\d+\] "
    # TensorFlow's oneDNN notice, logged as an error, that it runs an int32 op with Eigen
    rb"|E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_INT32 only "
    # libtpu compiling for a TPU topology on a host that is no TPU VM
    rb"|Failed to find host bounds for accelerator type: WARNING: could not determine TPU accelerator type"
    # SentencePiece C++: normalizer.cc(51) LOG(INFO) ...
    rb"|\w+\.cc\(\d+\) LOG\((?:INFO|WARNING)\) ")
# A partial line that may still become a noise line: held until its end (or 0.1 s).
_MAYBE_NOISE = re.compile(rb"[IWE]\d|[IWE]$|W(?:A(?:R(?:N(?:I(?:N(?:G(?::.*)?)?)?)?)?)?)?$|\w+(?:\.(?:cc?(?:\(.*)?)?)?$")

_installed = None


def verbose_requested(argv: list[str]) -> bool:
  """`--verbose` among the arguments, or LINGUAMIX_VERBOSE set to a true value."""
  return "--verbose" in argv or os.environ.get(ENV_VERBOSE, "").lower() not in ("", "0", "false", "no")


def strip_verbose(argv: list[str]) -> list[str]:
  return [a for a in argv if a != "--verbose"]


def install(verbose: bool) -> None:
  """Called once by an entry point, before TensorFlow or JAX is imported."""
  global _installed
  if _installed is not None:
    return
  terminal = os.isatty(2)
  if verbose:
    os.environ[ENV_VERBOSE] = "1"  # child processes keep the choice
  else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ logs once absl is up
    from absl import logging as absl_logging  # light: absl-py only
    absl_logging.set_verbosity(absl_logging.ERROR)  # SeqIO's per-dataset warnings
    _drop_orphaned_async_errors()
  if not terminal:
    os.environ.setdefault("TQDM_MININTERVAL", "1")  # tqdm reads TQDM_* as its defaults
  if os.environ.get(ENV_FILTER, "1") == "0":
    _installed = False
  elif not verbose or not terminal:
    _installed = _Stderr(drop_noise=not verbose, plain_bars=not terminal)
  else:
    _installed = False


def _closed_loop(value) -> bool:
  return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def _drop_orphaned_async_errors() -> None:
  """When one read or write of an Orbax checkpoint fails, Orbax gives up its event loop
  while TensorStore finishes the others: each completion then raises `RuntimeError: Event
  loop is closed` in a callback (printed through sys.excepthook or sys.unraisablehook),
  and asyncio logs the abandoned futures as "exception was never retrieved". The failure
  itself is reported by the command, once; these echoes of it are dropped."""
  import logging  # pylint: disable=g-import-not-at-top

  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def on_exception(kind, value, tb):
    if not _closed_loop(value):
      excepthook(kind, value, tb)

  def on_unraisable(unraisable):
    if not _closed_loop(unraisable.exc_value):
      unraisablehook(unraisable)

  sys.excepthook, sys.unraisablehook = on_exception, on_unraisable
  logging.getLogger("asyncio").addFilter(
      lambda record: "exception was never retrieved" not in str(record.msg))


class _Stderr:
  """fd 2 -> pipe (or pseudo-terminal) -> this thread -> the real stderr, line by line."""

  def __init__(self, *, drop_noise: bool, plain_bars: bool):
    self.drop_noise, self.plain_bars = drop_noise, plain_bars
    sys.stderr.flush()
    self.real_fd = os.dup(2)
    if os.isatty(self.real_fd):
      # A terminal stays a terminal for whoever writes (isatty, its width for tqdm): a
      # pseudo-terminal of the same size, without output processing (no \n -> \r\n).
      read_fd, write_fd = os.openpty()
      attrs = termios.tcgetattr(write_fd)
      attrs[1] &= ~termios.OPOST
      termios.tcsetattr(write_fd, termios.TCSANOW, attrs)
      fcntl.ioctl(write_fd, termios.TIOCSWINSZ,
                  fcntl.ioctl(self.real_fd, termios.TIOCGWINSZ, b"\0" * 8))
    else:
      read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    self.read_fd = read_fd
    # A crash's traceback goes straight to the real stderr, whatever is left in the pipe.
    self._fault_file = open(self.real_fd, "w", closefd=False)
    faulthandler.enable(file=self._fault_file)
    self._bar: bytes | None = None  # plain mode: the latest frame not yet written
    self._bar_written = -PLAIN_BAR_PERIOD_S
    self._after_cr = False  # the last line ended in \r: what follows is a bar frame
    self.thread = threading.Thread(target=self._pump, name="linguamix-stderr", daemon=True)
    self.thread.start()
    atexit.register(self.close)

  def close(self) -> None:
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(self.real_fd, 2)  # closes the pipe's last write end: the thread drains, ends
    self.thread.join(timeout=2.0)
    faulthandler.enable(file=sys.stderr)

  def _write(self, data: bytes) -> None:
    while data:
      try:
        data = data[os.write(self.real_fd, data):]
      except InterruptedError:
        continue
      except OSError:  # the terminal went away: nothing left to show
        return

  def _segment(self, seg: bytes) -> None:
    """One line (ending in \\n) or one bar frame (ending in \\r)."""
    body, after_cr = seg[:-1], self._after_cr
    self._after_cr = seg.endswith(b"\r")
    noise = NOISE.search(body) if self.drop_noise else None
    if noise and noise.start() > 0:  # a log line written after an unfinished one (a bar)
      self._after_cr = after_cr
      if not self.plain_bars:
        self._write(body[:noise.start()])
      elif after_cr:
        self._frame(body[:noise.start()])
      else:
        self._write(body[:noise.start()] + b"\n")
      return
    if noise:
      return
    if not self.plain_bars:
      self._write(seg)
    elif self._after_cr:  # a frame about to be overwritten: remembered, shown sparsely
      if body.strip():
        self._frame(body)
    elif after_cr and body.strip():  # the bar's last frame
      self._bar = None
      self._write(body.rstrip() + b"\n")
    else:
      self._write(seg)

  def _frame(self, body: bytes) -> None:
    self._bar = body.strip()
    if time.monotonic() - self._bar_written >= PLAIN_BAR_PERIOD_S:
      self._flush_bar()

  def _flush_bar(self) -> None:
    if self._bar:
      self._write(self._bar + b"\n")
      self._bar_written = time.monotonic()
    self._bar = None

  def _pump(self) -> None:
    buf, waiting = b"", False  # waiting: buf is a partial line already looked at
    while True:
      ready, _, _ = select.select([self.read_fd], [], [], 0.1 if buf and not waiting else None)
      if not ready:  # a partial line nobody completes within 0.1 s
        if self.plain_bars and self._after_cr:
          self._frame(buf)  # a bar frame; it stays in buf until its end arrives
          waiting = True
        else:
          self._write(buf)
          buf = b""
        continue
      try:
        chunk = os.read(self.read_fd, 65536)
      except OSError:  # a pseudo-terminal whose writers are all gone (EIO)
        chunk = b""
      if not chunk:
        break
      *complete, buf = re.split(rb"(?<=[\r\n])", buf + chunk)
      waiting = False
      for seg in complete:
        self._segment(seg)
      # Terminal: a partial line goes out at once (tqdm's frames end without a newline),
      # unless it may be the start of a noise line written in pieces.
      if buf and not self.plain_bars and not (self.drop_noise and _MAYBE_NOISE.match(buf)):
        self._write(buf)
        buf = b""
    if buf and not (self.drop_noise and NOISE.match(buf)):
      self._write(buf)
    self._flush_bar()
    os.close(self.read_fd)
