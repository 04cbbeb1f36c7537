"""`linguamix plan`: a run's own training step, compiled for a TPU topology on this host.

libtpu compiles for TPU topologies without a TPU (`jax.experimental.topologies`): the
run's gin files and bindings give the model, optimizer, mesh and batch; the state is
abstract (`jax.eval_shape`: no weights, no checkpoint, no tokenizer file); the function
compiled is `trainer.build_train_step`'s, the one `python -m linguamix.train` executes.
The compiler's own analysis gives the per-chip memory; the FLOPs, HLO collectives and a
roofline estimate of the step time (published chip peaks, an estimate and never a
measurement) follow. docs/tpu_planning.md explains every figure.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
from typing import Any, Mapping

from linguamix import environ
from linguamix import errors

INSTALL_HINT = ("libtpu is not installed: pip install 'linguamix[tpu]' "
                "(the jax[tpu] extra pinned to this jax; about 700 MB, runs on any x86-64 Linux host)")


@dataclasses.dataclass(frozen=True)
class Chip:
  """Google Cloud's published per-chip figures (bf16 dense peak; ICI both directions)."""

  name: str
  peak_flops: float
  hbm_bytes: float
  hbm_bandwidth: float
  ici_bandwidth: float
  torus_dims: int
  cores_per_chip: int  # the N of a 'vX-N' name counts TensorCores on v4 / v5p
  topology_kwargs: tuple = ()


GiB = 2 ** 30
CHIPS: dict[str, Chip] = {
    # v4: 6 ICI links of 50 GB/s each way (the v4 paper); two TensorCores as one (megacore).
    "v4": Chip("TPU v4", 275e12, 32 * GiB, 1200e9, 600e9, 3, 2, (("chip_config_name", "megacore"),)),
    "v5e": Chip("TPU v5e", 197e12, 16 * GiB, 819e9, 400e9, 2, 1),
    "v5p": Chip("TPU v5p", 459e12, 95 * GiB, 2765e9, 600e9, 3, 2),
    "v6e": Chip("TPU v6e", 918e12, 32 * GiB, 1638e9, 800e9, 2, 1),
}
# Slice sizes (chips) offered per generation.
MAX_CHIPS = {"v4": 4096, "v5e": 256, "v5p": 8960, "v6e": 256}


def _torus(chips: int, dims: int) -> tuple[int, ...]:
  """The slice shape of `chips` chips: 2x2(x1) doubled along its rightmost smallest side."""
  shape = [2, 2, 1][:dims] if dims == 3 else [2, 2]
  if chips == 1:
    return (1,) * dims
  while math.prod(shape) < chips:
    smallest = min(shape)
    i = max(j for j, s in enumerate(shape) if s == smallest)
    shape[i] *= 2
  return tuple(shape)


def known_topologies() -> list[str]:
  names = []
  for gen, chip in CHIPS.items():
    sizes = [1] if chip.torus_dims == 2 else []
    n = 4
    while n <= MAX_CHIPS[gen]:
      sizes.append(n)
      n *= 2
    names += [f"{gen}-{c * chip.cores_per_chip}" for c in sizes]
  return names


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str  # as given: v5e-16, v4-8, v5e:4x4
  generation: str
  shape: tuple[int, ...]
  slices: int = 1

  @property
  def chip(self) -> Chip:
    return CHIPS[self.generation]

  @property
  def chips_per_slice(self) -> int:
    return math.prod(self.shape)

  @property
  def chips(self) -> int:
    return self.chips_per_slice * self.slices

  @property
  def libtpu_name(self) -> str:
    return f"{self.generation}:{'x'.join(map(str, self.shape))}"


def parse_topology(name: str, slices: int = 1) -> Topology:
  """'v5e-16' (accelerator type: chips, or TensorCores on v4/v5p) or 'v5e:4x4' (shape)."""
  m = re.fullmatch(r"(v4|v5e|v5p|v6e)-(\d+)", name) or re.fullmatch(r"(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})", name)
  if not m or slices < 1:
    raise ValueError(f"unknown topology {name!r}" + (f" with --slices {slices}" if slices < 1 else "")
                     + f"; known: {', '.join(known_topologies())} (or GEN:AxB[xC], e.g. v5e:4x4)")
  gen = m.group(1)
  chip = CHIPS[gen]
  if ":" in name:
    shape = tuple(int(x) for x in m.group(2).split("x"))
    if len(shape) != chip.torus_dims:
      raise ValueError(f"topology {name!r}: {gen} slices are {chip.torus_dims}-D (e.g. "
                       f"{gen}:{'x'.join(map(str, _torus(4, chip.torus_dims)))})")
    return Topology(name, gen, shape, slices)
  n = int(m.group(2))
  if n % chip.cores_per_chip or f"{gen}-{n}" not in known_topologies():
    raise ValueError(f"unknown topology {name!r}; known {gen}: "
                     + ", ".join(t for t in known_topologies() if t.startswith(gen + "-")))
  return Topology(name, gen, _torus(n // chip.cores_per_chip, chip.torus_dims), slices)


def topology_devices(topology: Topology) -> list:
  if importlib.util.find_spec("libtpu") is None:
    raise NoLibtpu(INSTALL_HINT)
  from jax.experimental import topologies
  kwargs = dict(topology.chip.topology_kwargs)
  if topology.chips_per_slice < 4:
    kwargs["chips_per_host_bounds"] = topology.shape + (1,) * (3 - len(topology.shape))
  if topology.slices > 1:
    kwargs["num_slices"] = topology.slices
  # Read by libtpu as it loads. Without a TPU VM's worker list it logs an error about the
  # host (harmless: only compiling); several processes may compile at once (tests). Set
  # only while it loads: a worker list left in the environment makes every later
  # `python -m linguamix.train` this process starts initialise a (missing) TPU cluster.
  defaults = {"TPU_WORKER_HOSTNAMES": "localhost", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
  with environ.scoped({k: v for k, v in defaults.items() if k not in os.environ}):
    return list(topologies.get_topology_desc(topology_name=topology.libtpu_name, platform="tpu",
                                             **kwargs).devices)


# --- the compiled program's collectives ------------------------------------------------
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
                "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8}
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+([a-z][\w\-]*)\((.*)$")
_COMP = re.compile(r"^\s*(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


def _array_bytes(type_text: str) -> int:
  sizes = [math.prod(int(d) for d in dims.split(",") if d) * _DTYPE_BYTES[t]
           for t, dims in _ARRAY.findall(type_text) if t in _DTYPE_BYTES]
  return max(sizes, default=0)


def _group_size(rest: str, default: int) -> int:
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", rest)
  if m:  # mesh['axis_0'=1,'axis_1'=4] {'axis_1'}: the named axes form a group
    sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'(\w+)'", m.group(2)) if a in sizes)
  m = re.search(r"replica_groups=\{\{([\d,]+)\}", rest)
  if m:
    return len(m.group(1).split(","))
  m = re.search(r"replica_groups=\[(\d+),(\d+)\]", rest)
  if m:
    return int(m.group(2))
  m = re.search(r"source_target_pairs=", rest)
  return 2 if m else default


def collectives(hlo_text: str, num_devices: int) -> dict[str, dict]:
  """{kind: {count, bytes, traffic}} of the compiled HLO, loops counted by their known
  trip counts: `bytes` is the result size per chip, `traffic` what a ring moves per chip
  (all-gather (n-1)/n x result, reduce-scatter (n-1) x result, all-reduce 2(n-1)/n x
  result, all-to-all (n-1)/n, permute 1x)."""
  comps: dict[str, list] = {}
  entry, current = None, None
  for line in hlo_text.splitlines():
    m = _COMP.match(line)
    if m and not line[:1].isspace():  # computations start at column 0, their ops indented
      current = m.group(2)
      comps[current] = []
      entry = current if m.group(1) else entry
      continue
    m = _INSTR.match(line)
    if not m or current is None:
      continue
    type_text, op, rest = m.groups()
    if op == "while":
      body = re.search(r"body=%?([\w.\-]+)", rest)
      trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', rest)
      if body:
        comps[current].append(("call", body.group(1), int(trips.group(1)) if trips else 1))
      continue
    kind = op[:-len("-start")] if op.endswith("-start") else op
    fused = re.search(r"calls=%(all-reduce-scatter[\w.\-]*)", rest) if op == "fusion" else None
    if fused:  # the TPU's fused reduce-scatter: one collective, its group that of its all-reduce
      comps[current].append(("op", "reduce-scatter", _array_bytes(type_text), fused.group(1)))
      continue
    if kind in _COLLECTIVES:
      comps[current].append(("op", kind, _array_bytes(type_text), _group_size(rest, num_devices)))
      continue
    for callee in re.findall(r"(?:calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)", rest):
      comps[current].append(("call", callee, 1))

  out: dict[str, dict] = {}

  def walk(name: str, times: int, depth: int = 0):
    for item in comps.get(name, []):
      if item[0] == "call":
        if depth < 32:
          walk(item[1], times * item[2], depth + 1)
        continue
      _, kind, nbytes, n = item
      if isinstance(n, str):
        n = next((x[3] for x in comps.get(n, []) if x[0] == "op" and isinstance(x[3], int)), num_devices)
      factor = {"all-gather": (n - 1) / n, "reduce-scatter": n - 1, "all-reduce": 2 * (n - 1) / n,
                "all-to-all": (n - 1) / n, "collective-permute": 1.0}[kind]
      rec = out.setdefault(kind, {"count": 0, "bytes": 0, "traffic": 0.0})
      rec["count"] += times
      rec["bytes"] += times * nbytes
      rec["traffic"] += times * nbytes * factor

  if entry:
    walk(entry, 1)
  return out


# --- the plan ---------------------------------------------------------------------------
def _abstract_batch(model, partitioner, task_feature_lengths, batch_size: int):
  import jax
  import jax.numpy as jnp
  lengths = model.feature_converter_cls(pack=True).get_model_feature_lengths(task_feature_lengths)
  batch = {k: jax.ShapeDtypeStruct((batch_size, int(v)), jnp.int32, sharding=partitioner.batch_sharding(2))
           for k, v in lengths.items()}
  return batch, {k: int(v) for k, v in lengths.items()}


def _shard_bytes(tree) -> int:
  """Bytes of one device's shards of a tree of sharded ShapeDtypeStructs (the largest)."""
  import jax
  import numpy as np
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape)
    total += int(np.prod(shape)) * np.dtype(x.dtype).itemsize
  return total


def _lower_inputs(model, partitioner, task_feature_lengths, batch_size: int, num_microbatches: int,
                  *, optimizer, learning_rate, max_grad_norm, total_steps):
  """The trainer's own step and its abstract arguments, on `partitioner`'s mesh."""
  import flax.linen as nn

  from linguamix.train import optim, trainer
  boxed, _ = trainer.abstract_params(model, task_feature_lengths)
  abstract = nn.unbox(boxed)
  lr = learning_rate or optim.schedule()
  if isinstance(lr, optim.NeedsTotalSteps):
    lr = lr.at(total_steps or 1000)
  tx, shardings, train_step = trainer.build_train_step(
      model, partitioner, boxed, optimizer=optimizer, lr_schedule=lr,
      max_grad_norm=max_grad_norm, num_microbatches=num_microbatches)
  state = trainer.abstract_state(abstract, tx, shardings)
  batch, lengths = _abstract_batch(model, partitioner, task_feature_lengths, batch_size)
  return boxed, abstract, state, batch, lengths, train_step


def _cost(compiled) -> tuple[float, float]:
  cost = compiled.cost_analysis() or {}
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


# The config fields that count a model's layers (one general rule, not one per family).
LAYER_FIELDS = ("num_layers", "num_encoder_layers", "num_decoder_layers")


def _unrolled_cost(model, partitioner, task_feature_lengths, rows: int,
                   **step_kwargs) -> tuple[float, float] | None:
  """XLA's (flops, bytes accessed) per chip of one unrolled step of `rows` rows, without
  compiling the whole model unrolled. The step's loops are the layer scan and the output
  layer's chunk loop (`logits_chunk_length`); XLA counts each body once, so a cost is
  fixed + layers x per layer + chunk positions x per position. Small steps, layers not
  scanned, measure the parts: every layer count at 1 and at 2 (all equal in every family,
  so one slope), and where the logits are chunked, one layer with chunks twice as long
  (or unchunked). None where a small step does not compile."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  cfg = model.config
  counts = {f: getattr(cfg, f) for f in LAYER_FIELDS if hasattr(cfg, f)}
  if len(set(counts.values())) != 1:
    return None
  _, lengths = _abstract_batch(model, partitioner, task_feature_lengths, rows)
  length = lengths["decoder_target_tokens"]
  chunk = getattr(model, "logits_chunk_length", None)
  chunk = chunk if chunk and chunk < length else None

  def cost(layers: int, chunk_length: int | None):
    small = model.with_config(dataclasses.replace(cfg, scan_layers=False, **{f: layers for f in counts}))
    small.logits_chunk_length = chunk_length
    *_, state, batch, _, step = _lower_inputs(small, partitioner, task_feature_lengths, rows, 1,
                                              **step_kwargs)
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated())
    return np.array(_cost(step.lower(state, batch, rng).compile()))

  try:
    one, two = cost(1, chunk), cost(2, chunk)
    total = one + (next(iter(counts.values())) - 1) * (two - one)
    if chunk:  # one chunk counted; the loop runs ceil(length / chunk) of them
      longer = 2 * chunk if 2 * chunk < length else None
      per_position = (cost(1, longer) - one) / ((longer or length) - chunk)
      total += per_position * (-(-length // chunk) * chunk - chunk)
  except Exception as e:  # the compiler refused a small step: keep the counted-once figures
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return None
  return float(total[0]), float(total[1])


class NoLibtpu(errors.UserError):
  """The TPU compiler is an optional extra."""


def plan(*, model, partitioner_cfg: Mapping[str, Any], train_dataset_cfg, topology: Topology,
         optimizer=None, learning_rate=None, max_grad_norm=None, num_microbatches: int = 1,
         total_steps: int | None = None, rows_per_epoch: int | None = None,
         epochs: float | None = None) -> dict:
  """Compiles the run's train step for `topology` and returns the figures (see the module doc)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from linguamix.train import partitioning

  # Bad meshes and batches are refused before libtpu loads.
  batch_size = int(train_dataset_cfg.batch_size)
  data, fsdp, _ = partitioning.mesh_shape(topology.chips, *(
      partitioner_cfg.get(k, d) for k, d in (("data", -1), ("fsdp", 1), ("model", 1))))
  if data % topology.slices:
    raise ValueError(f"mesh data={data} is not divisible by the {topology.slices} slices "
                     "(the data axis spans the slices)")
  if batch_size % (data * fsdp * num_microbatches):
    raise ValueError(f"BATCH_SIZE={batch_size} is not divisible by the data-parallel size "
                     f"{data * fsdp} (mesh data x fsdp) x {num_microbatches} microbatches")
  partitioner = partitioning.Partitioner(devices=topology_devices(topology), **partitioner_cfg)
  step_kwargs = dict(optimizer=optimizer, learning_rate=learning_rate, max_grad_norm=max_grad_norm,
                     total_steps=total_steps)
  boxed, abstract, state, batch, lengths, train_step = _lower_inputs(
      model, partitioner, train_dataset_cfg.task_feature_lengths, batch_size, num_microbatches,
      **step_kwargs)
  rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated())
  chip = topology.chip
  mesh = dict(partitioner.mesh.shape)
  param_bytes = _shard_bytes(state["params"])
  opt_bytes = _shard_bytes(state["opt_state"])
  report: dict[str, Any] = {
      "topology": topology.name, "libtpu_topology": topology.libtpu_name, "slices": topology.slices,
      "chips": topology.chips, "chip": chip.name, "mesh": mesh,
      "batch_size": batch_size, "feature_lengths": lengths, "num_microbatches": num_microbatches,
      "optimizer": optimizer or model.default_optimizer,
      "attention": getattr(getattr(model, "config", None), "attention", None),
      "attention_impl": _attention_impl(model, partitioner.mesh.devices),
      "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract))),
      "hbm_bytes": chip.hbm_bytes,
      "memory": {"parameters": param_bytes, "optimizer_state": opt_bytes,
                 "gradients": param_bytes, "batch": _shard_bytes(batch)},
      "left_replicated": [r for r in partitioner.left_replicated(boxed) if r["bytes"] >= 2 ** 20],
  }
  try:
    compiled = train_step.lower(state, batch, rng).compile()
  except Exception as e:  # the TPU compiler's own refusal
    text = str(e)
    if "RESOURCE_EXHAUSTED" not in text:
      raise
    need = re.search(r"\(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", text)
    report["fits"] = False
    report["compiler_message"] = text.strip().splitlines()[0][:400]
    if need:
      report["memory"]["compiler_total"] = float(need.group(1)) * GiB
      report["hbm_bytes"] = float(need.group(2)) * GiB
    return report
  ma = compiled.memory_analysis()
  total = (ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
           + ma.temp_size_in_bytes + ma.generated_code_size_in_bytes)
  report["memory"].update(arguments=ma.argument_size_in_bytes, outputs=ma.output_size_in_bytes,
                          aliased=ma.alias_size_in_bytes, temporaries=ma.temp_size_in_bytes,
                          code=ma.generated_code_size_in_bytes, total=total)
  report["fits"] = total <= chip.hbm_bytes
  xla_flops, xla_bytes = _cost(compiled)
  counted = "as compiled"
  chunk = getattr(model, "logits_chunk_length", None)
  if (getattr(model.config, "scan_layers", False) or num_microbatches > 1
      or (chunk and chunk < lengths["decoder_target_tokens"])):
    # XLA counts a loop's body once: the layer scan, the logit chunks and the microbatch
    # loop are counted from small steps without them (see `_unrolled_cost`).
    unrolled = _unrolled_cost(model, partitioner, train_dataset_cfg.task_feature_lengths,
                              batch_size // num_microbatches, **step_kwargs)
    if unrolled is not None:
      xla_flops, xla_bytes = (num_microbatches * x for x in unrolled)
      counted = ("unrolled: 1- and 2-layer steps extrapolated to the model's layers and logit chunks"
                 + (f", x {num_microbatches} microbatches" if num_microbatches > 1 else ""))
    else:
      counted = ("loop bodies counted once (a small unrolled step did not compile, or the "
                 "model's layer counts differ)")
  enc, dec = model.matmul_params(abstract)
  tokens = {k: batch_size * v for k, v in lengths.items()}
  if "encoder_input_tokens" in lengths:
    dense = 6.0 * (enc * tokens["encoder_input_tokens"] + dec * tokens["decoder_target_tokens"])
  else:
    dense = 6.0 * (enc + dec) * tokens["decoder_target_tokens"]
  attention = model.attention_flops(lengths) * batch_size
  coll = collectives(compiled.as_text(), topology.chips)
  traffic = sum(c["traffic"] for c in coll.values())
  model_flops_chip = (dense + attention) / topology.chips
  t_flops = max(model_flops_chip, xla_flops) / chip.peak_flops
  t_hbm = xla_bytes / chip.hbm_bandwidth
  t_ici = traffic / chip.ici_bandwidth
  step_s = max(t_flops, t_hbm, t_ici)
  report.update(
      flops={"model_6nd": dense, "attention": attention, "xla_per_chip": xla_flops,
             "xla_bytes_accessed_per_chip": xla_bytes, "xla_counted": counted},
      collectives=coll,
      estimate={"step_seconds": step_s, "compute_seconds": t_flops, "hbm_seconds": t_hbm,
                "ici_seconds": t_ici, "bound": ("compute", "HBM", "ICI")[
                    int(np.argmax([t_flops, t_hbm, t_ici]))],
                "mfu": model_flops_chip / step_s / chip.peak_flops if step_s else None,
                "peak_flops": chip.peak_flops, "hbm_bandwidth": chip.hbm_bandwidth,
                "ici_bandwidth": chip.ici_bandwidth, "kind": "roofline estimate, not a measurement"})
  if rows_per_epoch:
    steps = math.ceil(rows_per_epoch / batch_size)
    report["epoch"] = {"packed_rows": rows_per_epoch, "steps": steps,
                       "hours": steps * step_s / 3600, "chip_hours": steps * step_s / 3600 * topology.chips}
  run_steps = total_steps or (math.ceil(epochs * rows_per_epoch / batch_size - 1e-9)
                              if epochs and rows_per_epoch else None)
  if run_steps:
    report["run"] = {"steps": run_steps, "hours": run_steps * step_s / 3600,
                     "chip_hours": run_steps * step_s / 3600 * topology.chips}
  return report


# --- output -----------------------------------------------------------------------------
def format_bytes(x: float) -> str:
  for unit, size in (("GiB", GiB), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
    if abs(x) >= size:
      return f"{x / size:.2f} {unit}"
  return f"{int(x)} B"


def does_not_fit_line(r: dict) -> str:
  m = r["memory"]
  need = m.get("total") or m.get("compiler_total")
  return (f"does not fit: {format_bytes(need)} per chip > {format_bytes(r['hbm_bytes'])} HBM of a {r['chip']} "
          f"({r['topology']}, mesh {_mesh(r)}, batch {r['batch_size']})")


def _mesh(r: dict) -> str:
  return " x ".join(f"{k} {v}" for k, v in r["mesh"].items())


def _attention_impl(model, devices) -> list[str] | None:
  """[implementation, reason] the target runs attention as (splash, cuDNN, XLA, ...)."""
  if not hasattr(model, "attention_needs"):
    return None
  from linguamix.models import attention_kernels
  return list(attention_kernels.attention_impl_for(model, attention_kernels.platform_of(devices)))


def format_report(r: dict) -> str:
  m = r["memory"]
  slices = f" x {r['slices']} slices" if r["slices"] > 1 else ""
  lines = [f"{r['topology']} ({r['libtpu_topology']}{slices}): "
           f"{r['chips']} x {r['chip']}, mesh {_mesh(r)}; {r['params']:,} parameters, "
           f"{r['optimizer']}, batch {r['batch_size']} rows x "
           + ", ".join(f"{v} {k.split('_')[0]}" for k, v in r["feature_lengths"].items()
                       if k.endswith(("input_tokens", "target_tokens")) and not k.startswith("decoder_input"))
           + " tokens"
           + (f", {r['num_microbatches']} microbatches" if r["num_microbatches"] > 1 else "")
           + (f", attention {r['attention']!r}" if r.get("attention") else ""),
           *([f"attention runs as {r['attention_impl'][0]}: {r['attention_impl'][1]}"]
             if r.get("attention_impl") else []),
           "", "memory per chip (the compiler's analysis)"]
  rows = [("parameters", m["parameters"]), ("optimizer state", m["optimizer_state"]),
          ("batch", m["batch"])]
  if "total" in m:
    rows += [("gradients (in temporaries)", m["gradients"]),
             ("activations + temporaries", m["temporaries"]),
             ("program arguments", m["arguments"]), ("total", m["total"])]
  for name, v in rows:
    lines.append(f"  {name:<28}{format_bytes(v):>12}")
  lines.append(f"  {'HBM':<28}{format_bytes(r['hbm_bytes']):>12}   "
               + ("fits" if r["fits"] else "DOES NOT FIT"))
  if "flops" in r:
    f, e = r["flops"], r["estimate"]
    lines += ["", "FLOPs per step",
              f"  model 6·N·tokens            {f['model_6nd']:.3e}",
              f"  attention (full square)     {f['attention']:.3e}",
              f"  XLA's count, per chip       {f['xla_per_chip']:.3e} (x {r['chips']} chips = "
              f"{f['xla_per_chip'] * r['chips']:.3e}; {f['xla_counted']})"]
    lines += ["", "collectives in the compiled step (per chip)"]
    for kind, c in sorted(r["collectives"].items()):
      lines.append(f"  {kind:<20}{c['count']:>6} x, {format_bytes(c['bytes'])} results, "
                   f"{format_bytes(c['traffic'])} ring traffic")
    if not r["collectives"]:
      lines.append("  none")
    lines += ["", "roofline ESTIMATE (published peaks; not a measurement)",
              f"  step time                   {e['step_seconds'] * 1e3:.1f} ms ({e['bound']}-bound: "
              f"compute {e['compute_seconds'] * 1e3:.1f}, HBM {e['hbm_seconds'] * 1e3:.1f}, "
              f"ICI {e['ici_seconds'] * 1e3:.1f} ms)",
              f"  MFU                         {100 * e['mfu']:.1f}%"
              + (" (upper bound: loops counted once)" if "once" in f["xla_counted"] else "")]
    for key, label in (("epoch", "one epoch"), ("run", "the run")):
      if key in r:
        x = r[key]
        rows_txt = f"{x['packed_rows']:,} packed rows, " if "packed_rows" in x else ""
        lines.append(f"  {label:<28}{rows_txt}{x['steps']:,} steps, {x['hours']:.2f} h, "
                     f"{x['chip_hours']:.1f} chip-hours")
  if r["left_replicated"]:
    lines += ["", "parameters the sharding rules left whole on some axis (>= 1 MiB)"]
    for t in r["left_replicated"][:20]:
      why = "; ".join(f"{n} {d} not divisible by {'x'.join(a)}" if d is not None else n
                      for n, d, a in t["dropped"])
      lines.append(f"  {t['path']} {t['shape']} {format_bytes(t['bytes'])}: {why}")
    if len(r["left_replicated"]) > 20:
      lines.append(f"  ... and {len(r['left_replicated']) - 20} more (--json lists all)")
  return "\n".join(lines)


def write_json(r: dict, path: str) -> None:
  from linguamix import atomic
  with atomic.atomic_write(path) as f:
    json.dump(r, f, indent=1, default=str)


# --- search ----------------------------------------------------------------------------
REMAT_POLICIES = ("none", "dots_with_no_batch_dims", "full")  # least recomputation first


def _divisors(n: int) -> list[int]:
  return [d for d in range(1, n + 1) if n % d == 0]


def search_space(topology: Topology, batch_size: int, remats=REMAT_POLICIES,
                 microbatches=(1, 2, 4, 8)) -> list[dict]:
  """Every (data, fsdp, model) split of the chips the batch allows, x remat policy x
  microbatches; ordered so a budget spent early has tried the usual winners: no
  microbatching, light remat, FSDP before tensor parallelism."""
  out = []
  for fsdp in _divisors(topology.chips):
    for model in _divisors(topology.chips // fsdp):
      data = topology.chips // (fsdp * model)
      if data % topology.slices:
        continue
      for mb in microbatches:
        if batch_size % (data * fsdp * mb) == 0:
          out += [{"data": data, "fsdp": fsdp, "model": model, "remat_policy": r,
                   "num_microbatches": mb} for r in remats]
  return sorted(out, key=lambda c: (c["num_microbatches"], remats.index(c["remat_policy"]),
                                    c["model"], -c["fsdp"]))


def search(make_model, topology: Topology, budget_s: float, *, progress: bool = True,
           candidates: list[dict] | None = None, **plan_kwargs) -> dict:
  """Compiles `candidates` (default: `search_space`'s) until `budget_s` is spent; returns
  those that fit, ranked by the estimated step time, and the count of what was tried."""
  import time

  from tqdm import tqdm
  if candidates is None:
    candidates = search_space(topology, int(plan_kwargs["train_dataset_cfg"].batch_size))
  t0, tried, fits = time.time(), [], []
  bar = tqdm(candidates, desc="compiling candidates", unit="candidate", disable=not progress,
             file=sys.stderr, dynamic_ncols=True)
  for c in bar:
    if time.time() - t0 > budget_s:
      break
    r = plan(model=make_model(c["remat_policy"]), topology=topology,
             partitioner_cfg={k: c[k] for k in ("data", "fsdp", "model")},
             **{**plan_kwargs, "num_microbatches": c["num_microbatches"]})
    c = {**c, "fits": r["fits"], "memory_total": r["memory"].get("total") or r["memory"].get("compiler_total"),
         "hbm_bytes": r["hbm_bytes"]}
    if r["fits"]:
      c.update(step_seconds=r["estimate"]["step_seconds"], mfu=r["estimate"]["mfu"])
      fits.append(c)
    tried.append(c)
    bar.set_postfix(fit=len(fits))
  bar.close()
  fits.sort(key=lambda c: c["step_seconds"])
  return {"topology": topology.name, "candidates": len(candidates), "tried": tried, "fits": fits,
          "seconds": time.time() - t0, "budget_s": budget_s}


def search_bindings(c: dict, config_selector: str) -> list[str]:
  return [f"--gin.partitioning.Partitioner.data={c['data']}",
          f"--gin.partitioning.Partitioner.fsdp={c['fsdp']}",
          f"--gin.partitioning.Partitioner.model={c['model']}",
          f"--gin.{config_selector}.remat_policy='{c['remat_policy']}'",
          f"--gin.trainer.train.num_microbatches={c['num_microbatches']}"]


def format_search(s: dict, config_selector: str) -> str:
  lines = [f"{s['topology']}: compiled {len(s['tried'])} of {s['candidates']} candidates in "
           f"{s['seconds']:.0f} s (budget {s['budget_s']:.0f} s); {len(s['fits'])} fit",
           "", f"{'rank':>4}  {'data':>4} {'fsdp':>4} {'model':>5}  {'remat':<24}{'micro':>5}"
           f"{'HBM use':>12}{'est. step':>12}{'est. MFU':>10}"]
  for i, c in enumerate(s["fits"], 1):
    lines.append(f"{i:>4}  {c['data']:>4} {c['fsdp']:>4} {c['model']:>5}  {c['remat_policy']:<24}"
                 f"{c['num_microbatches']:>5}{format_bytes(c['memory_total']):>12}"
                 f"{c['step_seconds'] * 1e3:>9.1f} ms{100 * c['mfu']:>9.1f}%")
  if s["fits"]:
    lines += ["", "best (roofline estimate, not a measurement): " + " ".join(search_bindings(s["fits"][0], config_selector))]
  return "\n".join(lines)


# --- a parsed run (gin configured by the command layer) ---------------------------------

def run_value(name: str, default=None, *, required: bool = False):
  """The value the parsed run passes for `trainer.train.NAME` (references called)."""
  import gin
  try:
    value = gin.query_parameter(f"trainer.train.{name}")
    if type(value).__name__ == "ConfigurableReference":
      return value.scoped_configurable_fn() if value.evaluate else value.scoped_configurable_fn
    return value
  except ValueError:
    if required:
      raise
    return default


def run_model_class() -> type:
  """The parsed run's model class (its feature converter, without building the model)."""
  import gin
  return gin.query_parameter("MODEL/macro.value").configurable.wrapped


def run_seed() -> int:
  """The run's RANDOM_SEED; 0 where the trainer would draw one (packing an epoch in
  another order changes its row count by a row or two)."""
  seed = run_value("random_seed")
  return 0 if seed is None else int(seed)


def run_settings(rows_per_epoch: int | None = None) -> dict:
  """`plan()`'s keyword arguments from the parsed run: its model (the vocabulary a stand-in:
  shapes need no tokenizer), mesh, batch, optimizer, steps or epochs."""
  import gin
  import seqio

  with gin.unlock_config():
    try:
      vocabulary = gin.query_parameter("VOCABULARY/macro.value")
    except ValueError:
      vocabulary = None
    if vocabulary is not None:
      gin.bind_parameter("VOCABULARY/macro.value", seqio.PassThroughVocabulary(size=0, eos_id=1))
    cfg = {}
    for field in ("data", "fsdp", "model", "rules"):  # the run's mesh, over the topology's chips
      try:
        cfg[field] = gin.query_parameter(f"partitioning.Partitioner.{field}")
      except ValueError:
        pass
    return dict(model=run_value("model", required=True), partitioner_cfg=cfg,
                train_dataset_cfg=run_value("train_dataset_cfg", required=True),
                optimizer=run_value("optimizer"), learning_rate=run_value("learning_rate"),
                max_grad_norm=run_value("max_grad_norm"), total_steps=run_value("total_steps"),
                rows_per_epoch=rows_per_epoch, epochs=run_value("train_epochs"),
                num_microbatches=run_value("num_microbatches", 1) or 1)
