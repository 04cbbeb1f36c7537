"""A real one-node SLURM cluster for tests: munged, slurmctld and slurmd (Debian's
`slurm-wlm` and `munge` packages) with a generated slurm.conf in a temporary folder.

`start(root)` returns a `Cluster` whose `env` points the client commands (sbatch, squeue,
scontrol, scancel) at it; `stop()` ends the three daemons by their pids. `missing()` says
why no cluster can be started here (a binary not on PATH, not root), or None.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import time

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
# The cluster's array limit: small, so a three-run grid already needs two arrays.
MAX_ARRAY_SIZE = 2


def missing() -> str | None:
  absent = [b for b in BINARIES if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin") is None]
  if absent:
    return (f"SLURM not installed ({', '.join(absent)} not found; "
            "`apt-get install slurm-wlm munge` provides them)")
  if os.geteuid() != 0:
    return "the one-node SLURM test cluster runs its daemons as root"
  return None


def _free_ports(n: int) -> list[int]:
  socks = []
  for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _node_line() -> str:
  """`slurmd -C`'s description of this host (its real CPUs and memory)."""
  out = subprocess.run([_bin("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
  return out.splitlines()[0].strip()


def _bin(name: str) -> str:
  return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")


@dataclasses.dataclass
class Cluster:
  root: str
  env: dict[str, str]
  procs: list[subprocess.Popen]
  node: str

  def stop(self) -> None:
    for proc in reversed(self.procs):
      if proc.poll() is None:
        proc.terminate()
        try:
          proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()

  def run(self, *argv: str) -> str:
    return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True).stdout

  def log(self, name: str) -> str:
    with open(os.path.join(self.root, f"{name}.log"), encoding="utf-8", errors="replace") as f:
      return f.read()


def start(root: str) -> Cluster:
  os.makedirs(root, exist_ok=True)
  os.chmod(root, 0o700)
  for d in ("state", "spool", "munge"):
    os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)
  key = os.path.join(root, "munge", "munge.key")
  with open(key, "wb") as f:
    f.write(os.urandom(1024))
  os.chmod(key, 0o600)
  sock = os.path.join(root, "munge", "munge.socket")
  procs = [subprocess.Popen(
      [_bin("munged"), "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
       f"--pid-file={root}/munge/munged.pid", f"--seed-file={root}/munge/seed",
       f"--log-file={root}/munged.log"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
  node = _node_line()
  name = re.search(r"NodeName=(\S+)", node).group(1)
  ctld_port, d_port = _free_ports(2)
  conf = os.path.join(root, "slurm.conf")
  with open(conf, "w", encoding="utf-8") as f:
    f.write("\n".join([
        "ClusterName=linguamixtest",
        f"SlurmctldHost={name}",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={d_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={sock},cred_expire=5",  # a requeued job may start 5 s later, not 120
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",  # one core per task: at most CPUs tasks at once
        "MpiDefault=none",
        "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=2,bf_interval=2",
        f"MaxArraySize={MAX_ARRAY_SIZE}",
        "KillWait=60",  # time between SIGTERM and SIGKILL: a checkpoint fits
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "MinJobAge=300",
        node.replace(" UpTime", "") + " State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
  env = {**os.environ, "SLURM_CONF": conf}
  cluster = Cluster(root=root, env=env, procs=procs, node=name)
  try:
    _wait(lambda: os.path.exists(sock), "munged", cluster)
    procs.append(subprocess.Popen([_bin("slurmctld"), "-D", "-i", "-f", conf], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    procs.append(subprocess.Popen([_bin("slurmd"), "-D", "-f", conf], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    _wait(lambda: _node_idle(cluster), "slurmd registering as idle", cluster)
  except BaseException:
    cluster.stop()
    raise
  return cluster


def _node_idle(cluster: Cluster) -> bool:
  done = subprocess.run([_bin("sinfo"), "--noheader", "--format=%t"], env=cluster.env,
                        capture_output=True, text=True)
  return done.returncode == 0 and done.stdout.strip() == "idle"


def _wait(ready, what: str, cluster: Cluster, timeout: float = 60) -> None:
  deadline = time.time() + timeout
  while not ready():
    for proc in cluster.procs:
      if proc.poll() is not None:
        raise RuntimeError(f"{what}: {proc.args[0]} exited with {proc.returncode}; logs in {cluster.root}")
    if time.time() > deadline:
      raise RuntimeError(f"{what}: not ready after {timeout} s; logs in {cluster.root}")
    time.sleep(0.2)


def drain(cluster: Cluster, timeout: float = 90) -> None:
  """Cancels every job and waits until the queue is empty (no task outlives the cluster)."""
  subprocess.run([_bin("scancel"), "--full", "--user=root"], env=cluster.env, capture_output=True)
  deadline = time.time() + timeout
  while cluster.run("squeue", "--noheader").strip() and time.time() < deadline:
    time.sleep(0.5)
