"""`EncoderDecoderModel`: mT5 under the T5X model contract (loss, score, predict).

Batches come from `seqio.EncDecFeatureConverter` (as `feature_converters`' subclass,
which packs the same rows faster): `encoder_input_tokens`, `decoder_input_tokens`,
`decoder_target_tokens`, `decoder_loss_weights`, plus `*_segment_ids` / `*_positions`
when packed. Without segment ids, non-zero tokens are
one segment (T5X's convention: decoder padding is where the target is 0).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import seqio

from linguamix.models import base, decoding, feature_converters, layers, losses
from linguamix.models.mt5 import MT5Config, Transformer, logits

Array = jax.Array


def _segment_ids(batch: Mapping[str, Array], prefix: str, tokens: str) -> Array:
  ids = batch.get(f"{prefix}_segment_ids")
  return (batch[tokens] > 0).astype(jnp.int32) if ids is None else ids


def segment_ids(batch: Mapping[str, Array]) -> tuple[Array, Array]:
  """(encoder, decoder) segment ids: the packed ones, else non-padding as one segment."""
  return (_segment_ids(batch, "encoder", "encoder_input_tokens"),
          _segment_ids(batch, "decoder", "decoder_target_tokens"))


class EncoderDecoderModel(base.BaseModel):
  """mT5 / T5.1.1 with T5X's loss (z-loss, loss normalisation) and decoding."""

  feature_converter_cls = feature_converters.EncDecFeatureConverter
  default_optimizer = "adafactor"  # T5X's for mT5

  def __init__(self, config: MT5Config, vocabulary: seqio.Vocabulary, *, z_loss: float = 1e-4,
               loss_normalizing_factor: float | str | None = losses.NUM_REAL_TARGET_TOKENS,
               logits_chunk_length: int | None = None, decode_method: str = "greedy",
               beam_size: int = 4, alpha: float = 0.6, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, eos_id: int | None = None):
    self.config = config
    self.module = Transformer(config)
    self._vocabulary = vocabulary
    self.z_loss = z_loss
    self.loss_normalizing_factor = loss_normalizing_factor
    self.logits_chunk_length = logits_chunk_length
    self.decode_defaults = decoding.decode_options(
        decode_method=decode_method, beam_size=beam_size, alpha=alpha, temperature=temperature,
        top_k=top_k, top_p=top_p, eos_id=eos_id)

  def tied_output_params(self) -> int:
    return self.config.vocab_size * self.config.emb_dim if self.config.tie_embeddings else 0

  def attention_flops(self, lengths):
    c, enc, dec = self.config, lengths["encoder_input_tokens"], lengths["decoder_target_tokens"]
    width = 12.0 * c.num_heads * c.head_dim
    return width * (c.num_encoder_layers * enc * enc + c.num_decoder_layers * (dec * dec + dec * enc))

  @property
  def vocabulary(self) -> seqio.Vocabulary:
    return self._vocabulary

  def init_variables(self, rng, input_shapes):
    # Checked here, not in __init__: a gs:// vocabulary loads on first use, not at gin parse.
    if self.vocabulary.vocab_size > self.config.vocab_size:
      raise ValueError(f"the vocabulary has {self.vocabulary.vocab_size} ids but MT5Config.vocab_size is "
                       f"{self.config.vocab_size}; the embedding must cover the vocabulary")
    enc = jnp.ones(input_shapes["encoder_input_tokens"], jnp.int32)
    dec = jnp.ones(input_shapes["decoder_input_tokens"], jnp.int32)
    return self.module.init({"params": rng, "dropout": rng}, enc, enc, dec, dec, deterministic=True)

  def _hidden(self, params, batch, dropout_rng):
    enc_seg, dec_seg = segment_ids(batch)
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply(
        {"params": params}, batch["encoder_input_tokens"], enc_seg, batch["decoder_input_tokens"],
        dec_seg, deterministic=dropout_rng is None, rngs=rngs)

  def _logit_stats(self, params, batch, dropout_rng):
    hidden_BxTxD, kernel_DxV = self._hidden(params, batch, dropout_rng)
    return layers.output_logit_stats(hidden_BxTxD, kernel_DxV.astype(hidden_BxTxD.dtype),
                                     batch["decoder_target_tokens"], chunk_length=self.logits_chunk_length)

  def loss_fn(self, params, batch, dropout_rng):
    lse_BxT, target_logit_BxT, correct_BxT = self._logit_stats(params, batch, dropout_rng)
    return losses.cross_entropy(lse_BxT, target_logit_BxT, correct_BxT, losses.loss_weights(batch),
                                z_loss=self.z_loss, normalizer=self.loss_normalizing_factor)

  def token_log_likelihood(self, params, batch) -> Array:
    """log p(target token) per position [B, T], weighted by loss weights, float32."""
    lse_BxT, target_logit_BxT, _ = self._logit_stats(params, batch, None)
    return (target_logit_BxT - lse_BxT) * losses.loss_weights(batch)

  def score_batch(self, params, batch) -> Array:
    lse_BxT, target_logit_BxT, _ = self._logit_stats(params, batch, None)
    return losses.sequence_log_likelihood(lse_BxT, target_logit_BxT, losses.loss_weights(batch))

  # --- decoding -------------------------------------------------------------------------

  def _init_cache(self, params, encoded_BxSxD, enc_seg_BxS, max_length: int):
    """Cross-attention keys/values from the encoder (one pass over a 1-token decoder input)
    and empty self-attention caches; leaves are [layers, B, L, N, H]."""
    b = encoded_BxSxD.shape[0]
    start = jnp.zeros((b, 1), jnp.int32)
    _, _, cross = self.module.apply({"params": params}, encoded_BxSxD, enc_seg_BxS, start,
                                    jnp.ones_like(start), cache_mode="init", method=Transformer.decode)
    cfg = self.config
    shape = (cfg.num_decoder_layers, b, max_length, cfg.num_heads, cfg.head_dim)
    return dict(cross, self_k=jnp.zeros(shape, cfg.compute_dtype), self_v=jnp.zeros(shape, cfg.compute_dtype))

  def _step_fn(self, params, enc_seg_BxS):
    def step(tokens_Bx1, cache, index):
      hidden, kernel, cache = self.module.apply(
          {"params": params}, None, enc_seg_BxS, tokens_Bx1, jnp.ones_like(tokens_Bx1),
          cache_mode="step", cache=cache, decode_index=index, method=Transformer.decode)
      return logits(hidden, kernel)[:, 0], cache
    return step

  def predict_batch_with_aux(self, params, batch, rng=None, *, return_all_beams: bool = False,
                             **decode_kwargs):
    """Decoded tokens [B, L] and {'scores': [B]} (log-likelihood; beam: length-normalised).

    decode_kwargs override the constructor's (`decoding.decode_options`): decode_method
    ('greedy', 'sample', 'beam'), beam_size, alpha, temperature, top_k, top_p, eos_id; with
    `return_all_beams=True` beam search returns [B, K, L] tokens and [B, K] scores.
    """
    opts = decoding.resolve_options(self.decode_defaults, decode_kwargs)
    k = decoding.num_beams(opts)
    enc_tokens = batch["encoder_input_tokens"]
    enc_seg = _segment_ids(batch, "encoder", "encoder_input_tokens")
    max_length = batch["decoder_target_tokens"].shape[1]
    encoded = self.module.apply({"params": params}, enc_tokens, enc_seg, method=Transformer.encode)
    encoded, enc_seg = decoding.repeat_beams((encoded, enc_seg), k)
    cache = self._init_cache(params, encoded, enc_seg, max_length)
    eos_id = self.vocabulary.eos_id if opts["eos_id"] is None else opts["eos_id"]
    return decoding.decode(self._step_fn(params, enc_seg), cache, opts, batch_size=enc_tokens.shape[0],
                           max_length=max_length, eos_id=eos_id, rng=rng, cache_batch_axis=1,
                           return_all_beams=return_all_beams)
