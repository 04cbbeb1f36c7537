"""Shared pieces of the decoder's layers: projections, norms, activations."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from linguamix.models import layers
from linguamix.models import lora as lora_lib
from linguamix.models.decoder_config import DecoderConfig

Array = jax.Array
ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}

INIT = nn.initializers.normal(stddev=0.02)


class Dense(nn.Module):
  """Projection contracting the last `in_dims` axes; the kernel carries logical axis names."""

  features: tuple[int, ...]
  axes: tuple[str, ...]  # names of the kernel: contracted input axes, then output axes
  in_dims: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  lora: lora_lib.LoraConfig | None = None
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(INIT, self.axes),
        tuple(x.shape[-self.in_dims:]) + tuple(self.features), self.param_dtype)
    y = layers.project(x.astype(self.dtype), kernel.astype(self.dtype), self.in_dims)
    if self.lora is not None and self.lora.applies_to(self.path):
      y = y + lora_lib.LoraAdapter(self.lora, self.features, self.axes, self.in_dims, self.dtype,
                                   self.param_dtype, self.deterministic, name="lora")(x)
    if self.use_bias:
      bias = self.param(
          "bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[self.in_dims:]),
          tuple(self.features), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def norm(cfg: DecoderConfig, name: str) -> nn.Module:
  if cfg.norm == "rms":
    return layers.RMSNorm(epsilon=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                          scale_offset=cfg.norm_scale_offset, name=name)
  if cfg.norm == "layer":
    return nn.LayerNorm(
        epsilon=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=name,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))
  raise ValueError(f"DecoderConfig.norm must be 'rms' or 'layer', got {cfg.norm!r}")
