"""The decoder's MLPs: gated or plain, and Mixtral's mixture of experts."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from linguamix.models.decoder_config import DecoderConfig
from linguamix.models.decoder_layers import ACTIVATIONS, INIT, Dense

Array = jax.Array


class Mlp(nn.Module):
  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    act = ACTIVATIONS[cfg.activation]
    dense = functools.partial(Dense, use_bias=cfg.mlp_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                              lora=cfg.lora, deterministic=self.deterministic)
    if cfg.mlp_gated:
      h_BxTxF = (act(dense((cfg.mlp_dim,), ("embed", "mlp"), name="wi_0")(x_BxTxD))
                 * dense((cfg.mlp_dim,), ("embed", "mlp"), name="wi_1")(x_BxTxD))
    else:
      h_BxTxF = act(dense((cfg.mlp_dim,), ("embed", "mlp"), name="wi")(x_BxTxD))
    h_BxTxF = nn.with_logical_constraint(h_BxTxF, ("batch", "length", "mlp"))
    return dense((cfg.d_model,), ("mlp", "embed"), name="wo")(h_BxTxF)


# How `MoeMlp` computes its experts (`DecoderConfig.moe_dispatch`, one of MOE_DISPATCHES);
# both are exact (no capacity, no token dropped):
# "dense": every expert runs over every token and the outputs are summed with the routing
#   weights (zero for the experts not chosen). E / k times the expert FLOPs and an
#   [B, T, E, F] activation, but plain einsums: the `expert` axis shards over a mesh axis
#   (expert parallelism, one all-reduce of the [B, T, D] output per layer).
# "grouped": the B*T*k (token, expert) pairs sorted by expert and run as grouped matmuls
#   (`jax.lax.ragged_dot`). Only the chosen experts' FLOPs where the backend lowers the
#   ragged dot to a grouped kernel (unmeasured here: no accelerator); XLA:CPU expands it
#   densely over the groups (its cost analysis: 2x the "dense" FLOPs). XLA's partitioner
#   does not split a ragged dot along its groups, so it is for unsharded experts.


def route(logits_NxE: Array, k: int) -> tuple[Array, Array]:
  """Mixtral's router (transformers' MixtralTopKRouter): softmax over all experts in float32,
  the top k, their weights renormalised to sum to one. -> (weights [N, k] f32, experts [N, k])."""
  probs_NxE = jax.nn.softmax(logits_NxE.astype(jnp.float32), axis=-1)
  top_NxK, experts_NxK = jax.lax.top_k(probs_NxE, k)
  return top_NxK / jnp.sum(top_NxK, axis=-1, keepdims=True), experts_NxK


def load_balancing_loss(router_logits: list[Array], mask_BxT: Array, k: int) -> Array:
  """transformers' `load_balancing_loss_func` (Switch Transformer eqs. 4-6) with its attention mask.

  `router_logits`: per-layer [B, T, E] arrays, or [layers, B, T, E] stacks (nn.scan); the
  order of layers does not matter. As transformers does, the counts of top-k assignments and
  the router probabilities are pooled over all layers and non-padding tokens first, then
  multiplied: E * sum_e (fraction of assignments to e) * (mean probability of e).
  """
  b, t = mask_BxT.shape
  e = router_logits[0].shape[-1]
  logits_LxBxTxE = jnp.concatenate([x.reshape(-1, b, t, e) for x in router_logits])
  probs_LxBxTxE = jax.nn.softmax(logits_LxBxTxE.astype(jnp.float32), axis=-1)
  _, experts_LxBxTxK = jax.lax.top_k(probs_LxBxTxE, k)
  chosen_LxBxTxE = jnp.sum(jax.nn.one_hot(experts_LxBxTxK, e, dtype=jnp.float32), axis=-2)
  m_BxTx1 = mask_BxT.astype(jnp.float32)[..., None]
  rows = logits_LxBxTxE.shape[0] * jnp.maximum(jnp.sum(m_BxTx1), 1.0)
  tokens_per_expert_E = jnp.sum(chosen_LxBxTxE * m_BxTx1, axis=(0, 1, 2)) / rows
  prob_per_expert_E = jnp.sum(probs_LxBxTxE * m_BxTx1, axis=(0, 1, 2)) / rows
  return e * jnp.sum(tokens_per_expert_E * prob_per_expert_E)


class MoeMlp(nn.Module):
  """Mixtral's sparse MLP: a router [D, E] and E SwiGLU experts with kernels stacked on `expert`.

  Parameters: router/kernel [D, E], wi_0 (gate) / wi_1 (up) [E, D, F], wo [E, F, D]. The
  router logits are sown as intermediates `router_logits` for the load-balancing loss.
  """

  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    e, d, f = cfg.num_experts, cfg.d_model, cfg.mlp_dim
    if cfg.lora is not None and cfg.lora.applies_to(self.path + ("wi_0",)):
      raise ValueError(f"LoRA targets {cfg.lora.targets!r} select mixture-of-experts MLPs; "
                       "adapters on experts are not implemented (target attention/ only)")
    if cfg.router_jitter_noise and not self.deterministic:
      j = cfg.router_jitter_noise
      x_BxTxD = x_BxTxD * jax.random.uniform(self.make_rng("dropout"), x_BxTxD.shape, x_BxTxD.dtype,
                                             1.0 - j, 1.0 + j)
    logits_BxTxE = Dense((e,), ("embed", None), dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                         name="router")(x_BxTxD)
    if not self.is_initializing():
      self.sow("intermediates", "router_logits", logits_BxTxE)
    weights_BxTxK, experts_BxTxK = route(logits_BxTxE, cfg.experts_per_token)
    wi_0_ExDxF, wi_1_ExDxF, wo_ExFxD = (
        self.param(name, nn.with_logical_partitioning(INIT, axes), shape, cfg.param_dtype).astype(cfg.dtype)
        for name, axes, shape in (("wi_0", ("expert", "embed", "mlp"), (e, d, f)),
                                  ("wi_1", ("expert", "embed", "mlp"), (e, d, f)),
                                  ("wo", ("expert", "mlp", "embed"), (e, f, d))))
    act = ACTIVATIONS[cfg.activation]
    x_BxTxD = x_BxTxD.astype(cfg.dtype)
    if cfg.moe_dispatch == "dense":
      # routing weights of all E experts, zero where not chosen
      weights_BxTxE = jnp.sum(jax.nn.one_hot(experts_BxTxK, e, dtype=jnp.float32)
                              * weights_BxTxK[..., None], axis=-2)
      h_BxTxExF = (act(jnp.einsum("btd,edf->btef", x_BxTxD, wi_0_ExDxF))
                   * jnp.einsum("btd,edf->btef", x_BxTxD, wi_1_ExDxF))
      h_BxTxExF = nn.with_logical_constraint(h_BxTxExF, ("batch", "length", "expert", "mlp"))
      # the weights scale each expert's hidden state before wo, so one contraction over
      # (expert, mlp) sums the experts (down_proj is linear: the same as weighting outputs)
      h_BxTxExF = (h_BxTxExF.astype(jnp.float32) * weights_BxTxE[..., None]).astype(cfg.dtype)
      return jnp.einsum("btef,efd->btd", h_BxTxExF, wo_ExFxD)
    b, t, k = experts_BxTxK.shape
    experts_P = experts_BxTxK.reshape(-1)  # P = B*T*k (token, expert) pairs
    order_P = jnp.argsort(experts_P, stable=True)
    token_P = order_P // k
    sizes_E = jnp.bincount(experts_P, length=e).astype(jnp.int32)
    x_PxD = x_BxTxD.reshape(b * t, d)[token_P]
    h_PxF = (act(jax.lax.ragged_dot(x_PxD, wi_0_ExDxF, sizes_E))
             * jax.lax.ragged_dot(x_PxD, wi_1_ExDxF, sizes_E))
    y_PxD = jax.lax.ragged_dot(h_PxF, wo_ExFxD, sizes_E)
    y_PxD = y_PxD.astype(jnp.float32) * weights_BxTxK.reshape(-1)[order_P][:, None]
    y_NxD = jnp.zeros((b * t, d), jnp.float32).at[token_P].add(y_PxD)
    return y_NxD.reshape(b, t, d).astype(cfg.dtype)
