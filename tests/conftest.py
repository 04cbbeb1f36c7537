"""Test-wide settings: quiet TensorFlow, CPU only, the path to the bundled real data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

# The loopback Hub (`hub`) and the SLURM cluster (`slurm_cluster`, `slurm`).
pytest_plugins = ("linguamix.testing.fixtures",)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Real XCOPA and MT-Bench-X, vendored in the package (see its README for provenance).
REAL_DATA = REPO_ROOT / "linguamix" / "evals" / "bundled"


@pytest.fixture(scope="session")
def real_data() -> pathlib.Path:
  """An eval data root holding the real `xcopa/` and `mt_bench_x/` release files."""
  return REAL_DATA


@pytest.fixture(scope="module")
def fast_init_compile():
  """Non-partitionable threefry while a module runs: with the partitionable default,
  XLA:CPU compiles each parameter initialiser for seconds."""
  import jax
  previous = jax.config.jax_threefry_partitionable
  jax.config.update("jax_threefry_partitionable", False)
  yield
  jax.config.update("jax_threefry_partitionable", previous)
