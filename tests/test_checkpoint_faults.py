"""Checkpoints damaged the way real disks and copies damage them, at every reader.

The fault matrix: an array file cut to half, emptied or deleted; `_METADATA` missing,
cut short or not JSON; the OCDBT index missing or cut short; a copy without one
process's arrays; the trainer's `meta` not JSON; array contents changed (caught by the
saved checksums); a checkpoint of another model; a file this user may not read. Each reader (`INITIAL_CHECKPOINT_PATH`, `python -m
linguamix.eval` / `.infer` of a checkpoint, `linguamix convert export-hf`) answers with
one `error:` line naming the checkpoint and the file or array; a resume of MODEL_DIR sets
the damaged latest checkpoint aside in MODEL_DIR/corrupt/ and restores the one before.
Then saves that fail (the file size limit of a full disk; killed mid-write) and two
processes, only one of which sees a damaged file.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from linguamix.testing import train_helpers
from linguamix import cli
from linguamix.cli import train as train_main
from linguamix.train import run_eval
from linguamix.train import run_infer

REPO = pathlib.Path(__file__).resolve().parents[1]
QUIET = ("--gin.trainer.train.log_period=1", "--gin.trainer.train.infer_eval_dataset_cfg=None",
         "--gin.trainer.train.train_eval_dataset_cfg=None", "--gin.trainer.train.keep_checkpoints=100",
         "--gin.trainer.train.progress_bar=False", "--gin.EVAL_PERIOD=1000",
         "--gin.trainer.train.checkpoint_period=1")


def _argv(tmp: pathlib.Path, model_dir: pathlib.Path, *bindings: str) -> list[str]:
  return [f"--gin_file={train_helpers.write_gin(tmp)}", f'--gin.MODEL_DIR="{model_dir}"',
          *QUIET, *bindings]


@pytest.fixture(scope="module")
def run3(tmp_path_factory) -> pathlib.Path:
  """A finished 3-step run with checkpoint_1..3 (each test copies it)."""
  tmp = tmp_path_factory.mktemp("run3")
  assert train_main.main(_argv(tmp, tmp / "run", "--gin.TRAIN_STEPS=3")) == 0
  return tmp / "run"


_WIDE = "--gin.mt5.MT5Config.mlp_dim=4096"
_WIDE_MLP = 32 * 4096  # float32 entries of one MLP kernel of the wide model


@pytest.fixture(scope="module")
def run3_wide(tmp_path_factory) -> pathlib.Path:
  """run3 with an MLP so wide that one array outweighs every metadata file many times over."""
  tmp = tmp_path_factory.mktemp("run3_wide")
  assert train_main.main(_argv(tmp, tmp / "run", "--gin.TRAIN_STEPS=3", _WIDE)) == 0
  return tmp / "run"


@pytest.fixture(scope="module")
def hf_config(tmp_path_factory) -> pathlib.Path:
  """config.json of the tiny mT5 of train_helpers (for export-hf of its checkpoints)."""
  from linguamix.models import mt5
  from linguamix.models.checkpoint_formats import hf_mt5
  cfg = mt5.MT5Config(vocab_size=264, emb_dim=32, num_heads=4, num_encoder_layers=1,
                      num_decoder_layers=1, head_dim=8, mlp_dim=64, dtype="float32")
  path = tmp_path_factory.mktemp("hf") / "config.json"
  path.write_text(json.dumps(hf_mt5.hf_config(cfg)))
  return path


# --- faults: each damages checkpoint dir `c` and returns what the error must say ---------

def _largest_array_file(c: pathlib.Path) -> pathlib.Path:
  files = [p for p in (c / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


def array_truncated(c):
  f = _largest_array_file(c)
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # an interrupted copy
  return [f"{f} is cut short: ", ", but array "]


def array_empty(c):
  f = _largest_array_file(c)
  f.write_bytes(b"")
  return [f"{f} is empty, but array "]


def array_deleted(c):
  f = _largest_array_file(c)
  f.unlink()
  return [f"{f} is missing (array "]


def metadata_missing(c):
  (c / "state" / "_METADATA").unlink()
  return [f"{c}/state/_METADATA is missing"]


def metadata_truncated(c):
  f = c / "state" / "_METADATA"
  f.write_bytes(f.read_bytes()[:1000])
  return [f"{f} is not JSON (1000 bytes"]


def metadata_not_json(c):
  (c / "state" / "_METADATA").write_text("<html>Access denied</html>")
  return [f"{c}/state/_METADATA is not JSON"]


def index_missing(c):
  (c / "state" / "manifest.ocdbt").unlink()
  return [f"{c}/state/manifest.ocdbt is missing"]


def index_truncated(c):
  f = c / "state" / "manifest.ocdbt"
  f.write_bytes(f.read_bytes()[:40])
  return [f"{f} cannot be decoded: "]


def half_copied(c):
  """A copy that stopped before process 0's arrays (what `gsutil -m cp` leaves)."""
  shutil.rmtree(c / "state" / "ocdbt.process_0")
  return [f"{c}/state/ocdbt.process_0/d/", " is missing (array "]


def meta_not_json(c):
  (c / "meta" / "metadata").write_text('{"batches": 3, "seed"')
  return [f"{c}/meta/metadata is not JSON"]


def array_changed(c):
  """Bytes changed inside an array chunk: Orbax restores them silently (no checksum on
  chunks); the checksums the trainer saved in `meta` catch it."""
  import orbax.checkpoint as ocp
  tree = ocp.PyTreeCheckpointer().restore(str(c / "state"))
  tree["params"]["token_embedder"]["embedding"] = -tree["params"]["token_embedder"]["embedding"]
  shutil.rmtree(c / "state")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(str(c / "state"), tree)
  return ["array ['params']['token_embedder']['embedding'] does not match its checksum"]


def other_model(c):
  """The same layout, written by another model (a smaller vocabulary)."""
  import jax
  import orbax.checkpoint as ocp
  from linguamix.models.checkpoint_formats import checksums
  from linguamix.train import checkpoints as ckpt_lib
  tree = ocp.PyTreeCheckpointer().restore(str(c / "state"))
  for sub in (tree["params"], tree["opt_state"][0]["v"]):  # params and their second moments
    sub["token_embedder"]["embedding"] = sub["token_embedder"]["embedding"][:200]
  shutil.rmtree(c / "state")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(str(c / "state"), tree)
  meta = json.loads((c / "meta" / "metadata").read_text())
  meta["checksums"].update(checksums.checksums({"params": tree["params"]}))  # its own, consistent
  meta["fingerprint"] = ckpt_lib.fingerprint(
      jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree["params"]))
  (c / "meta" / "metadata").write_text(json.dumps(meta))
  return ["['token_embedder']['embedding']", "token_embedder/embedding"]


FAULTS = (array_truncated, array_empty, array_deleted, metadata_missing, metadata_truncated,
          metadata_not_json, index_missing, index_truncated, half_copied, meta_not_json,
          array_changed, other_model)
FIT = {"train": "does not fit the model", "eval": "does not fit the model",
       "infer": "does not fit the model", "export": "does not fit"}


def _damaged(run3: pathlib.Path, tmp_path: pathlib.Path, fault) -> tuple[pathlib.Path, list[str]]:
  ckpt = tmp_path / "copy" / "checkpoint_3"
  shutil.copytree(run3 / "checkpoint_3", ckpt)
  return ckpt, fault(ckpt)


def _one_error_line(err: str, prog: str) -> str:
  assert "Traceback" not in err, err
  lines = [l for l in err.splitlines() if ": error: " in l]
  assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
  return lines[0]


READERS = {
    "train": ("python -m linguamix.train", "INITIAL_CHECKPOINT_PATH"),
    "eval": ("python -m linguamix.eval", "CHECKPOINT_PATH"),
    "infer": ("python -m linguamix.infer", "CHECKPOINT_PATH"),
    "export": ("linguamix convert", "CHECKPOINT_DIR"),
}


def _read(reader: str, ckpt: pathlib.Path, tmp: pathlib.Path, hf_config: pathlib.Path) -> int:
  gin_file = f"--gin_file={train_helpers.write_gin(tmp)}"
  if reader == "train":
    return train_main.main(_argv(tmp, tmp / "new", "--gin.TRAIN_STEPS=4",
                                 f"--gin.INITIAL_CHECKPOINT_PATH='{ckpt}'"))
  if reader == "eval":
    return train_main.eval_main([gin_file, f'--gin.CHECKPOINT_PATH="{ckpt}"',
                                 f'--gin.EVAL_OUTPUT_DIR="{tmp}/out"', "--gin.EVAL_TASKS='xcopa.sw'"])
  if reader == "infer":
    return train_main.infer_main([gin_file, f'--gin.CHECKPOINT_PATH="{ckpt}"',
                                  f'--gin.INFER_OUTPUT_DIR="{tmp}/out"', "--gin.INFER_SPLIT='validation'"])
  return cli.main(["convert", "export-hf", str(ckpt), str(tmp / "out"), "--config", str(hf_config)])


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
def test_a_damaged_checkpoint_is_one_error_line_naming_it(reader, fault, run3, hf_config,
                                                           tmp_path, capsys):
  ckpt, says = _damaged(run3, tmp_path, fault)
  prog, macro = READERS[reader]
  capsys.readouterr()
  rc = _read(reader, ckpt, tmp_path, hf_config)
  err = capsys.readouterr().err
  assert rc == 2, err
  line = _one_error_line(err, prog)
  assert f"error: {macro} {ckpt}" in line or f"error: {ckpt}" in line, line
  if fault is other_model:  # the mismatches follow the line, one per parameter
    assert FIT[reader] in line and says[0 if reader != "export" else 1] in err, err
  else:
    for part in says:
      assert part in line, line
  # Nothing half-written: no run, no outputs.
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
  assert not (tmp_path / "new").exists() or not any((tmp_path / "new").glob("checkpoint_*"))


def test_export_of_the_intact_checkpoint_works(run3, hf_config, tmp_path):
  """The control for the matrix above: the same reader, the same checkpoint undamaged."""
  assert _read("export", run3 / "checkpoint_3", tmp_path, hf_config) == 0
  assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("fault", [f for f in FAULTS if f is not other_model],
                         ids=lambda f: f.__name__)
def test_resume_sets_a_damaged_latest_checkpoint_aside(fault, run3, tmp_path, capsys):
  run = tmp_path / "run"
  shutil.copytree(run3, run)
  says = fault(run / "checkpoint_3")
  capsys.readouterr()
  # TRAIN_STEPS=2: checkpoint_2 is restored and nothing is left to train (cheap).
  assert train_main.main(_argv(tmp_path, run, "--gin.TRAIN_STEPS=2")) == 0
  captured = capsys.readouterr()
  assert "Traceback" not in captured.err, captured.err
  warnings = [l for l in captured.err.splitlines() if l.startswith("warning: ")]
  assert len(warnings) == 1, captured.err
  assert warnings[0].startswith(f"warning: {run}/checkpoint_3: ")
  for part in says:
    assert part in warnings[0], warnings[0]
  assert warnings[0].endswith(f"moved it to {run}/corrupt/checkpoint_3 and using the previous "
                              "checkpoint")
  assert f"restored {run}/checkpoint_2 (step 2, 2 batches consumed)" in captured.out
  assert (run / "corrupt" / "checkpoint_3" / "meta").is_dir()  # kept, for inspection
  assert sorted(p.name for p in run.glob("checkpoint_*")) == ["checkpoint_1", "checkpoint_2"]


def test_resume_with_a_latest_checkpoint_of_another_model_is_an_error(run3, tmp_path, capsys):
  run = tmp_path / "run"
  shutil.copytree(run3, run)
  other_model(run / "checkpoint_3")
  capsys.readouterr()
  assert train_main.main(_argv(tmp_path, run, "--gin.TRAIN_STEPS=4")) == 2
  line = _one_error_line(capsys.readouterr().err, "python -m linguamix.train")
  assert f"MODEL_DIR {run} holds checkpoints of another model (checkpoint_3: " in line
  assert (run / "checkpoint_3").is_dir() and not (run / "corrupt").exists()  # not moved


# --- unreadable files: as root, reads are denied only without CAP_DAC_OVERRIDE -----------

def _drop_file_capabilities() -> None:
  """In the child: root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys file modes."""
  libc = ctypes.CDLL(None, use_errno=True)
  for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
      raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


_UNREADABLE_SCRIPT = """
import json, pathlib, sys
sys.path[:0] = [sys.argv[1]]
import test_checkpoint_faults as t
run, ckpt, tmp, hf_config = map(pathlib.Path, sys.argv[2:6])
rcs = {r: t._read(r, ckpt, tmp / r, hf_config) for r in sorted(t.READERS)}
rcs["resume"] = t.train_main.main(t._argv(tmp, run, "--gin.TRAIN_STEPS=2"))
print("RCS=" + json.dumps(rcs))
"""


@pytest.mark.slow
def test_an_unreadable_file_is_an_error_at_every_reader_and_is_not_set_aside(run3, hf_config,
                                                                              tmp_path):
  if os.geteuid() == 0:
    try:  # the same drop in a throwaway child tells whether this kernel allows it
      subprocess.run(["true"], preexec_fn=_drop_file_capabilities, check=True)
    except (OSError, subprocess.SubprocessError) as e:
      pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE ({e}): every file "
                  "is readable")
  run = tmp_path / "run"
  shutil.copytree(run3, run)
  locked = _largest_array_file(run / "checkpoint_3")
  locked.chmod(0)
  for r in READERS:
    (tmp_path / r).mkdir()
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}
  proc = subprocess.run(
      [sys.executable, "-c", _UNREADABLE_SCRIPT, str(REPO / "tests"), str(run),
       str(run / "checkpoint_3"), str(tmp_path), str(hf_config)],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
      preexec_fn=_drop_file_capabilities if os.geteuid() == 0 else None)
  assert "RCS=" in proc.stdout, proc.stderr[-3000:]
  rcs = json.loads(proc.stdout.split("RCS=")[1])
  assert rcs == {"train": 2, "eval": 2, "infer": 2, "export": 2, "resume": 2}, proc.stderr[-3000:]
  lines = [l for l in proc.stderr.splitlines() if ": error: " in l]
  assert len(lines) == 5 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for line in lines:
    assert f"{locked} cannot be read: Permission denied" in line, line
  # A resume does not give up a checkpoint whose bytes may be fine: left in place.
  assert "left in place" in lines[-1]
  assert (run / "checkpoint_3").is_dir() and not (run / "corrupt").exists()


# --- saves that fail ----------------------------------------------------------------------

def _env() -> dict:
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}


def _limit_file_size(nbytes: int, kill: bool):
  """In the child: files may not grow past `nbytes`, as on a full disk. Python ignores
  SIGXFSZ, so a write past the limit fails with EFBIG; `kill` restores the default action,
  which kills the process in the middle of that write."""
  def apply():
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    if kill:
      signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
  return apply


_KILLABLE = ("import signal, runpy; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
             "runpy.run_module('linguamix.train', run_name='__main__')")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["disk_full", "killed_mid_write"])
def test_a_failed_save_keeps_the_previous_checkpoint_and_the_next_start_resumes(
    how, run3_wide, tmp_path, capsys):
  run = tmp_path / "run"
  shutil.copytree(run3_wide, run)
  # Orbax spreads arrays over data files at random, so the limit is not taken from one file:
  # it is 4x every metadata, log and metrics file, and below the one MLP array (stored whole
  # in one data file) that every checkpoint of this wide model writes.
  small = max(p.stat().st_size for p in run.rglob("*") if p.is_file() and p.parent.name != "d")
  limit = 4 * small
  assert limit < _WIDE_MLP * 4 // 2
  prog = ([sys.executable, "-c", _KILLABLE] if how == "killed_mid_write"
          else [sys.executable, "-m", "linguamix.train"])
  proc = subprocess.run([*prog, *_argv(tmp_path, run, "--gin.TRAIN_STEPS=5", _WIDE)], env=_env(),
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        preexec_fn=_limit_file_size(limit, kill=how == "killed_mid_write"))
  if how == "disk_full":
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.splitlines() if ": stopped: " in l]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"python -m linguamix.train: stopped: writing a checkpoint to "
                               f"{run} failed (")
    assert f"{run}/checkpoint_4.orbax-checkpoint-tmp/" in lines[0]  # the file that failed
    assert "): File too large); " in lines[0]  # and why
    assert lines[0].endswith(f"the last complete checkpoint, {run}/checkpoint_3, is intact: "
                             "free space and run the same command to resume from it")
  else:
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-3000:]
  # The unfinished save is a temporary dir that no reader takes for a checkpoint.
  assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == [
      "checkpoint_1", "checkpoint_2", "checkpoint_3", "checkpoint_4.orbax-checkpoint-tmp"]
  capsys.readouterr()
  assert train_main.main(_argv(tmp_path, run, "--gin.TRAIN_STEPS=5", _WIDE)) == 0
  captured = capsys.readouterr()
  assert f"warning: {run}/checkpoint_4.orbax-checkpoint-tmp is a checkpoint whose writing did " \
         "not finish" in captured.err, captured.err
  assert f"restored {run}/checkpoint_3 (step 3, 3 batches consumed)" in captured.out
  assert sorted(p.name for p in run.glob("checkpoint_*")) == [
      f"checkpoint_{i}" for i in range(1, 6)]
  steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()
           if json.loads(l)["split"] == "train"]
  assert steps == [1, 2, 3, 4, 5]


# --- two processes, one of which sees a damaged file --------------------------------------

_TWO_PROCESS_SCRIPT = """
import sys
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                           process_id=int(sys.argv[2]))
from linguamix.train import checkpoints
ck = checkpoints.Checkpointer("run", keep=100)  # relative: each process its own disk
step, meta = ck.latest_meta()
print(f"META process={jax.process_index()} step={step}", flush=True)
from etils import epath
tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(f"run/checkpoint_{step}/state").absolute())
tree = getattr(tree, "tree", tree)
everywhere = NamedSharding(jax.sharding.Mesh(np.array(jax.devices()), ("d",)), PartitionSpec())
abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=everywhere), tree)
step, state, meta = ck.restore_latest(abstract)
print(f"RESTORED process={jax.process_index()} step={step} step_array={int(state['step'])}",
      flush=True)
ck.close(finished=False)
"""


@pytest.mark.slow
def test_two_processes_agree_when_only_one_sees_a_damaged_checkpoint(run3, tmp_path):
  """Each process has its own copy of MODEL_DIR (a relative path, run from two folders),
  as hosts with their own disks would; process 1's latest checkpoint was cut short."""
  views = [tmp_path / "host0", tmp_path / "host1"]
  for view in views:
    shutil.copytree(run3, view / "run")
  says = array_truncated(views[1] / "run" / "checkpoint_3")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {k: v for k, v in _env().items() if k != "XLA_FLAGS"}
  env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
  procs = [subprocess.Popen(
      [sys.executable, "-c", _TWO_PROCESS_SCRIPT, f"127.0.0.1:{port}", str(i)], env=env,
      cwd=views[i], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  for i, (out, _) in enumerate(outs):
    assert f"META process={i} step=2" in out, out
    assert f"RESTORED process={i} step=2 step_array=2" in out, out
  # Process 0 (whose own copy is whole) says why, naming the file process 1 found cut short.
  warning = [l for l in outs[0][1].splitlines() if l.startswith("warning: ")]
  assert len(warning) == 1 and "(seen by process 1)" in warning[0], outs[0][1][-3000:]
  assert says[0].replace(str(views[1]), "") in warning[0].replace(str(views[1]), "")
  assert (views[0] / "run" / "corrupt" / "checkpoint_3").is_dir()
