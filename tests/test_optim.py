"""linguamix's Adafactor against optax's own, and its state tree unchanged (checkpoints)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from linguamix.train import optim


def _params():
  k = jax.random.split(jax.random.key(0), 4)
  return {"wide": jax.random.normal(k[0], (130, 300)),  # factored; column stats over axis 0
          "tall": jax.random.normal(k[1], (300, 4, 130)),  # factored over the two largest axes
          "small": jax.random.normal(k[2], (8, 200)),  # below min_dim_size_to_factor: full v
          "bias": jax.random.normal(k[3], (300,))}


def _run(tx, params, steps=4):
  state = tx.init(params)
  for i in range(steps):
    grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1)) * 1e-2, params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_adafactor_matches_optax_adafactor_over_steps():
  params = _params()
  reference = optax.adafactor(learning_rate=optax.constant_schedule(1e-2), decay_rate=0.8, decay_offset=0,
                              clipping_threshold=1.0, multiply_by_parameter_scale=True,
                              min_dim_size_to_factor=128, momentum=None, eps=1e-30)
  ours = optim.build("adafactor", optax.constant_schedule(1e-2))
  ours_params, ours_state = _run(ours, params)
  ref_params, ref_state = _run(reference, params)
  assert jax.tree.structure(ours_state) == jax.tree.structure(ref_state)
  for a, b in zip(jax.tree.leaves(ours_state), jax.tree.leaves(ref_state)):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=0)
  moved = jax.tree.map(lambda a, p: float(jnp.max(jnp.abs(a - p))), ours_params, params)
  assert min(moved.values()) > 1e-4  # the steps changed every parameter
  for name in params:
    np.testing.assert_allclose(ours_params[name], ref_params[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_factored_mean_is_the_mean_over_any_axis():
  x = jax.random.uniform(jax.random.key(1), (5, 7, 9))
  for axis in range(3):
    np.testing.assert_allclose(optim._mean(x, axis), jnp.mean(x, axis=axis), rtol=1e-6)
