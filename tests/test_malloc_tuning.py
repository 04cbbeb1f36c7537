"""The entry points' restart with glibc malloc settings (linguamix/_malloc_tuning.py)."""

import json
import os
import subprocess
import sys

import pytest

from linguamix import _malloc_tuning

TUNABLES = _malloc_tuning.tunables()
SCRIPT = ("import json, os, sys; from linguamix import _malloc_tuning; "
          "_malloc_tuning.reexec(); print(json.dumps([os.environ.get('GLIBC_TUNABLES'), sys.argv[1:]]))")
needs_glibc = pytest.mark.skipif(not TUNABLES, reason="no glibc with GLIBC_TUNABLES here")


def _run(env, script=SCRIPT, *args):
  out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                       text=True, check=True).stdout
  return json.loads(out.splitlines()[-1])


def _clean_env():
  return {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", _malloc_tuning.ENV_SWITCH)}


@needs_glibc
def test_reexec_restarts_once_with_the_settings_and_the_same_arguments():
  env = _clean_env()
  tunables, argv = _run({**env, "GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.malloc.mmap_max=5"},
                        SCRIPT, "a b", "--x=1")
  items = tunables.split(":")
  assert items[:2] == ["glibc.malloc.arena_max=4", "glibc.malloc.mmap_max=5"]
  assert "glibc.malloc.mmap_max=0" not in items
  assert {i.split("=")[0] for i in items} == set(TUNABLES) | {"glibc.malloc.arena_max"}
  assert argv == ["a b", "--x=1"]
  assert sorted(_run(env)[0].split(":")) == sorted(f"{k}={v}" for k, v in TUNABLES.items())
  assert _run({**env, _malloc_tuning.ENV_SWITCH: "0"})[0] is None


@needs_glibc
def test_environment_leaves_set_tunables_and_the_switch_alone():
  complete = ":".join(f"{k}={v}" for k, v in TUNABLES.items())
  assert _malloc_tuning.environment({"GLIBC_TUNABLES": complete}) is None
  assert _malloc_tuning.environment({_malloc_tuning.ENV_SWITCH: "0"}) is None
  assert _malloc_tuning.environment({})["GLIBC_TUNABLES"] == complete


FAULTS = """
import json, resource, statistics
from linguamix import _malloc_tuning
_malloc_tuning.reexec()
import jax, jax.numpy as jnp
x = jnp.ones((1 << 26,), jnp.float32)  # 256 MiB: temporaries larger than a thread arena's heap
f = jax.jit(lambda x: jax.lax.optimization_barrier(jnp.sin(x) * x).sum())
faults = []
for _ in range(8):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(f(x))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(statistics.median(faults[2:])))
"""


@needs_glibc
def test_cpu_programs_run_inline_so_their_temporaries_stay_in_the_main_heap():
  """Run by an XLA worker thread, a program's 256 MiB of temporaries come from that thread's
  arena, which maps them fresh on every call (faulting them in again); run inline, from the
  main heap, which keeps them. Both runs have the malloc settings; only inline differs."""
  settings = ":".join(f"{k}={v}" for k, v in TUNABLES.items())
  env = {**_clean_env(), "GLIBC_TUNABLES": settings, "JAX_PLATFORMS": "cpu"}
  inline = _run(env, FAULTS)
  worker = _run({**env, _malloc_tuning.ENV_SWITCH: "0"}, FAULTS)
  assert inline * 5 < worker, (inline, worker)
