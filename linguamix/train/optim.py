"""optax optimizers and learning-rate schedules, gin-configurable.

`adafactor` is configured as T5X configures it for mT5 (decay_rate 0.8, parameter-scale
updates, update clipping 1.0, no momentum); `adamw` is the decoders' optimizer.
Schedules: linear warmup, then constant, rsqrt (T5 pretraining) or cosine decay.
Frozen parameters (LoRA) get no update and no optimizer state.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


class NeedsTotalSteps:
  """A decaying schedule whose end is known only once TRAIN_EPOCHS is counted."""

  def __init__(self, **kwargs):
    self.kwargs = kwargs

  def at(self, total_steps: int) -> optax.Schedule:
    return schedule(**self.kwargs, total_steps=total_steps)


def schedule(
    kind: str = "constant",
    base_learning_rate: float = 1e-3,
    warmup_steps: int = 0,
    total_steps: int | None = None,
    final_fraction: float = 0.0,
) -> optax.Schedule:
  """`constant` (T5X fine-tuning: 1e-3), `rsqrt` (base / sqrt(max(step, warmup)), T5X
  pretraining with base 1.0 and 10k warmup), or `cosine` (decay to final_fraction * base
  at total_steps). Linear warmup for constant and cosine."""
  if kind == "rsqrt":
    warm = max(warmup_steps, 1)
    return lambda step: base_learning_rate / jnp.sqrt(jnp.maximum(step, warm).astype(jnp.float32))
  if kind == "constant":
    main = optax.constant_schedule(base_learning_rate)
  elif kind == "cosine":
    if not total_steps:  # TRAIN_STEPS unset: the trainer completes it from TRAIN_EPOCHS
      return NeedsTotalSteps(kind=kind, base_learning_rate=base_learning_rate,
                             warmup_steps=warmup_steps, final_fraction=final_fraction)
    main = optax.cosine_decay_schedule(
        base_learning_rate, max(total_steps - warmup_steps, 1), alpha=final_fraction)
  else:
    raise ValueError(f"unknown learning-rate schedule {kind!r} (constant, rsqrt, cosine)")
  if not warmup_steps:
    return main
  warm = optax.linear_schedule(0.0, base_learning_rate, warmup_steps)
  return optax.join_schedules([warm, main], [warmup_steps])


def adafactor(learning_rate: optax.ScalarOrSchedule = 1e-3, decay_rate: float = 0.8,
              clipping_threshold: float = 1.0, multiply_by_parameter_scale: bool = True,
              min_dim_size_to_factor: int = 128, momentum: float | None = None):
  """T5X's mT5 Adafactor (factored second moments, epsilon 1e-30 / 1e-3)."""
  return optax.adafactor(
      learning_rate=learning_rate, decay_rate=decay_rate, decay_offset=0,
      clipping_threshold=clipping_threshold,
      multiply_by_parameter_scale=multiply_by_parameter_scale,
      min_dim_size_to_factor=min_dim_size_to_factor, momentum=momentum, eps=1e-30)


def adamw(learning_rate: optax.ScalarOrSchedule = 1e-4, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.01):
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


def build(
    name: str,
    lr_schedule: optax.Schedule,
    *,
    max_grad_norm: float | None = None,
    trainable: Any = None,
    **optimizer_kwargs,
) -> optax.GradientTransformation:
  """The optimizer `name` (adafactor | adamw) on the schedule, after optional global-norm
  clipping; `trainable` (a tree of bools like the params) freezes the False leaves."""
  makers: dict[str, Callable[..., optax.GradientTransformation]] = {
      "adafactor": adafactor, "adamw": adamw}
  if name not in makers:
    raise ValueError(f"unknown optimizer {name!r} (adafactor, adamw)")
  tx = makers[name](learning_rate=lr_schedule, **optimizer_kwargs)
  if max_grad_norm:
    tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
  if trainable is not None:
    labels = jax.tree.map(lambda t: "train" if t else "freeze", trainable)
    tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
  return tx
