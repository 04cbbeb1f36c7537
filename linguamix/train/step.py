"""The jitted train and eval steps over a sharded train state.

State: {'params', 'opt_state', 'step'}. Gradients accumulate over microbatches in a
`lax.scan`, each weighted by its share of loss-carrying tokens, so the accumulated
gradient equals the full batch's (the loss is a per-token mean).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from linguamix.models import losses
from linguamix.train import partitioning

# Per-jit XLA:CPU options of the steps (benchmarks/bench_compare.py --ynn sets them to
# compare). Empty: jaxlib's default (YNNPACK fusions), which measured fastest once the
# model's reductions became matvecs (docs/performance.md, "CPU-specific choices").
CPU_COMPILER_OPTIONS: dict = {}


def compiler_options() -> dict:
  """Per-jit XLA options for the train and eval steps on the default backend."""
  return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}


def _is_count(name: str) -> bool:
  """Metrics named num_* are counts: summed over microbatches, not averaged."""
  return name.startswith("num_")


def _grads(model, params, batch, rng):
  """Loss, metrics and gradients; with a trainable mask (LoRA) only the trainable leaves are
  differentiated (frozen ones get zeros, which their optimizer ignores), so the backward
  pass computes no weight gradient of the frozen base model."""
  mask = model.trainable_mask(params)
  if mask is None:
    (loss, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, rng)
    return loss, dict(metrics), grads
  leaves, treedef = jax.tree.flatten(params)
  keep = jax.tree.leaves(mask)

  def loss_of(trained):
    it = iter(trained)
    full = [next(it) if k else jax.lax.stop_gradient(p) for p, k in zip(leaves, keep)]
    return model.loss_fn(treedef.unflatten(full), batch, rng)

  (loss, metrics), g = jax.value_and_grad(loss_of, has_aux=True)([p for p, k in zip(leaves, keep) if k])
  it = iter(g)
  grads = treedef.unflatten([next(it) if k else jnp.zeros_like(p) for p, k in zip(leaves, keep)])
  return loss, dict(metrics), grads


def under_mesh(fn: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """`fn` traced with the mesh in context: kernels XLA cannot partition (Pallas' splash
  attention on TPU) run per shard under `shard_map` over it."""
  def traced(*args):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args)
  return traced


def make_train_step(model, tx: optax.GradientTransformation, lr_schedule: Callable,
                    partitioner: partitioning.Partitioner, state_shardings: Any,
                    num_microbatches: int = 1):
  """(state, batch, base_rng) -> (state, metrics), jitted with explicit shardings."""

  def step_fn(state, batch, base_rng):
    rng = jax.random.fold_in(base_rng, state["step"])
    params = state["params"]
    if num_microbatches == 1:
      loss, metrics, grads = _grads(model, params, batch, rng)
    else:
      # Microbatch m takes rows m, m+M, ...: each stays spread over the data axes.
      def split(x):
        x = x.reshape(x.shape[0] // num_microbatches, num_microbatches, *x.shape[1:])
        return jnp.swapaxes(x, 0, 1)
      micro = jax.tree.map(split, batch)
      tokens_M = jax.vmap(lambda b: jnp.sum(losses.loss_weights(b)))(micro)
      share_M = tokens_M / jnp.maximum(jnp.sum(tokens_M), 1.0)
      zero = jax.lax.with_sharding_constraint(
          jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params), state_shardings["params"])

      def body(acc, xs):
        mb, share, i = xs
        loss, metrics, grads = _grads(model, params, mb, jax.random.fold_in(rng, i))
        acc_grads, acc_loss, acc_metrics = acc
        acc_grads = jax.tree.map(lambda a, g: a + share * g.astype(jnp.float32), acc_grads, grads)
        acc_metrics = {k: acc_metrics[k] + (m if _is_count(k) else share * m)
                       for k, m in metrics.items()}
        return (acc_grads, acc_loss + share * loss, acc_metrics), None

      _, m0, _ = jax.eval_shape(lambda p, b, r: _grads(model, p, b, r),
                                params, jax.tree.map(lambda x: x[0], micro), rng)
      zero_metrics = jax.tree.map(lambda m: jnp.zeros(m.shape, jnp.float32), m0)
      (grads, loss, metrics), _ = jax.lax.scan(
          body, (zero, jnp.float32(0.0), zero_metrics),
          (micro, share_M, jnp.arange(num_microbatches)))
      grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    # Gradients live where their parameters do (FSDP: each device reduces its own shard).
    grads = jax.lax.with_sharding_constraint(grads, state_shardings["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_state = {"params": optax.apply_updates(params, updates), "opt_state": opt_state,
                 "step": state["step"] + 1}
    metrics = {k: jnp.mean(v) for k, v in metrics.items()}
    metrics.update(loss=loss, grad_norm=optax.global_norm(grads),
                   learning_rate=jnp.asarray(lr_schedule(state["step"]), jnp.float32))
    return new_state, metrics

  # Batches arrive as global arrays already sharded over the data axes.
  return jax.jit(under_mesh(step_fn, partitioner.mesh),
                 in_shardings=(state_shardings, None, partitioner.replicated()),
                 out_shardings=(state_shardings, partitioner.replicated()),
                 donate_argnums=(0,), compiler_options=compiler_options())


def make_eval_step(model, partitioner: partitioning.Partitioner, params_shardings: Any):
  """(params, batch) -> token-weighted (loss_sum, token count, metric sums)."""

  def eval_fn(params, batch):
    loss, metrics = model.loss_fn(params, batch, None)
    tokens = jnp.sum(losses.loss_weights(batch))
    metrics = {k: jnp.mean(v) * tokens for k, v in dict(metrics).items() if not _is_count(k)}
    return {"loss": loss * tokens, "tokens": tokens, **metrics}

  return jax.jit(under_mesh(eval_fn, partitioner.mesh), in_shardings=(params_shardings, None),
                 out_shardings=partitioner.replicated(), compiler_options=compiler_options())


def state_shardings(model_params_shardings: Any, tx: optax.GradientTransformation,
                    abstract_params: Any, partitioner: partitioning.Partitioner) -> Any:
  """Shardings of the whole state: the optimizer's statistics sharded like the parameters
  they belong to (FSDP shards Adam's moments and Adafactor's factored rows and columns
  with the weights), its counts replicated."""
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  return {"params": model_params_shardings,
          "opt_state": partitioner.like_params(abstract_params, model_params_shardings, abstract_opt),
          "step": partitioner.replicated()}
