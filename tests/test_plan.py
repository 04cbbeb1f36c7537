"""`linguamix plan`: the trainer's own step compiled by libtpu's TPU compiler on this CPU.

The memory figures are checked against a count made here from the model's own parameter
shapes (parameters + AdamW's two moments, whole on every chip or split four ways), not
from the planner's arithmetic; the collectives are read from the compiled program.
Tests that compile need libtpu (`pip install 'linguamix[tpu]'`) and skip without it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from linguamix.train import plan

REPO = pathlib.Path(__file__).resolve().parents[1]
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu not installed (pip install 'linguamix[tpu]')")

# A decoder whose every per-chip shard is a whole number of TPU tiles (8 x 128) when its
# `embed` axis is split four ways, so the compiler's bytes are the logical bytes.
DECODER = ["--gin_file=models/decoder_tiny.gin", "--gin.MIXTURE_OR_TASK_NAME='none'",
           "--gin.decoder.DecoderConfig.d_model=512", "--gin.decoder.DecoderConfig.mlp_dim=1024",
           "--gin.decoder.DecoderConfig.num_heads=4", "--gin.decoder.DecoderConfig.num_kv_heads=4",
           "--gin.TASK_FEATURE_LENGTHS={'targets': 128}", "--gin.BATCH_SIZE=8"]


def _plan(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
  return subprocess.run([python, "-m", "linguamix", "plan", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900)


def test_topology_names():
  assert plan.parse_topology("v5e-16").libtpu_name == "v5e:4x4"
  assert plan.parse_topology("v5e-1").libtpu_name == "v5e:1x1"
  assert plan.parse_topology("v6e-256").libtpu_name == "v6e:16x16"
  # v4 and v5p names count TensorCores, two per chip
  assert plan.parse_topology("v4-8").libtpu_name == "v4:2x2x1"
  assert plan.parse_topology("v4-64").libtpu_name == "v4:2x4x4"
  assert plan.parse_topology("v5p-8").chips == 4
  assert plan.parse_topology("v4-4096").chips == 2048
  assert plan.parse_topology("v5e:2x4", slices=2).chips == 16
  with pytest.raises(ValueError, match=r"unknown topology 'v5e-12'; known v5e: v5e-1, v5e-4"):
    plan.parse_topology("v5e-12")
  with pytest.raises(ValueError, match="3-D"):
    plan.parse_topology("v4:4x4")


def test_bad_input_is_one_error_line_before_compiling():
  """Unknown topology, a mesh that does not divide the chips, a batch the data-parallel
  size does not divide: one `error:` line, status 2, no libtpu needed."""
  r = _plan("--topology", "v7-8", *DECODER)
  assert r.returncode == 2 and r.stdout == ""
  assert r.stderr.strip().splitlines()[-1].startswith("linguamix plan: error: unknown topology 'v7-8'; known: v4-8")
  r = _plan("--topology", "v5e-4", *DECODER, "--gin.partitioning.Partitioner.fsdp=3")
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == "linguamix plan: error: fsdp=3 x model=1 does not divide 4 devices"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
  r = subprocess.run([sys.executable, "-m", "linguamix.train", "--compile_only=v5e-8", *DECODER,
                      "--gin.BATCH_SIZE=12"], cwd=REPO, env=env, capture_output=True, text=True)
  assert r.returncode == 2, r.stderr
  assert r.stderr.strip().splitlines()[-1] == (
      "python -m linguamix.train --compile_only: error: BATCH_SIZE=12 is not divisible by the "
      "data-parallel size 8 (mesh data x fsdp) x 1 microbatches")


@pytest.mark.skipif(HAS_LIBTPU, reason="checks the message given when libtpu is missing")
def test_without_libtpu_says_how_to_install():
  r = _plan("--topology", "v5e-4", *DECODER)
  assert r.returncode == 2
  assert "libtpu is not installed: pip install 'linguamix[tpu]'" in r.stderr.strip().splitlines()[-1]


def _independent_state_bytes(model, lengths) -> int:
  """Parameters + AdamW's two moments, in bytes, from the model's own abstract init."""
  shapes = {k: (1, v) for k, v in model.feature_converter_cls(pack=True).get_model_feature_lengths(lengths).items()}
  variables = jax.eval_shape(lambda r: model.init_variables(r, shapes), jax.random.PRNGKey(0))
  leaves = jax.tree.leaves(variables["params"])
  return 3 * sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)


@needs_libtpu
@pytest.mark.slow
def test_memory_matches_an_independent_count_replicated_and_sharded():
  import seqio
  from linguamix.models import decoder
  from linguamix.train import data
  cfg = decoder.DecoderConfig(vocab_size=1024, d_model=512, num_layers=2, num_heads=4, num_kv_heads=4,
                              mlp_dim=1024, dtype="bfloat16", param_dtype="float32", dropout_rate=0.0)
  model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(size=0, eos_id=1))
  lengths = {"targets": 128}
  ds = data.DatasetConfig("none", lengths, "train", batch_size=8, shuffle=False)
  state = _independent_state_bytes(model, lengths)
  batch = 8 * 128 * 5 * 4  # five int32 features
  topology = plan.parse_topology("v5e-4")
  results = {}
  for name, mesh, share in (("replicated", {"data": 4}, 1), ("fsdp", {"data": 1, "fsdp": 4}, 4)):
    r = plan.plan(model=model, partitioner_cfg=mesh, train_dataset_cfg=ds, topology=topology,
                  optimizer="adamw")
    results[name] = r
    args = r["memory"]["arguments"]  # the compiler's own per-chip account
    expected = state / share + batch / 4
    assert abs(args - expected) <= 0.02 * expected, (name, args, expected)
    assert r["fits"] and r["memory"]["total"] >= args
    assert r["flops"]["xla_per_chip"] > 0 and 0 < r["estimate"]["mfu"] < 1
  # FSDP gathers the weights; pure data parallelism reduces the gradients.
  assert results["fsdp"]["collectives"]["all-gather"]["count"] > 0
  assert "all-reduce" in results["replicated"]["collectives"]
  assert "all-gather" not in results["replicated"]["collectives"]
  # nothing of libtpu's start-up is left in the environment later trainers inherit
  assert "TPU_WORKER_HOSTNAMES" not in os.environ


@needs_libtpu
@pytest.mark.slow
def test_scanned_chunked_microbatched_steps_are_costed_like_the_unrolled_step():
  """XLA's cost analysis counts a loop body once; the planner's count of a step with a layer
  scan, chunked logits and two microbatches must be what the compiler counts for the same
  step without those loops (plus the output layer's forward pass that the chunks'
  `jax.checkpoint` recomputes)."""
  import seqio
  from linguamix.models import decoder
  from linguamix.train import data
  rows, length, d_model, vocab, chips = 8, 128, 512, 8192, 4
  ds = data.DatasetConfig("none", {"targets": length}, "train", batch_size=rows, shuffle=False)
  reports = {}
  for name, scan, microbatches, chunk in (("unrolled", False, 1, None), ("looped", True, 2, 32)):
    cfg = decoder.DecoderConfig(vocab_size=vocab, d_model=d_model, num_layers=4, num_heads=4,
                                num_kv_heads=4, mlp_dim=1024, dtype="bfloat16", param_dtype="float32",
                                dropout_rate=0.0, scan_layers=scan)
    model = decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(size=0, eos_id=1),
                                     logits_chunk_length=chunk)
    reports[name] = plan.plan(model=model, partitioner_cfg={"data": 1, "fsdp": chips},
                              train_dataset_cfg=ds, topology=plan.parse_topology("v5e-4"),
                              optimizer="adamw", num_microbatches=microbatches)
  unrolled, looped = reports["unrolled"]["flops"], reports["looped"]["flops"]
  assert unrolled["xla_counted"] == "as compiled"
  assert looped["xla_counted"].startswith("unrolled") and "x 2 microbatches" in looped["xla_counted"]
  recomputed_head = 2 * rows * length * d_model * vocab / chips
  expected = unrolled["xla_per_chip"] + recomputed_head
  assert abs(looped["xla_per_chip"] - expected) <= 0.02 * expected, (looped, unrolled)
  # Two microbatches read the weights twice: more bytes than one pass, fewer than two steps.
  assert unrolled["xla_bytes_accessed_per_chip"] < looped["xla_bytes_accessed_per_chip"] \
      < 2 * unrolled["xla_bytes_accessed_per_chip"]
  # The model's FLOPs and XLA's agree on the unrolled step (both count every layer).
  model_chip = (unrolled["model_6nd"] + unrolled["attention"]) / chips
  assert abs(unrolled["xla_per_chip"] - model_chip) <= 0.05 * model_chip
  assert "upper bound" not in plan.format_report(reports["looped"])


@needs_libtpu
@pytest.mark.slow
def test_oversized_batch_does_not_fit(tmp_path):
  out = tmp_path / "plan.json"
  r = _plan("--topology", "v5e-1", *DECODER, "--gin.TASK_FEATURE_LENGTHS={'targets': 4096}",
            "--gin.BATCH_SIZE=256", "--json", str(out))
  assert r.returncode == 1, r.stderr
  line = r.stderr.strip().splitlines()[-1]
  report = json.loads(out.read_text())
  need = report["memory"].get("total") or report["memory"]["compiler_total"]
  hbm = report["hbm_bytes"]  # the compiler's usable HBM when it refuses, else the published
  assert report["fits"] is False and need > hbm and 15 * 2 ** 30 <= hbm <= 16 * 2 ** 30
  assert line == (f"linguamix plan: does not fit: {need / 2 ** 30:.2f} GiB per chip > {hbm / 2 ** 30:.2f} "
                  "GiB HBM of a TPU v5e (v5e-1, mesh data 1 x fsdp 1 x model 1, batch 256)")
  # the activations of 256 x 4096 tokens, not the 25 MB of parameters, overflow it
  assert need > 100 * 2 ** 30
  # the attention path the TPU program takes, and why (the tiny gin's is not 'fused')
  assert report["attention_impl"] == ["materialised", "attention='materialised'"]


def test_search_space_covers_the_splits_the_batch_allows():
  space = plan.search_space(plan.parse_topology("v5e-4"), batch_size=4)
  meshes = {(c["data"], c["fsdp"], c["model"]) for c in space}
  assert meshes == {(4, 1, 1), (2, 2, 1), (1, 4, 1), (2, 1, 2), (1, 2, 2), (1, 1, 4)}
  # batch 4 over a data-parallel size of 4 leaves no room for microbatches
  assert {c["num_microbatches"] for c in space if c["data"] * c["fsdp"] == 4} == {1}
  assert {c["num_microbatches"] for c in space if c["model"] == 4} == {1, 2, 4}
  assert space[0] == {"data": 1, "fsdp": 4, "model": 1, "remat_policy": "none", "num_microbatches": 1}
  assert len(space) == len({tuple(sorted(c.items())) for c in space})


@needs_libtpu
@pytest.mark.slow
def test_search_ranks_compiled_candidates_by_the_estimate():
  import seqio
  from linguamix.models import decoder
  from linguamix.train import data
  cfg = decoder.DecoderConfig(vocab_size=1024, d_model=512, num_layers=2, num_heads=4, num_kv_heads=4,
                              mlp_dim=1024, dtype="bfloat16", param_dtype="float32", dropout_rate=0.0)
  made = []

  def make_model(remat):
    made.append(remat)
    return decoder.DecoderOnlyModel(dataclasses.replace(cfg, remat_policy=remat),
                                    seqio.PassThroughVocabulary(size=0, eos_id=1))

  ds = data.DatasetConfig("none", {"targets": 128}, "train", batch_size=8, shuffle=False)
  candidates = [{"data": 4, "fsdp": 1, "model": 1, "remat_policy": "none", "num_microbatches": 1},
                {"data": 1, "fsdp": 4, "model": 1, "remat_policy": "full", "num_microbatches": 2}]
  result = plan.search(make_model, plan.parse_topology("v5e-4"), budget_s=3600, progress=False,
                       candidates=candidates, train_dataset_cfg=ds, optimizer="adamw")
  assert made == ["none", "full"] and len(result["tried"]) == 2 and len(result["fits"]) == 2
  times = [c["step_seconds"] for c in result["fits"]]
  assert times == sorted(times) and times[0] > 0
  # the one that keeps the whole optimizer state on every chip uses more HBM
  by_mesh = {c["data"]: c for c in result["fits"]}
  assert by_mesh[4]["memory_total"] > by_mesh[1]["memory_total"]
  flags = plan.search_bindings(result["fits"][0], "decoder.DecoderConfig")
  assert f"--gin.partitioning.Partitioner.fsdp={result['fits'][0]['fsdp']}" in flags


# The shapes of lines the TPU compiler writes (from a v5e program): a loop body with a
# known trip count, an all-gather over a mesh-named group, a reduce-scatter fusion.
_HLO = """\
%body.1 (p: (s32[], bf16[512,512])) -> (s32[], bf16[512,512]) {
  %all-gather.189 = bf16[512,512]{1,0:T(8,128)(2,1)} all-gather(%param_0.1485), channel_id=62, replica_groups=mesh['axis_0'=1,'axis_1'=4] {'axis_1'}, dimensions={0}
  ROOT %t = (s32[], bf16[512,512]) tuple(%i, %all-gather.189)
}

%all-reduce-scatter (input: f32[1024,512]) -> f32[256,512] {
  %all-reduce.85 = f32[1024,512]{1,0:T(8,128)} all-reduce(%input), channel_id=8, replica_groups={{0,1,2,3}}, to_apply=%add.1.clone
  ROOT %dynamic-slice.128 = f32[256,512]{1,0:T(8,128)} dynamic-slice(%all-reduce.85, %a, %b)
}

ENTRY %main.50_spmd (param: s32[]) -> f32[256,512] {
  %while.3 = (s32[], bf16[512,512]) while(%tuple.1), condition=%cond.1, body=%body.1, backend_config={"known_trip_count":{"n":"32"}}
  ROOT %fusion = f32[256,512]{1,0:T(8,128)} fusion(%x), kind=kCustom, calls=%all-reduce-scatter
}
"""


def test_collectives_count_loop_trips_and_group_sizes():
  c = plan.collectives(_HLO, num_devices=8)
  assert c["all-gather"] == {"count": 32, "bytes": 32 * 512 * 512 * 2, "traffic": 32 * 512 * 512 * 2 * 3 / 4}
  # the fusion is the reduce-scatter; the all-reduce inside it is not counted again
  assert c["reduce-scatter"] == {"count": 1, "bytes": 256 * 512 * 4, "traffic": 256 * 512 * 4 * 3}
  assert set(c) == {"all-gather", "reduce-scatter"}
