"""The one training loss of every model: T5X's cross-entropy with z-loss, and its metrics.

Both model kinds reduce their output to per-position statistics (`layers.output_logit_stats`:
log-sum-exp, target logit, argmax == target) and call `cross_entropy`, so the loss, its
normalisation and the metric names are the same whichever model trains:

  loss               (cross-entropy + z-loss [+ extra losses]) / normaliser
  cross_ent_loss     cross-entropy / normaliser
  z_loss             z_loss * sum(log Z ** 2) / normaliser
  accuracy           argmax == target over weighted positions
  num_target_tokens  sum of the loss weights (the tokens that train)
  num_tokens         all target slots, padding included (nonpadding fraction = the ratio)
  <name>             each extra loss (e.g. a router's auxiliary loss), already scaled
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

# T5X's `loss_normalizing_factor`: None sums the loss over tokens; a number divides by it;
# this name divides by the number of weighted target tokens (a per-token mean).
NUM_REAL_TARGET_TOKENS = "NUM_REAL_TARGET_TOKENS"


def loss_weights(batch: Mapping[str, Array]) -> Array:
  """`decoder_loss_weights`, else every non-padding target (T5X's default), as float32."""
  weights = batch.get("decoder_loss_weights")
  if weights is None:
    weights = batch["decoder_target_tokens"] > 0
  return weights.astype(jnp.float32)


def cross_entropy(lse_BxL: Array, target_logit_BxL: Array, correct_BxL: Array, weights_BxL: Array, *,
                  z_loss: float = 0.0, normalizer: float | str | None = NUM_REAL_TARGET_TOKENS,
                  extra_losses: Mapping[str, Array] | None = None) -> tuple[Array, dict[str, Array]]:
  """(loss, metrics) from per-position statistics; see the module docstring for the names."""
  num_target_tokens = jnp.sum(weights_BxL)
  if normalizer is None:
    denominator = jnp.asarray(1.0, jnp.float32)
  elif normalizer == NUM_REAL_TARGET_TOKENS:
    denominator = jnp.maximum(num_target_tokens, 1.0)
  else:
    denominator = jnp.asarray(float(normalizer), jnp.float32)
  xent = jnp.sum((lse_BxL - target_logit_BxL) * weights_BxL) / denominator
  z = jnp.sum(z_loss * jnp.square(lse_BxL) * weights_BxL) / denominator
  extra = dict(extra_losses or {})
  loss = xent + z + sum(extra.values())
  metrics = {
      "loss": loss,
      "cross_ent_loss": xent,
      "z_loss": z,
      "accuracy": jnp.sum(correct_BxL * weights_BxL) / jnp.maximum(num_target_tokens, 1.0),
      "num_target_tokens": num_target_tokens,
      "num_tokens": jnp.asarray(weights_BxL.size, jnp.float32),
      **extra,
  }
  return loss, metrics


def sequence_log_likelihood(lse_BxL: Array, target_logit_BxL: Array, weights_BxL: Array) -> Array:
  """Per-example summed target log-probability, weighted, without z-loss [B] (`score_batch`)."""
  return jnp.sum((target_logit_BxL - lse_BxL) * weights_BxL, axis=-1)
