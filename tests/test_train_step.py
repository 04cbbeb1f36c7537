"""linguamix.train.step and linguamix.train.partitioning on their own: one SGD step of a
tiny softmax-regression model against the loss, gradient and update written out by hand
in numpy; microbatches weighted by their tokens give the full batch's step; the logical
axis rules give the PartitionSpecs the mesh shape asks for, on 8 real CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from linguamix.models import losses
from linguamix.train import partitioning
from linguamix.train import step as step_lib

D, V, LR = 3, 4, 0.5


class _SoftmaxRegression:
  """logits = features @ w; the loss is the token-weighted mean cross-entropy."""

  def trainable_mask(self, params):
    del params
    return None

  def loss_fn(self, params, batch, rng):
    del rng
    logits = batch["features"] @ params["w"]
    logp = jax.nn.log_softmax(logits)
    targets = batch["decoder_target_tokens"]
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    w = losses.loss_weights(batch)
    correct = (jnp.argmax(logits, -1) == targets) * w
    return jnp.sum(nll * w) / jnp.sum(w), {"accuracy": jnp.sum(correct) / jnp.sum(w),
                                           "num_tokens": jnp.sum(w)}


def _batch(rng):
  targets = rng.integers(1, V, size=(4, 5))
  targets[0, 3:] = 0  # padding carries no loss
  targets[2, 1:] = 0
  return {"features": rng.normal(size=(4, 5, D)).astype(np.float32),
          "decoder_target_tokens": targets.astype(np.int32)}


def _reference(w, batch):
  """Loss, gradient and accuracy of the mean cross-entropy over non-padding tokens."""
  x = batch["features"].reshape(-1, D).astype(np.float64)
  y = batch["decoder_target_tokens"].reshape(-1)
  mask = (y > 0).astype(np.float64)
  logits = x @ w
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  loss = -np.sum(np.log(p[np.arange(len(y)), y]) * mask) / mask.sum()
  onehot = np.eye(V)[y]
  grad = x.T @ ((p - onehot) * mask[:, None]) / mask.sum()
  accuracy = np.sum((logits.argmax(-1) == y) * mask) / mask.sum()
  return loss, grad, accuracy


def _run_step(w0, batch, num_microbatches):
  partitioner = partitioning.Partitioner()
  tx = optax.sgd(LR)
  params = {"w": jnp.asarray(w0, jnp.float32)}
  shardings = step_lib.state_shardings(
      {"w": partitioner.replicated()}, tx, jax.eval_shape(lambda: params), partitioner)
  train_step = step_lib.make_train_step(_SoftmaxRegression(), tx, lambda s: LR, partitioner,
                                        shardings, num_microbatches)
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0)}
  new, metrics = train_step(state, partitioner.global_batch(batch),
                            jax.device_put(jax.random.PRNGKey(0), partitioner.replicated()))
  return np.asarray(new["params"]["w"]), int(new["step"]), jax.device_get(metrics)


def test_one_step_matches_the_hand_computed_loss_gradient_and_update():
  rng = np.random.default_rng(0)
  w0, batch = rng.normal(size=(D, V)), _batch(rng)
  loss, grad, accuracy = _reference(w0, batch)
  w1, step, m = _run_step(w0, batch, num_microbatches=1)
  assert step == 1
  np.testing.assert_allclose(m["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(m["grad_norm"], np.linalg.norm(grad), rtol=1e-5)
  np.testing.assert_allclose(m["accuracy"], accuracy, rtol=1e-6)
  assert m["learning_rate"] == LR
  np.testing.assert_allclose(w1, w0 - LR * grad, rtol=1e-5, atol=1e-6)


def test_microbatches_weighted_by_their_tokens_give_the_full_batch_step():
  """Microbatch m takes rows m, m+2: here 3 + 1 and 5 + 5 loss tokens, so an unweighted
  mean of the two microbatches' losses would differ from the full batch's."""
  rng = np.random.default_rng(1)
  w0, batch = rng.normal(size=(D, V)), _batch(rng)
  loss, grad, _ = _reference(w0, batch)
  w1, _, m = _run_step(w0, batch, num_microbatches=2)
  np.testing.assert_allclose(m["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(w1, w0 - LR * grad, rtol=1e-5, atol=1e-6)
  assert m["num_tokens"] == np.sum(batch["decoder_target_tokens"] > 0)  # counts are summed


def test_eval_step_returns_token_weighted_sums():
  rng = np.random.default_rng(2)
  w0, batch = rng.normal(size=(D, V)), _batch(rng)
  loss, _, accuracy = _reference(w0, batch)
  partitioner = partitioning.Partitioner()
  eval_step = step_lib.make_eval_step(_SoftmaxRegression(), partitioner,
                                      {"w": partitioner.replicated()})
  out = jax.device_get(eval_step({"w": jnp.asarray(w0, jnp.float32)}, batch))
  tokens = np.sum(batch["decoder_target_tokens"] > 0)
  assert out["tokens"] == tokens and "num_tokens" not in out
  np.testing.assert_allclose(out["loss"], loss * tokens, rtol=1e-5)
  np.testing.assert_allclose(out["accuracy"], accuracy * tokens, rtol=1e-5)


RULES = textwrap.dedent("""
    import json
    import flax.linen as nn
    import jax, jax.numpy as jnp
    import optax
    from linguamix.train import partitioning, step
    p = partitioning.Partitioner(data=2, fsdp=2, model=2)
    box = lambda shape, names: nn.LogicallyPartitioned(jax.ShapeDtypeStruct(shape, jnp.float32), names)
    boxed = {"emb": box((32, 8), ("vocab", "embed")), "wi": box((256, 384), ("embed", "mlp")),
             "attn": box((8, 6), ("embed", "heads")), "vocab7": box((7, 8), ("vocab", "embed")),
             "experts": box((4, 8, 6), ("expert", "embed", "mlp")), "bias": jnp.zeros(3)}
    sh = p.param_shardings(boxed)
    abstract = nn.unbox(boxed)
    opt = step.state_shardings(sh, optax.adafactor(1e-3), abstract, p)["opt_state"]
    wi = jax.device_put(jnp.zeros((256, 384)), sh["wi"])
    spec = lambda s: list(s.spec)  # tuples of mesh axes become JSON lists
    out = {k: spec(s) for k, s in sh.items()}
    out["opt"] = sorted({json.dumps(spec(s)) for s in jax.tree.leaves(opt)})
    out["wi_shard"] = list(wi.addressable_shards[0].data.shape)
    out["dp"] = p.data_parallel_size
    out["left"] = [r["path"] for r in p.left_replicated(boxed)]
    print(json.dumps(out))
""")


def test_logical_rules_map_to_the_expected_partition_specs():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  out = json.loads(subprocess.run([sys.executable, "-c", RULES], env=env, capture_output=True,
                                  text=True, check=True).stdout.splitlines()[-1])
  assert out["emb"] == ["model", "fsdp"]
  assert out["wi"] == ["fsdp", "model"]
  assert out["attn"] == ["fsdp", "model"]
  assert out["vocab7"] == [None, "fsdp"]  # 2 does not divide 7: left whole
  # One mesh axis shards one dimension: the experts take `model`, their mlp stays whole.
  assert out["experts"] == ["model", "fsdp", None]
  assert out["bias"] == []
  assert out["wi_shard"] == [128, 192] and out["dp"] == 4
  assert sorted(out["left"]) == ["['bias']", "['vocab7']"]
  # Adafactor's factored statistics of `wi` (256 x 384: rows, columns) keep the axis of the
  # dimension they keep; its counts are replicated.
  assert {"[]", '["fsdp"]', '["model"]'} <= set(out["opt"])


def test_mesh_shape_takes_the_rest_for_data_and_rejects_what_does_not_divide():
  assert partitioning.mesh_shape(8, -1, 2, 2) == (2, 2, 2)
  assert partitioning.mesh_shape(8, -1, 1, 1) == (8, 1, 1)
  with pytest.raises(ValueError, match="fsdp=3 x model=1 does not divide 8 devices"):
    partitioning.mesh_shape(8, -1, 3, 1)
  with pytest.raises(ValueError, match=r"data=2 x fsdp=2 x model=1 != 8 devices"):
    partitioning.mesh_shape(8, 2, 2, 1)
