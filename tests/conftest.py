"""Test-wide settings: quiet TensorFlow, CPU only, paths to the shared real data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    raise FileNotFoundError(f"real test data expected at {SHARED_DATA} (the ../shared folder)")
  return SHARED_DATA


@pytest.fixture(scope="module")
def fast_init_compile():
  """Non-partitionable threefry while a module runs: with the partitionable default,
  XLA:CPU compiles each parameter initialiser for seconds."""
  import jax
  previous = jax.config.jax_threefry_partitionable
  jax.config.update("jax_threefry_partitionable", False)
  yield
  jax.config.update("jax_threefry_partitionable", previous)
