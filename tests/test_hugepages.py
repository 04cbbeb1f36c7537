"""The entry points' restart with glibc's huge-page malloc (linguamix/_hugepages.py)."""

import json
import os
import subprocess
import sys

import pytest

from linguamix import _hugepages

APPLIES = _hugepages.environment({}) is not None
SCRIPT = ("import json, os, sys; from linguamix import _hugepages; pid = os.getpid(); "
          "_hugepages.reexec(); print(json.dumps([os.environ.get('GLIBC_TUNABLES'), sys.argv[1:]]))")


def _run(env):
  out = subprocess.run([sys.executable, "-c", SCRIPT, "a b", "--x=1"], env=env, capture_output=True,
                       text=True, check=True).stdout
  return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not APPLIES, reason="no glibc >= 2.35 with transparent huge pages on madvise here")
def test_reexec_restarts_once_with_the_tunable_and_the_same_arguments():
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", _hugepages.ENV_SWITCH)}
  tunables, argv = _run({**env, "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
  assert tunables == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"
  assert argv == ["a b", "--x=1"]
  assert _run(env)[0] == "glibc.malloc.hugetlb=1"
  assert _run({**env, _hugepages.ENV_SWITCH: "0"})[0] is None


@pytest.mark.skipif(not APPLIES, reason="no glibc >= 2.35 with transparent huge pages on madvise here")
def test_environment_leaves_a_set_tunable_and_the_switch_alone():
  assert _hugepages.environment({}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert _hugepages.environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None
  assert _hugepages.environment({_hugepages.ENV_SWITCH: "0"}) is None
