"""Transparent huge pages for glibc's malloc in the programs that train and score models.

XLA:CPU writes a step's large buffers (activations, gradients, optimizer temporaries) into
freshly mapped memory on every step, and with 4 KiB pages each first touch is a page
fault: on a 2-core Xeon a 512 MiB `x * x` took 0.13 s, 0.065 s with huge pages, and the
mt5_small training step 7.2 s against 5.6 s (interleaved, one thread; see README,
"Speed"). glibc (2.35+) asks for transparent huge pages on its own mappings when
`GLIBC_TUNABLES` has `glibc.malloc.hugetlb=1`, a setting it reads only at start-up: so the
entry points (`linguamix`, `python -m linguamix.train/.eval/.infer`) call `reexec()` first,
which restarts the process once with it set where the kernel leaves huge pages to
`madvise` (with `always` they are on already, with `never` there is nothing to gain).
LINGUAMIX_HUGEPAGES=0 keeps the process as it was started.
"""

from __future__ import annotations

import os
import platform
import sys

ENV_SWITCH = "LINGUAMIX_HUGEPAGES"
TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_is_madvise() -> bool:
  try:
    with open(THP_MODE) as f:
      return "[madvise]" in f.read()
  except OSError:
    return False


def _glibc_has_tunable() -> bool:
  libc, version = platform.libc_ver()
  if libc != "glibc" or not version:
    return False
  major, minor = (int(x) for x in version.split(".")[:2])
  return (major, minor) >= (2, 35)


def environment(env: dict[str, str]) -> dict[str, str] | None:
  """`env` plus the huge-page tunable, or None where it is set already, switched off or of no use."""
  if env.get(ENV_SWITCH, "1") == "0" or TUNABLE in env.get("GLIBC_TUNABLES", ""):
    return None
  if sys.platform != "linux" or not _glibc_has_tunable() or not _thp_is_madvise():
    return None
  tunables = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), f"{TUNABLE}=1"]))
  return {**env, "GLIBC_TUNABLES": tunables}


def reexec() -> None:
  """Restarts this Python process with `environment()` when it returns one; otherwise returns."""
  env = environment(dict(os.environ))
  if env is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
