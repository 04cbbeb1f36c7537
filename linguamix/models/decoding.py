"""Autoregressive decoding over a step function with a cache: sampling and beam search.

`step_fn(tokens_Bx1, cache, index) -> (logits_BxV, cache)` runs one position. The cache is
a pytree whose leaves have the flattened batch (batch * beams) on `cache_batch_axis`.
Decoding starts from token 0 (T5's decoder start id); after EOS a row emits padding 0.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
StepFn = Callable[[Array, Any, Array], tuple[Array, Any]]
NEG_INF = -1.0e7  # finite so that -inf arithmetic never makes NaN


def temperature_sample(step_fn: StepFn, cache, *, batch_size: int, max_length: int, eos_id: int,
                       rng: Array | None = None, temperature: float = 0.0, top_k: int = 0):
  """Samples [B, L] tokens (greedy when temperature == 0) and their summed log-probs [B]."""
  if temperature > 0 and rng is None:
    raise ValueError("temperature sampling needs an rng")
  rng = jax.random.key(0) if rng is None else rng

  def cond(state):
    i, _, _, _, done_B, _, _ = state
    return (i < max_length) & ~jnp.all(done_B)

  def body(state):
    i, tokens_BxL, cur_Bx1, cache, done_B, logp_B, rng = state
    logits_BxV, cache = step_fn(cur_Bx1, cache, i)
    logits_BxV = logits_BxV.astype(jnp.float32)
    log_probs_BxV = jax.nn.log_softmax(logits_BxV)
    rng, sub = jax.random.split(rng)
    if temperature == 0:
      next_B = jnp.argmax(logits_BxV, axis=-1)
    else:
      scaled = logits_BxV / temperature
      if top_k:
        kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
        scaled = jnp.where(scaled < kth, NEG_INF, scaled)
      next_B = jax.random.categorical(sub, scaled, axis=-1)
    next_B = jnp.where(done_B, 0, next_B).astype(jnp.int32)
    token_logp_B = jnp.take_along_axis(log_probs_BxV, next_B[:, None], axis=-1)[:, 0]
    logp_B = logp_B + jnp.where(done_B, 0.0, token_logp_B)
    tokens_BxL = jax.lax.dynamic_update_slice(tokens_BxL, next_B[:, None], (0, i))
    done_B = done_B | (next_B == eos_id)
    return i + 1, tokens_BxL, next_B[:, None], cache, done_B, logp_B, rng

  state = (jnp.array(0), jnp.zeros((batch_size, max_length), jnp.int32),
           jnp.zeros((batch_size, 1), jnp.int32), cache, jnp.zeros((batch_size,), bool),
           jnp.zeros((batch_size,), jnp.float32), rng)
  _, tokens_BxL, _, _, _, logp_B, _ = jax.lax.while_loop(cond, body, state)
  return tokens_BxL, logp_B


def brevity_penalty(alpha: float, length) -> Array:
  """T5X's length normalisation ((5 + length) / 6) ** alpha."""
  return jnp.power((5.0 + length) / 6.0, alpha)


def _gather_beams(tree, beam_idx_BxK: Array, batch_size: int, old_beams: int, axis: int):
  """Reorders flattened [B*old_beams] batch entries of every leaf by beam_idx_BxK."""
  def gather(x):
    if x.ndim <= axis:
      return x
    shape = x.shape
    x = x.reshape(shape[:axis] + (batch_size, old_beams) + shape[axis + 1:])
    idx = beam_idx_BxK.reshape((1,) * axis + beam_idx_BxK.shape + (1,) * (x.ndim - axis - 2))
    x = jnp.take_along_axis(x, idx, axis=axis + 1)
    return x.reshape(shape[:axis] + (-1,) + shape[axis + 1:])
  return jax.tree.map(gather, tree)


def beam_search(step_fn: StepFn, cache, *, batch_size: int, beam_size: int, max_length: int,
                eos_id: int, alpha: float = 0.6, cache_batch_axis: int = 0):
  """Beam search; returns tokens [B, K, L] and scores [B, K], best first.

  `cache` must already hold batch * beam_size rows (each example repeated beam_size times).
  A hypothesis finishes at EOS or at max_length; its score is its log-probability divided
  by `brevity_penalty(alpha, length)`. Stops early once no live beam can beat the
  worst finished one.
  """
  b, k, length = batch_size, beam_size, max_length

  def cond(state):
    i, _, alive_logp_BxK, _, finished_scores_BxK, _ = state
    best_possible_B = alive_logp_BxK[:, 0] / brevity_penalty(alpha, length)
    can_improve = jnp.any(best_possible_B > finished_scores_BxK[:, -1])
    return (i < length) & can_improve

  def body(state):
    i, alive_BxKxL, alive_logp_BxK, finished_BxKxL, finished_scores_BxK, cache = state
    prev_BxK = jnp.where(i == 0, 0, jax.lax.dynamic_index_in_dim(alive_BxKxL, jnp.maximum(i - 1, 0), 2, False))
    logits, cache = step_fn(prev_BxK.reshape(b * k, 1), cache, i)
    log_probs_BxKxV = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(b, k, -1)
    v = log_probs_BxKxV.shape[-1]
    cand_logp_BxKV = (alive_logp_BxK[:, :, None] + log_probs_BxKxV).reshape(b, k * v)
    # 2K candidates guarantee K that do not end here, whatever the number of EOS picks.
    top_logp_Bx2K, top_idx_Bx2K = jax.lax.top_k(cand_logp_BxKV, 2 * k)
    top_beam_Bx2K, top_token_Bx2K = top_idx_Bx2K // v, (top_idx_Bx2K % v).astype(jnp.int32)
    top_seqs_Bx2KxL = jnp.take_along_axis(alive_BxKxL, top_beam_Bx2K[:, :, None], axis=1)
    top_seqs_Bx2KxL = jax.lax.dynamic_update_slice(top_seqs_Bx2KxL, top_token_Bx2K[:, :, None], (0, 0, i))
    ends_Bx2K = (top_token_Bx2K == eos_id) | (i == length - 1)

    # Finished: merge the previous K with the candidates ending now, keep the best K.
    new_scores_Bx2K = jnp.where(ends_Bx2K, top_logp_Bx2K / brevity_penalty(alpha, i + 1), NEG_INF)
    all_scores = jnp.concatenate([finished_scores_BxK, new_scores_Bx2K], axis=1)
    all_seqs = jnp.concatenate([finished_BxKxL, top_seqs_Bx2KxL], axis=1)
    finished_scores_BxK, keep = jax.lax.top_k(all_scores, k)
    finished_BxKxL = jnp.take_along_axis(all_seqs, keep[:, :, None], axis=1)

    # Alive: the best K candidates that did not end.
    alive_cand_Bx2K = jnp.where(ends_Bx2K, NEG_INF, top_logp_Bx2K)
    alive_logp_BxK, keep = jax.lax.top_k(alive_cand_Bx2K, k)
    alive_BxKxL = jnp.take_along_axis(top_seqs_Bx2KxL, keep[:, :, None], axis=1)
    origin_BxK = jnp.take_along_axis(top_beam_Bx2K, keep, axis=1)
    cache = _gather_beams(cache, origin_BxK, b, k, cache_batch_axis)
    return i + 1, alive_BxKxL, alive_logp_BxK, finished_BxKxL, finished_scores_BxK, cache

  alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  state = (jnp.array(0), jnp.zeros((b, k, length), jnp.int32), alive_logp,
           jnp.zeros((b, k, length), jnp.int32), jnp.full((b, k), 2 * NEG_INF, jnp.float32), cache)
  _, _, _, finished_BxKxL, finished_scores_BxK, _ = jax.lax.while_loop(cond, body, state)
  return finished_BxKxL, finished_scores_BxK
