"""One mesh ('data', 'fsdp', 'model'), one logical-axis rule table, NamedShardings.

The same code runs on one CPU, 8 simulated devices, a GPU or a TPU pod: `jax.jit` with
explicit `NamedSharding`s (no pjit, no `with mesh:`). Host batches become one global
array with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")

# Logical axis -> mesh axis (T5X's 2-D rules: `embed` over fsdp is FSDP).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("vocab", "model"),
    ("layers", None),
    ("relpos_buckets", None),
    # Expert parallelism on the tensor-parallel axis: each `model` shard holds E / model
    # experts (their `mlp` axis then stays whole: one mesh axis shards one dim). Where
    # `model` does not divide the expert count, the experts are split along `mlp` instead.
    ("expert", "model"),
)


def mesh_shape(n: int, data: int, fsdp: int, model: int) -> tuple[int, int, int]:
  """(data, fsdp, model) over n devices; data=-1 takes the rest."""
  if data == -1:
    if n % (fsdp * model):
      raise ValueError(f"fsdp={fsdp} x model={model} does not divide {n} devices")
    data = n // (fsdp * model)
  if data * fsdp * model != n:
    raise ValueError(f"mesh data={data} x fsdp={fsdp} x model={model} != {n} devices")
  return data, fsdp, model


def _device_grid(devices: list, shape: tuple[int, int, int]) -> np.ndarray:
  if devices[0].platform != "tpu":
    return np.asarray(devices).reshape(shape)
  slices = len({getattr(d, "slice_index", 0) for d in devices})
  if slices == 1:
    return mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
  if shape[0] % slices:
    raise ValueError(f"mesh data={shape[0]} is not divisible by the {slices} slices "
                     "(the data axis spans the slices)")
  return mesh_utils.create_hybrid_device_mesh(
      (shape[0] // slices, *shape[1:]), (slices, 1, 1), devices, allow_split_physical_axes=True)


def _path_key(path) -> tuple[str, ...]:
  return tuple(str(k) for k in path)


def _spec_like(shape: tuple[int, ...], param_shape: tuple[int, ...], param_spec: P, mesh: Mesh) -> P:
  """The spec of a statistic of shape `shape` of a parameter sharded `param_spec`: the
  parameter's own when the shapes agree; with one dimension reduced away (a factored
  second moment), the spec without that dimension's entry (of several candidates, the
  one that leaves the least per device); scalars and placeholders replicated."""
  entries = tuple(param_spec) + (None,) * (len(param_shape) - len(param_spec))
  if tuple(shape) == tuple(param_shape):
    return P(*entries)
  if len(shape) != len(param_shape) - 1 or not shape:
    return P()

  def size(entry) -> int:
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return int(np.prod([mesh.shape[a] for a in axes]))

  best = None
  for i in range(len(param_shape)):
    if tuple(param_shape[:i] + param_shape[i + 1:]) == tuple(shape):
      rest = entries[:i] + entries[i + 1:]
      shards = int(np.prod([size(e) for e in rest]))
      if best is None or shards > best[0]:
        best = (shards, rest)
  return P(*best[1]) if best else P()


@dataclasses.dataclass
class Partitioner:
  """Mesh shape and rules. `data=-1` takes all devices not used by fsdp x model.

  `devices`: the devices to lay the mesh over (default `jax.devices()`; `linguamix plan`
  passes a TPU topology's). On TPUs the mesh follows the physical torus
  (`mesh_utils.create_device_mesh`), and over several slices the data axis spans them
  (the data-center network carries only the data-parallel gradient reduction)."""

  data: int = -1
  fsdp: int = 1
  model: int = 1
  rules: tuple[tuple[str, Any], ...] = DEFAULT_RULES
  devices: Any = None

  def __post_init__(self):
    devices = list(jax.devices() if self.devices is None else self.devices)
    shape = mesh_shape(len(devices), self.data, self.fsdp, self.model)
    self.mesh = Mesh(_device_grid(devices, shape), ("data", "fsdp", "model"))
    self._rules = dict(self.rules)

  @property
  def data_parallel_size(self) -> int:
    return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

  def _mesh_spec(self, logical: tuple | None, shape: tuple[int, ...]) -> P:
    """Logical names -> PartitionSpec; an axis that does not divide its dim is dropped."""
    return self._spec_and_dropped(logical, shape)[0]

  def _spec_and_dropped(self, logical: tuple | None, shape: tuple[int, ...]):
    """(spec, [(logical name, dim, mesh axes)] the rules asked for but could not use)."""
    if logical is None:
      return P(), []
    out, used, dropped = [], set(), []
    for name, dim in zip(logical, shape):
      axes = self._rules.get(name)
      axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
      axes = tuple(a for a in axes if a not in used and self.mesh.shape[a] > 1)
      size = int(np.prod([self.mesh.shape[a] for a in axes])) if axes else 1
      if not axes or dim % size:
        out.append(None)
        if axes:
          dropped.append((name, dim, axes))
        continue
      used.update(axes)
      out.append(axes if len(axes) > 1 else axes[0])
    return P(*out), dropped

  def left_replicated(self, boxed_abstract: Any) -> list[dict]:
    """Parameters whose rules named a mesh axis the dimension does not divide (so that
    dimension is whole on every device), and parameters with no logical axes at all."""
    out = []
    for path, x in jax.tree_util.tree_flatten_with_path(
        boxed_abstract, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))[0]:
      if isinstance(x, nn.LogicallyPartitioned):
        spec, dropped = self._spec_and_dropped(tuple(x.names), x.value.shape)
        value = x.value
      else:
        spec, dropped, value = P(), [("(no logical axes)", None, ())], x
      if dropped:
        out.append({"path": jax.tree_util.keystr(path), "shape": tuple(value.shape),
                    "bytes": int(np.prod(value.shape)) * np.dtype(value.dtype).itemsize,
                    "spec": str(spec), "dropped": dropped})
    return out

  def param_shardings(self, boxed_abstract: Any) -> Any:
    """NamedShardings for a tree of (abstract) values boxed with nn.LogicallyPartitioned."""
    def one(x):
      if isinstance(x, nn.LogicallyPartitioned):
        return NamedSharding(self.mesh, self._mesh_spec(tuple(x.names), x.value.shape))
      return NamedSharding(self.mesh, P())
    return jax.tree.map(one, boxed_abstract,
                        is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))

  def like_params(self, abstract_params: Any, param_shardings: Any, tree: Any) -> Any:
    """NamedShardings for `tree` (an optimizer state) from the params' own.

    Optimizer states hold copies of the parameter tree (Adam's moments) or per-parameter
    statistics (Adafactor's factored rows and columns): a leaf whose key path ends with a
    parameter's path takes that parameter's sharding, with the mesh axes of the
    dimensions it lacks dropped; counts, placeholders and anything else are replicated.
    (`jax.jit(tx.init)` cannot tell: its zeros depend on no input, so XLA replicates them.)
    """
    by_path = {_path_key(p): (x.shape, s.spec) for (p, x), s in zip(
        jax.tree_util.tree_flatten_with_path(abstract_params)[0], jax.tree.leaves(param_shardings))}

    def one(path, leaf):
      key = _path_key(path)
      for k in range(len(key)):  # the longest suffix that is a parameter's path
        if key[k:] in by_path:
          return NamedSharding(self.mesh, _spec_like(np.shape(leaf), *by_path[key[k:]], self.mesh))
      return self.replicated()

    return jax.tree_util.tree_map_with_path(one, tree)

  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def batch_sharding(self, ndim: int) -> NamedSharding:
    return NamedSharding(self.mesh, P(BATCH_AXES, *([None] * (ndim - 1))))

  def global_batch(self, host_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """This host's rows -> global arrays sharded over the data axes."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding(v.ndim), v)
            for k, v in host_batch.items()}
