"""pytest fixtures over the loopback servers of `linguamix.testing`; a pytest plugin:
`pytest_plugins = ("linguamix.testing.fixtures",)` in a conftest.py makes them available.

* `hub`: a `FakeHub` with huggingface_hub pointed at it.
* `slurm_cluster` (one per session) and `slurm` (this process's sbatch & co. pointed at
  it): a real one-node SLURM cluster, skipped with the reason where none can start.
"""

from __future__ import annotations

import pytest

from linguamix.testing import hub_server
from linguamix.testing import slurm_cluster as slurm_cluster_lib


@pytest.fixture
def hub(tmp_path, monkeypatch):
  """A FakeHub with huggingface_hub pointed at it (what HF_ENDPOINT / HF_HOME do at
  import) and GitHub raw downloads under its /gh route; no token, no data roots."""
  from huggingface_hub import constants
  with hub_server.FakeHub() as fake:
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        fake.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setenv("LINGUAMIX_GITHUB_RAW", fake.url + "/gh")
    for var in ("HF_TOKEN", "LINGUAMIX_DATA_ROOT", "LINGUAMIX_EVAL_DATA_ROOT"):
      monkeypatch.delenv(var, raising=False)
    yield fake


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
  """The one-node cluster for the whole session; skipped, with the reason, without SLURM."""
  why = slurm_cluster_lib.missing()
  if why:
    pytest.skip(why)
  cluster = slurm_cluster_lib.start(str(tmp_path_factory.mktemp("slurm")))
  try:
    yield cluster
  finally:
    try:
      slurm_cluster_lib.drain(cluster)
    finally:
      cluster.stop()


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
  """The cluster, with this process's environment pointing sbatch & co. at it."""
  monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
  yield slurm_cluster
  slurm_cluster_lib.drain(slurm_cluster)
