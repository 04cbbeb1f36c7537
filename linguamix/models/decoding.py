"""Autoregressive decoding for both model kinds: greedy, sampling (temperature, top-k,
top-p) and beam search, each returning scores with its predictions.

The step-function contract: `step_fn(tokens_Bx1, cache, step) -> (logits_BxV, cache)`
feeds the token emitted at output step `step - 1` and returns the logits of output step
`step`. B is the flattened batch (examples * beams); the cache is a pytree whose leaves
carry B on `cache_batch_axis`. Where a row's token sits in its sequence is the step
function's business: the encoder-decoder writes every row at `step`, the decoder-only
model at its own prompt length + step - 1 (kept in the step function's closure).

Output step 0 comes from `first_logits_BxV` when the caller has them (a decoder-only
model's prompt prefill ends with them), else from `step_fn(0s, cache, 0)` (T5's decoder
start id 0). A row ends at EOS (its later slots hold 0) or after `max_steps_B` tokens.
Scores are model log-probabilities (unscaled by temperature, unfiltered by top-k/top-p)
summed over the emitted tokens, EOS included; beam search divides them by
`brevity_penalty(alpha, length)`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

Array = jax.Array
StepFn = Callable[[Array, Any, Array], tuple[Array, Any]]
NEG_INF = -1.0e7  # finite so that -inf arithmetic never makes NaN
DECODE_METHODS = ("greedy", "sample", "beam")
# Options that only one method reads: naming one per call under another method is an error,
# so that e.g. `temperature=0.7` without `decode_method="sample"` cannot silently decode greedily.
_METHOD_ONLY_OPTIONS = {"sample": ("temperature", "top_k", "top_p"), "beam": ("beam_size", "alpha")}


def decode_options(*, decode_method: str = "greedy", beam_size: int = 4, alpha: float = 0.6,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   eos_id: int | None = None) -> dict[str, Any]:
  """Checked decode options, the defaults both models' constructors share.

  eos_id None: the vocabulary's; a negative id never matches, so rows run to full length.
  """
  if decode_method not in DECODE_METHODS:
    raise ValueError(f"decode_method={decode_method!r}; expected one of {DECODE_METHODS}")
  if beam_size < 1:
    raise ValueError(f"beam_size={beam_size}; expected >= 1")
  if temperature < 0:
    raise ValueError(f"temperature={temperature}; expected >= 0 (0: greedy)")
  if top_k < 0:
    raise ValueError(f"top_k={top_k}; expected >= 0 (0: no top-k cut)")
  if not 0 < top_p <= 1:
    raise ValueError(f"top_p={top_p}; expected 0 < top_p <= 1 (1: no nucleus cut)")
  return dict(decode_method=decode_method, beam_size=beam_size, alpha=alpha, temperature=temperature,
              top_k=top_k, top_p=top_p, eos_id=eos_id)


def resolve_options(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
  """The constructor's defaults updated by one call's decode_kwargs, checked."""
  unknown = set(overrides) - set(defaults)
  if unknown:
    raise TypeError(f"unknown decode options {sorted(unknown)}; known: {sorted(defaults)}")
  opts = decode_options(**{**defaults, **overrides})
  method = opts["decode_method"]
  for other, names in _METHOD_ONLY_OPTIONS.items():
    given = sorted(set(names) & set(overrides))
    if other != method and given:
      raise ValueError(f"decode options {given} apply to decode_method={other!r}, but it is {method!r}")
  return opts


def num_beams(opts: Mapping[str, Any]) -> int:
  """Rows per example the cache and the step function's state must have for `decode`."""
  return opts["beam_size"] if opts["decode_method"] == "beam" else 1


def repeat_beams(tree, k: int, axis: int = 0):
  """Repeats every leaf's batch entries k times along `axis` ([B] -> [B*k], each row k times)."""
  return tree if k == 1 else jax.tree.map(lambda x: jnp.repeat(x, k, axis=axis), tree)


def top_p_filter(logits_BxV: Array, top_p: float) -> Array:
  """Keeps the nucleus: the fewest most probable tokens whose mass reaches top_p (ties at the
  cut stay, the most probable token always stays); the others get NEG_INF."""
  sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  # a token stays while the mass strictly above it is short of top_p
  keep_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV < top_p
  threshold_Bx1 = jnp.min(jnp.where(keep_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_BxV < threshold_Bx1, NEG_INF, logits_BxV)


def _next_logits(step_fn, first_logits_BxV, prev_Bx1, cache, i):
  if first_logits_BxV is None:
    return step_fn(prev_Bx1, cache, i)
  return jax.lax.cond(i == 0, lambda c: (first_logits_BxV.astype(jnp.float32), c),
                      lambda c: _as_f32(step_fn(prev_Bx1, c, i)), cache)


def _as_f32(out):
  logits, cache = out
  return logits.astype(jnp.float32), cache


def _max_steps(max_steps_B, batch_size, max_length):
  if max_steps_B is None:
    return jnp.full((batch_size,), max_length, jnp.int32)
  return jnp.minimum(max_steps_B.astype(jnp.int32), max_length)


def temperature_sample(step_fn: StepFn, cache, *, batch_size: int, max_length: int, eos_id: int,
                       rng: Array | None = None, temperature: float = 0.0, top_k: int = 0,
                       top_p: float = 1.0, first_logits_BxV: Array | None = None,
                       max_steps_B: Array | None = None):
  """Samples [B, L] tokens (greedy when temperature == 0) and their summed log-probs [B].

  Temperature scales the logits, then top-k keeps the k largest, then top-p the nucleus.
  """
  if temperature > 0 and rng is None:
    raise ValueError("temperature sampling needs an rng")
  rng = jax.random.key(0) if rng is None else rng
  max_steps_B = _max_steps(max_steps_B, batch_size, max_length)

  def cond(state):
    i, _, _, _, done_B, _, _ = state
    return (i < max_length) & ~jnp.all(done_B)

  def body(state):
    i, tokens_BxL, prev_Bx1, cache, done_B, logp_B, rng = state
    logits_BxV, cache = _next_logits(step_fn, first_logits_BxV, prev_Bx1, cache, i)
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
      if top_p < 1.0:
        scaled = top_p_filter(scaled, top_p)
      next_B = jax.random.categorical(sub, scaled, axis=-1)
    next_B = jnp.where(done_B, 0, next_B).astype(jnp.int32)
    token_logp_B = jnp.take_along_axis(log_probs_BxV, next_B[:, None], axis=-1)[:, 0]
    logp_B = logp_B + jnp.where(done_B, 0.0, token_logp_B)
    tokens_BxL = jax.lax.dynamic_update_slice(tokens_BxL, next_B[:, None], (0, i))
    done_B = done_B | (next_B == eos_id) | (i + 1 >= max_steps_B)
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
                eos_id: int, alpha: float = 0.6, cache_batch_axis: int = 0,
                first_logits_BxV: Array | None = None, max_steps_B: Array | None = None):
  """Beam search (T5X's); returns tokens [B, K, L] and scores [B, K], best first.

  `cache` (and `first_logits_BxV`, [B*K, V]) must already hold batch * beam_size rows, each
  example repeated beam_size times (`repeat_beams`). Each step takes the 2K best
  continuations of the K live beams; those ending in EOS (any of the 2K) join the finished
  pool, the best K others live on. A hypothesis also finishes after max_steps_B tokens; its
  score is its log-probability divided by `brevity_penalty(alpha, length)`. A row stops once
  no live beam can beat its worst finished one.
  """
  b, k, length = batch_size, beam_size, max_length
  max_steps_B = _max_steps(max_steps_B, b, length)

  def cond(state):
    i, _, alive_logp_BxK, _, finished_scores_BxK, _ = state
    best_possible_B = alive_logp_BxK[:, 0] / brevity_penalty(alpha, max_steps_B)
    can_improve_B = (i < max_steps_B) & (best_possible_B > finished_scores_BxK[:, -1])
    return (i < length) & jnp.any(can_improve_B)

  def body(state):
    i, alive_BxKxL, alive_logp_BxK, finished_BxKxL, finished_scores_BxK, cache = state
    prev_BxK = jnp.where(i == 0, 0, jax.lax.dynamic_index_in_dim(alive_BxKxL, jnp.maximum(i - 1, 0), 2, False))
    logits, cache = _next_logits(step_fn, first_logits_BxV, prev_BxK.reshape(b * k, 1), cache, i)
    log_probs_BxKxV = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(b, k, -1)
    v = log_probs_BxKxV.shape[-1]
    cand_logp_BxKV = (alive_logp_BxK[:, :, None] + log_probs_BxKxV).reshape(b, k * v)
    # 2K candidates guarantee K that do not end here, whatever the number of EOS picks.
    top_logp_Bx2K, top_idx_Bx2K = jax.lax.top_k(cand_logp_BxKV, 2 * k)
    top_beam_Bx2K, top_token_Bx2K = top_idx_Bx2K // v, (top_idx_Bx2K % v).astype(jnp.int32)
    top_seqs_Bx2KxL = jnp.take_along_axis(alive_BxKxL, top_beam_Bx2K[:, :, None], axis=1)
    top_seqs_Bx2KxL = jax.lax.dynamic_update_slice(top_seqs_Bx2KxL, top_token_Bx2K[:, :, None], (0, 0, i))
    # rows past their own length (shorter budget than the batch's) add nothing
    in_budget_Bx1 = (i < max_steps_B)[:, None]
    ends_Bx2K = in_budget_Bx1 & ((top_token_Bx2K == eos_id) | (i == max_steps_B - 1)[:, None])

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


def decode(step_fn: StepFn, cache, opts: Mapping[str, Any], *, batch_size: int, max_length: int,
           eos_id: int, rng: Array | None = None, cache_batch_axis: int = 0,
           first_logits_BxV: Array | None = None, max_steps_B: Array | None = None,
           return_all_beams: bool = False) -> tuple[Array, dict[str, Array]]:
  """Runs `opts['decode_method']`: (tokens [B, L], {'scores': [B]}).

  For beam search the cache, `first_logits_BxV` and the step function's per-row state must
  hold `num_beams(opts)` rows per example; `return_all_beams` then gives [B, K, L] tokens
  and [B, K] scores, best first. `max_steps_B` is per example.
  """
  if opts["decode_method"] == "beam":
    tokens, scores = beam_search(
        step_fn, cache, batch_size=batch_size, beam_size=opts["beam_size"], max_length=max_length,
        eos_id=eos_id, alpha=opts["alpha"], cache_batch_axis=cache_batch_axis,
        first_logits_BxV=first_logits_BxV, max_steps_B=max_steps_B)
    if return_all_beams:
      return tokens, {"scores": scores}
    return tokens[:, 0], {"scores": scores[:, 0]}
  greedy = opts["decode_method"] == "greedy"
  tokens, scores = temperature_sample(
      step_fn, cache, batch_size=batch_size, max_length=max_length, eos_id=eos_id, rng=rng,
      temperature=0.0 if greedy else opts["temperature"], top_k=opts["top_k"], top_p=opts["top_p"],
      first_logits_BxV=first_logits_BxV, max_steps_B=max_steps_B)
  return tokens, {"scores": scores}
