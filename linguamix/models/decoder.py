"""Decoder-only transformer: one Flax module over shared layers, one parameter tree for every family.

A family (Llama 2/3, Mistral, Mixtral, Qwen2/3, Gemma 1/2/3, Phi-3, BLOOM, GPT-2/mGPT,
GPT-NeoX/Pythia) is a set of `DecoderConfig` switches, written out in one entry of
`decoder_families.FAMILIES` and built by its preset (`DecoderConfig.gemma2(...)`). The
pieces:

  decoder_config      DecoderConfig: fields, validation, the presets
  decoder_families    the family table: what each family switches on
  decoder_layers      projections (`Dense`, with LoRA), norms, activations
  decoder_attention   attention: grouped-query, RoPE (scaled, partial, per layer kind), ALiBi,
                      q/k norms, soft-capping, KV cache
  decoder_mlp         gated / plain MLP and Mixtral's mixture of experts
  decoder (here)      the layer (pre/post norms, sequential or parallel residual), the stack
                      (embeddings, scan, remat, tied head) and `DecoderOnlyModel`

Fused HF projections (BLOOM's and GPT-NeoX's `query_key_value`, GPT-2's `c_attn`) are
split on import (`linguamix.models.hf`), so every family shares one parameter tree:

  token_embedder/embedding [V, D]      pos_embedder/embedding [P, D] (learned)
  embed_norm (BLOOM)                   final_norm          logits_dense/kernel [D, V]
  layers/{pre_attention_norm, attention/{query,key,value,out, query_norm,key_norm (qk_norm)},
          post_attention_norm (post_norms), pre_mlp_norm, mlp/{wi_0 (gate), wi_1 (up) | wi, wo},
          post_mlp_norm (post_norms)}                   (stacked on `layers` under scan)

Layers that differ (`layer_types`: sliding-window vs global attention, their RoPE bases)
share one parameter structure; a per-layer flag, scanned with the layers, picks the
mask and RoPE frequencies, so `scan_layers=True` covers them too.

`DecoderOnlyModel` implements the T5X contract over SeqIO's DecoderFeatureConverter (as
`feature_converters`' subclass, which packs the same rows faster).
"""

from __future__ import annotations

import copy
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import seqio

from linguamix.models import attention_kernels, base, decoding, feature_converters, layers, losses
from linguamix.models import lora as lora_lib
from linguamix.models.decoder_attention import Attention, alibi_slopes  # noqa: F401  (re-exported)
# re-exported: model gins bind `decoder.DecoderConfig`
from linguamix.models.decoder_config import MOE_DISPATCHES, DecoderConfig  # noqa: F401
from linguamix.models.decoder_layers import INIT, norm
from linguamix.models.decoder_mlp import Mlp, MoeMlp, load_balancing_loss

Array = jax.Array


class DecoderLayer(nn.Module):
  """Pre-norm block (with `post_norms`, also normed after). `aux` = (additive mask bias, positions,
  key positions, cache index, the sliding layers' mask bias or None, the mask as a
  `KernelMask` or None) is shared by all layers;
  `local` (a bool scalar, scanned per layer) picks the sliding layers' mask and RoPE."""

  config: DecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxTxD, aux, cache, local=None):
    cfg = self.config
    mask, positions, key_positions, cache_index, local_mask, kernel_mask = aux
    if local_mask is not None:
      mask = jnp.where(local, local_mask, mask)
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(1,))
    y = norm(cfg, "pre_attention_norm")(x_BxTxD)
    y, new_cache = Attention(cfg, self.deterministic, name="attention")(
        y, mask, positions, key_positions, cache, cache_index, local,
        None if cache is not None else kernel_mask)
    if cfg.post_norms:
      y = norm(cfg, "post_attention_norm")(y)
    mlp_cls = MoeMlp if cfg.num_experts else Mlp
    if cfg.parallel_residual:  # the MLP reads the layer input, not the attention's output
      mlp_BxTxD = mlp_cls(cfg, self.deterministic, name="mlp")(norm(cfg, "pre_mlp_norm")(x_BxTxD))
      x_BxTxD = (x_BxTxD + dropout(y, deterministic=self.deterministic)
                 + dropout(mlp_BxTxD, deterministic=self.deterministic))
    else:
      x_BxTxD = x_BxTxD + dropout(y, deterministic=self.deterministic)
      y = mlp_cls(cfg, self.deterministic, name="mlp")(norm(cfg, "pre_mlp_norm")(x_BxTxD))
      if cfg.post_norms:
        y = norm(cfg, "post_mlp_norm")(y)
      x_BxTxD = x_BxTxD + dropout(y, deterministic=self.deterministic)
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ("batch", "length", "embed"))
    return x_BxTxD, new_cache


class Decoder(nn.Module):
  """Token ids -> final hidden states, the output kernel [D, V] and the updated KV cache.

  `cache` is a (keys, values) pair of [layers, B, S, K, H] arrays or None; with a cache
  the T new steps are written at slots cache_index_B .. + T - 1 and attend over all S
  slots as `mask_Bx1xTxS` allows. `kernel_mask` is the same mask as ids
  (`attention_kernels.KernelMask`), which the TPU kernel takes instead of the bias.
  """

  config: DecoderConfig

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT, mask_Bx1xTxS, key_positions_BxS,
               cache=None, cache_index_B=None, deterministic: bool = True, kernel_mask=None):
    cfg = self.config
    embedder = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
        name="token_embedder")
    x_BxTxD = embedder(tokens_BxT)
    if cfg.embed_scale:
      x_BxTxD = x_BxTxD * jnp.asarray(cfg.d_model ** 0.5, cfg.dtype)
    if cfg.position == "learned":
      x_BxTxD = x_BxTxD + nn.Embed(
          cfg.max_positions, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          embedding_init=nn.with_logical_partitioning(INIT, (None, "embed")),
          name="pos_embedder")(positions_BxT)
    if cfg.embed_norm:
      x_BxTxD = norm(cfg, "embed_norm")(x_BxTxD)
    x_BxTxD = nn.Dropout(cfg.dropout_rate, broadcast_dims=(1,))(x_BxTxD, deterministic=deterministic)
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ("batch", "length", "embed"))

    layer_cls = DecoderLayer
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(layer_cls, policy=layers.REMAT_POLICIES[cfg.remat_policy],
                           prevent_cse=not cfg.scan_layers)
    # The mask folded into an additive bias once for all layers; the sliding layers of
    # layer_types also see only keys less than local_window positions back.
    local_mask = None
    if cfg.local_window is not None:
      near_BxTxS = positions_BxT[:, :, None] - key_positions_BxS[:, None, :] < cfg.local_window
      local_mask = layers.mask_bias(mask_Bx1xTxS & near_BxTxS[:, None])
    aux = (layers.mask_bias(mask_Bx1xTxS), positions_BxT, key_positions_BxS, cache_index_B, local_mask,
           kernel_mask)
    local_L = None if cfg.local_layers is None else jnp.asarray(cfg.local_layers)
    if cfg.scan_layers:
      stack = nn.scan(
          layer_cls, variable_axes={"params": 0, "intermediates": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, 0, 0), length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x_BxTxD, cache = stack(cfg, deterministic, name="layers")(x_BxTxD, aux, cache, local_L)
    else:
      new_layers = []
      for i in range(cfg.num_layers):
        layer_cache = None if cache is None else (cache[0][i], cache[1][i])
        local = None if local_L is None else local_L[i]
        x_BxTxD, layer_cache = layer_cls(cfg, deterministic, name=f"layers_{i}")(
            x_BxTxD, aux, layer_cache, local)
        new_layers.append(layer_cache)
      if cache is not None:
        cache = tuple(jnp.stack([c[j] for c in new_layers]) for j in range(2))
    x_BxTxD = norm(cfg, "final_norm")(x_BxTxD)
    if cfg.tie_embeddings:
      kernel_DxV = embedder.embedding.T
    else:
      kernel_DxV = self.param(
          "logits_dense", nn.with_logical_partitioning(INIT, ("embed", "vocab")),
          (cfg.d_model, cfg.vocab_size), cfg.param_dtype)
    return x_BxTxD, kernel_DxV.astype(cfg.dtype), cache


START_TOKENS = ("zero", "bos", "none")


class DecoderOnlyModel(base.BaseModel):
  """T5X `DecoderOnlyModel` contract for `Decoder` over SeqIO's DecoderFeatureConverter.

  Plain LM batches have `decoder_input_tokens/target_tokens/loss_weights`; prefix-LM
  batches add `decoder_causal_attention` (1 on the prompt and one position more).
  Causal HF checkpoints were trained with a causal prefix, so the prefix attends
  bidirectionally only with `inputs_bidirectional_attention=True`. Packed batches add
  `decoder_segment_ids` and `decoder_positions`.

  `start_token` says what the converter's start token (id 0 before each sequence) is:
  `zero` keeps it (T5X); `bos` replaces it by the vocabulary's BOS, else EOS (for
  tokenizers that start every text with BOS: Llama, Mistral, Gemma); `none` hides it
  from attention and shifts positions by one, so the model sees the text's first token
  first (BLOOM, Qwen2, GPT-2). Model gins set the one their tokenizer implies, and
  evaluation derives the same from the tokenizer (`linguamix.evals.requests`).
  """

  feature_converter_cls = feature_converters.DecoderFeatureConverter

  def __init__(self, config: DecoderConfig, vocabulary: seqio.Vocabulary, *,
               z_loss: float = 0.0, inputs_bidirectional_attention: bool = False,
               logits_chunk_length: int | None = None, module: nn.Module | None = None,
               start_token: str = "zero", decode_method: str = "greedy", beam_size: int = 4,
               alpha: float = 0.6, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               eos_id: int | None = None):
    if start_token not in START_TOKENS:
      raise ValueError(f"DecoderOnlyModel.start_token={start_token!r}; expected one of {START_TOKENS}")
    if vocabulary is not None and vocabulary.vocab_size > config.vocab_size:
      moved = getattr(vocabulary, "moved_zero_id", None)
      raise ValueError(
          f"vocabulary has {vocabulary.vocab_size} ids but the model's embedding has "
          f"vocab_size={config.vocab_size}: the tokenizer does not match the checkpoint" + (
              f" (the tokenizer's id 0 is a token and moved to id {moved}: a checkpoint without a "
              f"row for it takes vocab_size={moved + 1} and mask_row_zero=True, as "
              "`linguamix convert import-hf` writes it)" if moved is not None else ""))
    self.config = config
    self._vocabulary = vocabulary
    self.z_loss = z_loss
    self.inputs_bidirectional_attention = inputs_bidirectional_attention
    self.logits_chunk_length = logits_chunk_length
    self.start_token = start_token
    self.module = module if module is not None else Decoder(config)
    self.decode_defaults = decoding.decode_options(
        decode_method=decode_method, beam_size=beam_size, alpha=alpha, temperature=temperature,
        top_k=top_k, top_p=top_p, eos_id=eos_id)

  def tied_output_params(self) -> int:
    return self.config.vocab_size * self.config.d_model if self.config.tie_embeddings else 0

  @property
  def vocabulary(self) -> seqio.Vocabulary:
    return self._vocabulary

  def _variables(self, params):
    return params if "params" in params else {"params": params}

  def init_variables(self, rng: Array, input_shapes: Mapping[str, tuple[int, ...]]):
    shape = tuple(input_shapes["decoder_input_tokens"])
    tokens = jnp.ones(shape, jnp.int32)
    mask = layers.attention_mask(tokens, tokens, causal=True)
    positions = jnp.broadcast_to(jnp.arange(shape[1]), shape)
    return self.module.init({"params": rng, "dropout": rng}, tokens, positions, mask, positions)

  def _prefix_token_id(self) -> int:
    try:
      bos = self.vocabulary.bos_id
    except (AttributeError, NotImplementedError):  # seqio's base Vocabulary raises
      bos = None
    return bos if bos is not None and bos >= 0 else self.vocabulary.eos_id

  def _apply_start_token(self, tokens_BxL, positions_BxL, mask_Bx1xTxS):
    """Tokens, positions and mask after the `start_token` policy (positions == 0 mark starts)."""
    start_BxL = positions_BxL == 0
    if self.start_token == "bos":
      tokens_BxL = jnp.where(start_BxL, self._prefix_token_id(), tokens_BxL)
    elif self.start_token == "none":
      # a start is visible only to its own query, so no other position depends on it
      hidden_Bx1xTxS = start_BxL[:, None, None, :] & ~start_BxL[:, None, :, None]
      mask_Bx1xTxS = mask_Bx1xTxS & ~hidden_Bx1xTxS
      positions_BxL = jnp.maximum(positions_BxL - 1, 0)
    return tokens_BxL, positions_BxL, mask_Bx1xTxS

  def attention_flops(self, lengths):
    c, length = self.config, lengths["decoder_target_tokens"]
    return 12.0 * c.num_layers * c.num_heads * c.head_width * length * length

  def attention_needs(self) -> dict[str, str]:
    """The architecture's attention needs (`DecoderConfig.attention_needs`) and this model's."""
    needs = self.config.attention_needs()
    if self.inputs_bidirectional_attention:
      needs["prefix_lm"] = "inputs_bidirectional_attention=True"
    if self.start_token == "none":
      needs["hidden_start"] = "start_token='none'"
    return needs

  def trainable_mask(self, params):
    """With LoRA, only the adapters train (the trainer's optimizer hook); else None: all train."""
    return lora_lib.trainable_mask(params) if self.config.lora is not None else None

  def with_start_token(self, start_token: str) -> "DecoderOnlyModel":
    if start_token not in START_TOKENS:
      raise ValueError(f"DecoderOnlyModel.start_token={start_token!r}; expected one of {START_TOKENS}")
    model = copy.copy(self)
    model.start_token = start_token
    return model

  def _forward(self, params, batch, dropout_rng=None, with_router: bool = False):
    """Final hidden states [B, L, D] and the output kernel for a feature-converter batch;
    `with_router` adds the router's load-balancing loss (mixture of experts)."""
    tokens_BxL = batch["decoder_input_tokens"]
    b, length = tokens_BxL.shape
    segment_ids_BxL = batch.get("decoder_segment_ids")
    if segment_ids_BxL is None:
      segment_ids_BxL = (batch["decoder_target_tokens"] > 0).astype(jnp.int32)
    positions_BxL = batch.get("decoder_positions")
    if positions_BxL is None:
      positions_BxL = jnp.broadcast_to(jnp.arange(length), (b, length))
    prefix_BxL = batch.get("decoder_causal_attention") if self.inputs_bidirectional_attention else None
    branch_BxL = batch.get("decoder_branch_ids")
    window = self.config.sliding_window
    mask = layers.attention_mask(
        segment_ids_BxL, segment_ids_BxL, causal=True,
        sliding_window=window if branch_BxL is None else None, bidirectional_prefix_BxT=prefix_BxL)
    if branch_BxL is not None:
      # A shared prefix (branch 0) then branches that each continue it: a branch attends
      # to the prefix and to itself, never to another branch; its positions continue the
      # prefix's, so the window is measured in positions, not row indices.
      q_Bx1xTx1, k_Bx1x1xS = branch_BxL[:, None, :, None], branch_BxL[:, None, None, :]
      mask = mask & ((k_Bx1x1xS == 0) | (k_Bx1x1xS == q_Bx1xTx1))
      if window is not None:
        mask = mask & (positions_BxL[:, None, :, None] - positions_BxL[:, None, None, :] < window)
    start_BxL = positions_BxL == 0
    tokens_BxL, positions_BxL, mask = self._apply_start_token(tokens_BxL, positions_BxL, mask)
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
    kwargs = {}
    if attention_kernels.attention_impl_for(self, "tpu")[0] == "splash":
      kwargs["kernel_mask"] = attention_kernels.KernelMask.for_decoder(
          segment_ids_BxL, prefix_BxL=prefix_BxL,
          hidden_start_BxL=start_BxL if self.start_token == "none" else None,
          window=self.config.sliding_window, local_window=self.config.local_window)
    if not with_router:
      hidden_BxLxD, kernel_DxV, _ = self.module.apply(
          self._variables(params), tokens_BxL, positions_BxL, mask, positions_BxL,
          deterministic=dropout_rng is None, rngs=rngs, **kwargs)
      return hidden_BxLxD, kernel_DxV
    (hidden_BxLxD, kernel_DxV, _), state = self.module.apply(
        self._variables(params), tokens_BxL, positions_BxL, mask, positions_BxL,
        deterministic=dropout_rng is None, rngs=rngs, mutable=["intermediates"], **kwargs)
    # the tokens transformers' load-balancing loss counts: not padding, and not the
    # start slot that `start_token="none"` hides (that text has no such token)
    real_BxL = segment_ids_BxL > 0
    if self.start_token == "none":
      real_BxL &= ~start_BxL
    router_logits = jax.tree.leaves(state["intermediates"])
    return hidden_BxLxD, kernel_DxV, load_balancing_loss(
        router_logits, real_BxL, self.config.experts_per_token)

  def logits(self, params, batch) -> Array:
    """Full fp32 logits [B, L, V] (tests, small vocabularies; training uses chunked stats)."""
    hidden_BxLxD, kernel_DxV = self._forward(params, batch)
    logits_BxLxV = jnp.einsum("bld,dv->blv", hidden_BxLxD, kernel_DxV, preferred_element_type=jnp.float32)
    return layers.mask_row_zero(layers.softcap(logits_BxLxV, self.config.final_logit_softcap),
                                self.config.mask_row_zero)

  def _stats(self, params, batch, dropout_rng=None):
    hidden_BxLxD, kernel_DxV = self._forward(params, batch, dropout_rng)
    return layers.output_logit_stats(hidden_BxLxD, kernel_DxV, batch["decoder_target_tokens"],
                                     chunk_length=self.logits_chunk_length,
                                     logit_softcap=self.config.final_logit_softcap,
                                     masked_zero=self.config.mask_row_zero)

  def router_aux_loss(self, params, batch) -> Array:
    """transformers' MixtralForCausalLM `aux_loss` for this batch (mixture of experts only)."""
    return self._forward(params, batch, with_router=True)[2]

  def loss_fn(self, params, batch, dropout_rng):
    if not self.config.num_experts:
      lse_BxL, target_logit_BxL, correct_BxL = self._stats(params, batch, dropout_rng)
      return losses.cross_entropy(lse_BxL, target_logit_BxL, correct_BxL, losses.loss_weights(batch),
                                  z_loss=self.z_loss)
    hidden_BxLxD, kernel_DxV, aux = self._forward(params, batch, dropout_rng, with_router=True)
    lse_BxL, target_logit_BxL, correct_BxL = layers.output_logit_stats(
        hidden_BxLxD, kernel_DxV, batch["decoder_target_tokens"], chunk_length=self.logits_chunk_length,
        masked_zero=self.config.mask_row_zero)
    # the loss carries coef x aux (transformers' `loss += router_aux_loss_coef * aux_loss`);
    # router_aux_loss reports aux itself, comparable to transformers' `aux_loss`
    loss, metrics = losses.cross_entropy(
        lse_BxL, target_logit_BxL, correct_BxL, losses.loss_weights(batch), z_loss=self.z_loss,
        extra_losses={"weighted_router_aux_loss": self.config.router_aux_loss_coef * aux})
    return loss, {**metrics, "router_aux_loss": aux}

  def score_batch(self, params, batch) -> Array:
    lse_BxL, target_logit_BxL, _ = self._stats(params, batch)
    return losses.sequence_log_likelihood(lse_BxL, target_logit_BxL, losses.loss_weights(batch))

  @property
  def shares_prefixes(self) -> bool:
    """Whether requests may share a scored prefix (`decoder_branch_ids`): not when the
    prefix attends bidirectionally, as its states then depend on each request's inputs."""
    return not self.inputs_bidirectional_attention

  def token_log_likelihood(self, params, batch) -> Array:
    """log p(target token) per position [B, L], weighted by loss weights, float32. With
    `decoder_branch_ids` (and `decoder_positions`), a row holds a prefix (branch 0) and
    branches 1, 2, ... that each continue it: several requests scored in one row."""
    lse_BxL, target_logit_BxL, _ = self._stats(params, batch)
    return (target_logit_BxL - lse_BxL) * losses.loss_weights(batch)

  def predict_batch_with_aux(self, params, batch, rng=None, *, return_all_beams: bool = False,
                             **decode_kwargs):
    """Decodes the targets after each prompt with a KV cache: [B, L] ids (0 after EOS) and
    {'scores': [B]} (their log-likelihood; beam search: length-normalised).

    The prompt is the `decoder_causal_attention` part of `decoder_input_tokens` (only
    position 0 for a plain LM); it prefills the cache in one pass, then `decoding.decode`
    steps each row from its own prompt length. decode_kwargs override the constructor's
    (`decoding.decode_options`): decode_method ('greedy', 'sample', 'beam'), beam_size,
    alpha, temperature, top_k, top_p, eos_id (default the vocabulary's). A row stops at
    EOS or when the sequence length is reached; `return_all_beams=True` gives beam
    search's [B, K, L] tokens and [B, K] scores.
    """
    opts = decoding.resolve_options(self.decode_defaults, decode_kwargs)
    k = decoding.num_beams(opts)
    cfg = self.config
    tokens_BxL = batch["decoder_input_tokens"]
    b, length = tokens_BxL.shape
    causal = batch.get("decoder_causal_attention")
    prompt_len_B = (jnp.ones((b,), jnp.int32) if causal is None
                    else jnp.maximum(jnp.sum(causal, axis=1).astype(jnp.int32), 1))
    arange_L = jnp.arange(length)
    in_prompt_BxL = arange_L[None, :] < prompt_len_B[:, None]
    prompt_BxL = jnp.where(in_prompt_BxL, tokens_BxL, 0)
    positions_BxL = jnp.broadcast_to(arange_L, (b, length))
    prefix = causal if (causal is not None and self.inputs_bidirectional_attention) else None
    seg_BxL = in_prompt_BxL.astype(jnp.int32)
    mask = layers.attention_mask(seg_BxL, seg_BxL, causal=True, sliding_window=cfg.sliding_window,
                                 bidirectional_prefix_BxT=prefix)
    prompt_BxL, positions_BxL, mask = self._apply_start_token(prompt_BxL, positions_BxL, mask)
    cache_shape = (cfg.num_layers, b, length, cfg.kv_heads, cfg.head_width)
    cache = (jnp.zeros(cache_shape, cfg.dtype), jnp.zeros(cache_shape, cfg.dtype))
    variables = self._variables(params)
    hidden_BxLxD, kernel_DxV, cache = self.module.apply(
        variables, prompt_BxL, positions_BxL, mask, positions_BxL, cache, jnp.zeros((b,), jnp.int32))
    last_BxD = jnp.take_along_axis(hidden_BxLxD, (prompt_len_B - 1)[:, None, None], axis=1)[:, 0]
    first_logits_BxV = self._output_logits(last_BxD, kernel_DxV)
    # beams: every row's cache and per-row state k times (rows b*k .. b*k + k - 1)
    cache = decoding.repeat_beams(cache, k, axis=1)
    first_logits_BxV, prompt_len_kB, positions_kBxL = decoding.repeat_beams(
        (first_logits_BxV, prompt_len_B, positions_BxL), k)
    eos_id = self.vocabulary.eos_id if opts["eos_id"] is None else opts["eos_id"]
    # the first target sits at prompt position prompt_len - 1; the last at length - 1
    return decoding.decode(
        self._step_fn(variables, prompt_len_kB, positions_kBxL), cache, opts, batch_size=b,
        max_length=length, eos_id=eos_id, rng=rng, cache_batch_axis=1, first_logits_BxV=first_logits_BxV,
        max_steps_B=length - prompt_len_B + 1, return_all_beams=return_all_beams)

  def _step_fn(self, variables, prompt_len_B, key_positions_BxL):
    """`decoding`'s step function over the prefilled cache; rows keep their own offsets.

    Output step s feeds the token emitted at step s - 1, which sits at sequence position
    prompt_len_B + s - 1 (clipped: rows that are done only rewrite their last slot).
    """
    cfg = self.config
    length = key_positions_BxL.shape[1]
    arange_L = jnp.arange(length)

    def step(tokens_Bx1, cache, step_index):
      index_B = jnp.minimum(prompt_len_B + step_index - 1, length - 1)
      order_BxS = arange_L[None, :] <= index_B[:, None]
      if cfg.sliding_window is not None:
        order_BxS &= index_B[:, None] - arange_L[None, :] < cfg.sliding_window
      if self.start_token == "none":
        order_BxS &= arange_L[None, :] > 0
      step_positions_Bx1 = index_B[:, None] - (self.start_token == "none")
      hidden_Bx1xD, kernel_DxV, cache = self.module.apply(
          variables, tokens_Bx1, step_positions_Bx1, order_BxS[:, None, None, :], key_positions_BxL,
          cache, index_B)
      return self._output_logits(hidden_Bx1xD[:, 0], kernel_DxV), cache

    return step

  def _output_logits(self, hidden_BxD, kernel_DxV):
    logits_BxV = jnp.einsum("bd,dv->bv", hidden_BxD, kernel_DxV, preferred_element_type=jnp.float32)
    return layers.mask_row_zero(layers.softcap(logits_BxV, self.config.final_logit_softcap),
                                self.config.mask_row_zero)
