"""LoRA: low-rank adapters on the projections a regex selects, and their merge.

With `DecoderConfig.lora = LoraConfig(targets=r"attention/(query|value)", rank=8)`
every selected `Dense` adds `x A B * alpha / rank` (A [in.., r], B [r, out..], B zero
at init, so the model starts equal to its base). Adapter params live next to their
kernel as `.../query/lora/{a,b}`; `DecoderOnlyModel.trainable_mask` marks them, and the
trainer's optimizer (`optim.build(trainable=...)`) keeps state for them only.

  split_params / combine_params   trainable adapters vs. frozen base
  add_adapters(base, model, rng)  fresh adapters next to a converted base checkpoint
  merge(params, lora)             base weights with the adapters folded in

PEFT export is `linguamix.models.hf.peft` (it needs the architecture's tensor table).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ADAPTER = "lora"  # the adapter's module name under its projection


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """`targets` is searched (re.search) in a projection's module path, e.g.
  "layers_3/attention/query" (or "layers/attention/query" under scan): r"attention/(query|value)",
  r"attention/|mlp/" (all projections), r"layers_(0|1)/attention/query"."""

  targets: str = r"attention/(query|value)"
  rank: int = 8
  alpha: float = 16.0
  dropout: float = 0.0

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def applies_to(self, module_path: tuple[str, ...]) -> bool:
    return re.search(self.targets, "/".join(module_path)) is not None


class LoraAdapter(nn.Module):
  config: LoraConfig
  features: tuple[int, ...]
  axes: tuple[str, ...]  # the adapted kernel's logical axes (inputs, then outputs)
  in_dims: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    in_shape = tuple(x.shape[-self.in_dims:])
    fan_in = int(np.prod(in_shape))
    a = self.param("a", nn.with_logical_partitioning(
        nn.initializers.normal(fan_in ** -0.5), self.axes[:self.in_dims] + (None,)),
        in_shape + (cfg.rank,), self.param_dtype)
    b = self.param("b", nn.with_logical_partitioning(
        nn.initializers.zeros, (None,) + self.axes[self.in_dims:]),
        (cfg.rank,) + tuple(self.features), self.param_dtype)
    x = nn.Dropout(cfg.dropout)(x, deterministic=self.deterministic)
    h = jnp.tensordot(x.astype(self.dtype), a.astype(self.dtype), axes=self.in_dims)
    return jnp.tensordot(h, b.astype(self.dtype), axes=1) * jnp.asarray(cfg.scale, self.dtype)


def is_adapter(path: tuple) -> bool:
  keys = [getattr(k, "key", k) for k in path]
  return ADAPTER in keys[:-1]


def trainable_mask(params: Any) -> Any:
  """Tree of bools like `params`: True on adapter leaves."""
  return jax.tree_util.tree_map_with_path(lambda p, _: is_adapter(p), params)


def split_params(params: dict) -> tuple[dict, dict]:
  """(adapters, frozen base) as two nested dicts."""
  flat = flax.traverse_util.flatten_dict(params)
  adapters = {k: v for k, v in flat.items() if ADAPTER in k[:-1]}
  frozen = {k: v for k, v in flat.items() if ADAPTER not in k[:-1]}
  return flax.traverse_util.unflatten_dict(adapters), flax.traverse_util.unflatten_dict(frozen)


def combine_params(adapters: dict, frozen: dict) -> dict:
  return flax.traverse_util.unflatten_dict({**flax.traverse_util.flatten_dict(frozen),
                                            **flax.traverse_util.flatten_dict(adapters)})


def add_adapters(base_params: dict, model, rng: jax.Array, length: int = 8) -> dict:
  """Base params (e.g. from `linguamix convert`) plus freshly initialised adapters of `model`."""
  variables = jax.jit(lambda r: model.init_variables(r, {"decoder_input_tokens": (1, length)}))(rng)
  adapters, _ = split_params(nn.meta.unbox(variables)["params"])
  return combine_params(adapters, base_params)


def merge(params: dict, lora: LoraConfig) -> dict:
  """Params without adapters, each adapted kernel replaced by kernel + A B * scale."""
  adapters, base = split_params(params)
  flat = flax.traverse_util.flatten_dict(base)
  for module, (a, b) in _adapter_pairs(adapters).items():
    kernel = flat[module + ("kernel",)]
    delta = lambda a_, b_: jnp.tensordot(a_, b_, axes=1)  # noqa: E731
    if module[0] == "layers":  # scanned: a leading layers axis on kernel, a and b
      delta = jax.vmap(delta)
    flat[module + ("kernel",)] = (kernel + delta(a, b) * lora.scale).astype(kernel.dtype)
  return flax.traverse_util.unflatten_dict(flat)


def _adapter_pairs(adapters: dict) -> dict[tuple, tuple]:
  """module path (without the adapter name) -> (a, b)."""
  flat = flax.traverse_util.flatten_dict(adapters)
  return {k[:-2]: (flat[k[:-1] + ("a",)], flat[k[:-1] + ("b",)]) for k in flat if k[-1] == "a"}
