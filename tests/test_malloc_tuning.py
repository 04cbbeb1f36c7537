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
STEP = ("import resource, jax, jax.numpy as jnp; f = jax.jit(lambda x: (x * x + 1.0).sum(0));"
        "x = jnp.ones((4096, 4096)); [f(x).block_until_ready() for _ in range(3)];"
        "r = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; [f(x).block_until_ready() for _ in range(3)];"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r)")
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
  tunables, argv = _run({**env, "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, SCRIPT, "a b", "--x=1")
  items = tunables.split(":")
  assert items[0] == "glibc.malloc.arena_max=4" and "glibc.malloc.arena_max=1" not in items
  assert {i.split("=")[0] for i in items} == set(TUNABLES)
  assert argv == ["a b", "--x=1"]
  assert sorted(_run(env)[0].split(":")) == sorted(f"{k}={v}" for k, v in TUNABLES.items())
  assert _run({**env, _malloc_tuning.ENV_SWITCH: "0"})[0] is None


@needs_glibc
def test_environment_leaves_set_tunables_and_the_switch_alone():
  complete = ":".join(f"{k}={v}" for k, v in TUNABLES.items())
  assert _malloc_tuning.environment({"GLIBC_TUNABLES": complete}) is None
  assert _malloc_tuning.environment({_malloc_tuning.ENV_SWITCH: "0"}) is None
  assert _malloc_tuning.environment({})["GLIBC_TUNABLES"] == complete


@needs_glibc
def test_with_the_settings_a_jitted_step_on_large_buffers_reuses_its_memory():
  # 64 MiB buffers per call: above glibc's mmap threshold, so without the settings every
  # call maps fresh memory and faults it in (~49,000 faults with 4 KiB pages, ~100 with
  # huge pages); with them the heap's pages are reused (0 alone, a handful inside a test
  # run, from other first touches).
  env = {**_clean_env(), "JAX_PLATFORMS": "cpu"}
  tuned, untuned = _run(_malloc_tuning.environment(env), STEP), _run(env, STEP)
  assert tuned * 10 < untuned, (tuned, untuned)
