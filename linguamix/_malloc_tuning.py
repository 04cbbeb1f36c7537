"""glibc malloc settings for the programs that train and score models.

XLA:CPU allocates a step's buffers (activations, gradients, optimizer temporaries) anew
on every execution, one block per program. glibc serves a block that large with a fresh
mapping (or grows and trims its heap around it), so each step first-touches new memory,
which the kernel faults in and zeroes (the measurements: docs/performance.md, "Start-up:
the malloc restart and the stderr filter").

The settings (`GLIBC_TUNABLES`), which glibc reads only at start-up:
  glibc.malloc.hugetlb=1            transparent huge pages on malloc's own memory (2.35+,
                                    only where the kernel leaves them to `madvise`)
  glibc.malloc.mmap_max=0           no mapping per large block: it comes from a heap
  glibc.malloc.trim_threshold=2^44  and the heap keeps what is freed for the next step
The cost: the process holds on to its peak heap. Blocks that threads' own arenas serve
still fault, so the programs also run on the calling thread, whose arena is the main one
(`run_cpu_programs_inline`).

So the entry points (`linguamix`, `python -m linguamix.train/.eval/.infer`) call
`reexec()` first, which restarts the process once with the settings added; one the
environment sets already keeps its value. LINGUAMIX_MALLOC_TUNING=0 keeps the process as
it was started.
"""

from __future__ import annotations

import os
import platform
import sys

ENV_SWITCH = "LINGUAMIX_MALLOC_TUNING"
HUGE_PAGES = "glibc.malloc.hugetlb"
# Not glibc.malloc.arena_max=1, though a lone step then faults no page at all: the
# trainer's input-pipeline threads would share one arena, which slowed it (measured in
# docs/performance.md).
HEAP_TUNABLES = {"glibc.malloc.mmap_max": "0", "glibc.malloc.trim_threshold": str(1 << 44)}
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_is_madvise() -> bool:
  try:
    with open(THP_MODE) as f:
      return "[madvise]" in f.read()
  except OSError:
    return False


def _glibc_version() -> tuple[int, int]:
  libc, version = platform.libc_ver()
  if libc != "glibc" or not version:
    return (0, 0)
  major, minor = (int(x) for x in version.split(".")[:2])
  return major, minor


def tunables() -> dict[str, str]:
  """The settings this machine's glibc and kernel can use (empty off Linux/glibc)."""
  if sys.platform != "linux" or _glibc_version() < (2, 26):  # 2.26: GLIBC_TUNABLES
    return {}
  huge = {HUGE_PAGES: "1"} if _glibc_version() >= (2, 35) and _thp_is_madvise() else {}
  return {**huge, **HEAP_TUNABLES}


def environment(env: dict[str, str]) -> dict[str, str] | None:
  """`env` with the settings it lacks added to GLIBC_TUNABLES, or None where it lacks none,
  is switched off or the machine can use none."""
  if env.get(ENV_SWITCH, "1") == "0":
    return None
  present = env.get("GLIBC_TUNABLES", "")
  named = {item.split("=", 1)[0] for item in present.split(":") if item}
  missing = [f"{name}={value}" for name, value in tunables().items() if name not in named]
  if not missing:
    return None
  return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [present, *missing]))}


def run_cpu_programs_inline() -> None:
  """Single-device XLA:CPU programs run on the thread that calls them
  (`jax_cpu_enable_async_dispatch=False`), whose arena is glibc's main one: its heap keeps
  a step's temporaries for the next step. The arena of an XLA worker thread holds at most
  64 MiB per heap, so glibc maps a larger block fresh on every step, whatever mmap_max says
  (docs/performance.md, "Running the programs inline")."""
  if os.environ.get(ENV_SWITCH, "1") == "0":
    return
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_enable_async_dispatch", False)


def reexec() -> None:
  """Restarts this Python process with `environment()` when it returns one; otherwise
  returns, having made CPU programs run inline (`run_cpu_programs_inline`)."""
  env = environment(dict(os.environ))
  if env is None:
    run_cpu_programs_inline()
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
