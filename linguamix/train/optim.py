"""optax optimizers and learning-rate schedules, gin-configurable.

`adafactor` is configured as T5X configures it for mT5 (decay_rate 0.8, parameter-scale
updates, update clipping 1.0, no momentum); `adamw` is the decoders' optimizer.
Schedules: linear warmup, then constant, rsqrt (T5 pretraining) or cosine decay.
Frozen parameters (LoRA) get no update and no optimizer state.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax._src import base, factorized  # its message, factoring rule and decay schedule, reused as they are


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
  """T5X's mT5 Adafactor (factored second moments, epsilon 1e-30 / 1e-3).

  `optax.adafactor`'s chain and state, with its first link (`optax.scale_by_factored_rms`)
  computing the factored means as matvecs (`_mean`) and the parameter scale taking one
  pass over each parameter (`scale_by_param_block_rms`); `tests/test_optim.py` checks the
  updates against optax's own over several steps.
  """
  tx = [scale_by_factored_rms(decay_rate=decay_rate, min_dim_size_to_factor=min_dim_size_to_factor,
                              epsilon=1e-30)]
  if clipping_threshold is not None:
    tx.append(optax.clip_by_block_rms(clipping_threshold))
  tx.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
  if multiply_by_parameter_scale:
    tx.append(scale_by_param_block_rms())
  if momentum is not None:
    tx.append(optax.ema(momentum, debias=False))
  tx.append(optax.scale(-1))
  return optax.chain(*tx)


def _mean(x: jax.Array, axis: int) -> jax.Array:
  """`jnp.mean(x, axis)` as ones @ x: as a reduction over a leading axis with a wide output
  (the column statistics of mT5's [512, 250112] output kernel) XLA:CPU ran at ~100M
  elements/s, ~1.2 s of a 5.7 s mt5_small step; a matvec reads it at the speed of a dot."""
  ones = jnp.ones((x.shape[axis],), x.dtype)
  total = jnp.tensordot(ones, x, axes=([0], [axis]), precision=jax.lax.Precision.HIGHEST)
  return total / x.shape[axis]


def scale_by_param_block_rms(min_scale: float = 1e-3) -> optax.GradientTransformation:
  """`optax.scale_by_param_block_rms`'s values and (empty) state in one pass per parameter.

  optax's `safe_root_mean_squares` is written to be differentiable at 0: it takes the mean
  square twice, the second time over `where(rms <= min, 1, p)`, a select the size of the
  parameter; an optimizer is never differentiated, and on large embeddings the extra
  passes cost a noticeable share of the step (docs/performance.md).
  """
  def update(updates, state, params):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG)
    scale = lambda p: jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(p))), min_scale)  # noqa: E731
    return jax.tree.map(lambda u, p: u * scale(p), updates, params), state

  return optax.GradientTransformation(optax.init_empty_state, update)


class _Update(NamedTuple):
  update: jax.Array
  v_row: jax.Array
  v_col: jax.Array
  v: jax.Array


def scale_by_factored_rms(decay_rate: float = 0.8, min_dim_size_to_factor: int = 128,
                          epsilon: float = 1e-30) -> optax.GradientTransformation:
  """`optax.scale_by_factored_rms` (same state, same arithmetic) with `_mean` for its means."""
  reference = optax.scale_by_factored_rms(decay_rate=decay_rate, min_dim_size_to_factor=min_dim_size_to_factor,
                                          epsilon=epsilon)

  def update(grads, state, params):
    decay_t = factorized._decay_rate_pow(state.count, decay_rate)

    def one(grad, v_row, v_col, v, param):
      placeholder = jnp.zeros((1,), param.dtype)
      grad_sqr = jnp.square(grad) + epsilon
      dims = factorized._factored_dims(param.shape, True, min_dim_size_to_factor)
      if dims is None:
        new_v = (decay_t * v + (1.0 - decay_t) * grad_sqr).astype(param.dtype)
        return _Update(grad * new_v ** -0.5, placeholder, placeholder, new_v)
      d1, d0 = dims
      new_v_row = (decay_t * v_row + (1.0 - decay_t) * _mean(grad_sqr, d0)).astype(param.dtype)
      new_v_col = (decay_t * v_col + (1.0 - decay_t) * _mean(grad_sqr, d1)).astype(param.dtype)
      reduced_d1 = d1 - 1 if d1 > d0 else d1
      row_factor = (new_v_row / jnp.mean(new_v_row, axis=reduced_d1, keepdims=True)) ** -0.5
      col_factor = new_v_col ** -0.5
      u = grad * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
      return _Update(u, new_v_row, new_v_col, placeholder)

    out = jax.tree.map(one, grads, state.v_row, state.v_col, state.v, params)
    pick = lambda field: jax.tree.map(lambda o: getattr(o, field), out,  # noqa: E731
                                      is_leaf=lambda x: isinstance(x, _Update))
    return pick("update"), state._replace(count=optax.safe_increment(state.count),
                                          v_row=pick("v_row"), v_col=pick("v_col"), v=pick("v"))

  return optax.GradientTransformation(reference.init, update)


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
