"""The entry points' two start-up changes and the switches that turn each off, through the
real `program()` of `python -m linguamix.train`: LINGUAMIX_MALLOC_TUNING=0 (no restart
with glibc malloc settings, CPU programs dispatched as JAX does by default) and
LINGUAMIX_STDERR_FILTER=0 (stderr left as it was: no pipe, no filter thread, C++ log
lines shown)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from linguamix import _malloc_tuning, _quiet

# Reports, from inside the entry point, what the process looks like once started.
ENTRY = """
import json, os, sys, threading
from linguamix.cli import train as main

def entry(argv):
  os.write(2, b"I0000 00:00:1796159135.9 8158 cpu_client.cc:7] a C++ info line\\n")
  os.write(2, b"a plain line\\n")
  import jax
  print(json.dumps({
      "tunables": os.environ.get("GLIBC_TUNABLES"),
      "argv": argv,
      "inline": not jax.config.read("jax_cpu_enable_async_dispatch"),
      "filter_thread": any(t.name == "linguamix-stderr" for t in threading.enumerate()),
      "stderr": os.readlink("/proc/self/fd/2") if os.path.exists("/proc/self/fd/2") else None,
  }))
  sys.stdout.flush()
  return 0

main.program(entry)
"""


def _run(tmp_path, **env_extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", _malloc_tuning.ENV_SWITCH, _quiet.ENV_FILTER,
                      _quiet.ENV_VERBOSE)}
  env.update(JAX_PLATFORMS="cpu", **env_extra)
  err_path = tmp_path / f"stderr-{len(list(tmp_path.iterdir()))}.txt"
  with open(err_path, "wb") as err:
    out = subprocess.run([sys.executable, "-c", ENTRY, "--flag=1"], env=env, stdout=subprocess.PIPE,
                         stderr=err, text=True, check=True, timeout=300).stdout
  return json.loads(out.splitlines()[-1]), err_path.read_text(), str(err_path)


@pytest.mark.skipif(not _malloc_tuning.tunables(), reason="no glibc with GLIBC_TUNABLES here")
def test_malloc_switch_skips_the_restart_and_the_inline_dispatch(tmp_path):
  tuned, _, _ = _run(tmp_path)
  assert tuned["tunables"] and "glibc.malloc.mmap_max=0" in tuned["tunables"].split(":")
  assert tuned["inline"] and tuned["argv"] == ["--flag=1"]
  plain, _, _ = _run(tmp_path, LINGUAMIX_MALLOC_TUNING="0")
  assert plain["tunables"] is None and not plain["inline"] and plain["argv"] == ["--flag=1"]


def test_stderr_switch_leaves_file_descriptor_2_alone(tmp_path):
  filtered, err, path = _run(tmp_path, LINGUAMIX_MALLOC_TUNING="0")
  assert filtered["filter_thread"] and filtered["stderr"] != path
  assert "a plain line" in err and "a C++ info line" not in err
  untouched, err, path = _run(tmp_path, LINGUAMIX_MALLOC_TUNING="0", LINGUAMIX_STDERR_FILTER="0")
  assert not untouched["filter_thread"] and untouched["stderr"] == path
  assert "a plain line" in err and "a C++ info line" in err


def test_help_names_both_switches():
  for argv in (["-m", "linguamix.train", "--help"], ["-m", "linguamix", "--help"]):
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    flat = " ".join(out.split())
    assert "LINGUAMIX_MALLOC_TUNING=0" in flat and "LINGUAMIX_STDERR_FILTER=0" in flat
