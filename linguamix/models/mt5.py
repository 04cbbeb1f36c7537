"""The mT5 / T5.1.1 encoder-decoder network in Flax linen, named like T5X's.

Parameter tree (fp32; attention kernels 2-D `[embed, heads*head_dim]` as T5X stores them):
`token_embedder/embedding`, `encoder/relpos_bias/rel_embedding`,
`encoder/layers_{i}/{pre_attention_layer_norm,attention/{query,key,value,out},pre_mlp_layer_norm,mlp/{wi_0,wi_1,wo}}`,
`encoder/encoder_norm/scale`, `decoder/layers_{i}/{pre_self_attention_layer_norm,self_attention,
pre_cross_attention_layer_norm,encoder_decoder_attention,pre_mlp_layer_norm,mlp}`,
`decoder/relpos_bias/rel_embedding`, `decoder/decoder_norm/scale`, `decoder/logits_dense/kernel`.
With `scan_layers=True` the `layers_{i}` subtrees become one `layers` subtree stacked on
axis `PARAM_SCAN_AXIS` (T5X's scalable layout); `checkpoints.layout` converts either way.

Switches beyond mT5 (defaults keep mT5): `relpos_per_layer` (UMT5: every layer's
self-attention owns `layers_{i}/relpos_bias/rel_embedding`, no stack-level table),
`mlp_gated`/`activation` (original T5: `mlp/wi` -> relu -> `mlp/wo`), `tie_embeddings`
(logits through `token_embedder/embedding`, no `logits_dense`) and `scale_decoder_outputs`
(decoder output times emb_dim**-0.5 before the head, as original T5 and transformers' tied T5/UMT5).

Attention is unscaled (T5 folds 1/sqrt(head_dim) into the query initialiser). Relative
positions use the row index, which inside one packed segment equals the position
difference; other segments are masked, so packed batches need no position input.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from linguamix.models import layers

Array = jax.Array
PARAM_SCAN_AXIS = 1  # stacked layer axis of scanned params (T5X scalable_t5 uses 1 too)

REMAT_POLICIES = layers.REMAT_POLICIES
MLP_ACTIVATIONS = {"gelu_tanh": functools.partial(nn.gelu, approximate=True), "relu": nn.relu}


@dataclasses.dataclass(frozen=True)
class MT5Config:
  """Sizes and switches of a T5.1.1 / mT5 model (defaults: mt5_small)."""

  vocab_size: int = 250112
  emb_dim: int = 512
  num_heads: int = 6
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  head_dim: int = 64
  mlp_dim: int = 1024
  dropout_rate: float = 0.0
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dtype: str = "bfloat16"  # compute dtype; parameters stay float32
  scan_layers: bool = False
  remat_policy: str = "none"  # one of REMAT_POLICIES
  attention: str = "materialised"  # one of layers.ATTENTION_IMPLEMENTATIONS
  relpos_per_layer: bool = False  # UMT5: a relative-position table in every layer, not one per stack
  mlp_gated: bool = True  # T5.1.1/mT5 wo(act(wi_0 x) * wi_1 x); False: original T5's wo(act(wi x))
  activation: str = "gelu_tanh"  # one of MLP_ACTIVATIONS
  tie_embeddings: bool = False  # logits via the shared embedding (no decoder/logits_dense)
  scale_decoder_outputs: bool = False  # decoder output * emb_dim**-0.5 before the head

  def __post_init__(self):
    if self.activation not in MLP_ACTIVATIONS:
      raise ValueError(f"MT5Config.activation={self.activation!r}; expected one of {sorted(MLP_ACTIVATIONS)}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"MT5Config.remat_policy={self.remat_policy!r}; expected one of {sorted(REMAT_POLICIES)}")
    if self.attention not in layers.ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"MT5Config.attention={self.attention!r}; expected one of "
                       f"{layers.ATTENTION_IMPLEMENTATIONS}")

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  def attention_needs(self) -> dict[str, str]:
    """What T5's attention asks a kernel to express (`attention_kernels.attention_impl_for`)."""
    needs = {"causal": "decoder self-attention", "segment_ids": "packing and padding",
             "additive_bias": "T5 relative position buckets"}
    if self.dropout_rate > 0:
      needs["dropout"] = f"dropout_rate={self.dropout_rate}"
    if self.compute_dtype == jnp.float32:
      needs["float32"] = "dtype float32"
    return needs


MAX_ONE_HOT_CONSTANT_BYTES = 2 ** 20  # the relative-position one-hot's, see RelativePositionBias


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int, max_distance: int):
  """T5's bucket of `key_position - query_position`: exact near, log-spaced far.

  NumPy in, NumPy out: the training positions are static, so their buckets are
  compile-time constants rather than a log and a select recomputed every step.
  """
  xp = np if isinstance(relative_position, np.ndarray) else jnp
  n = -relative_position
  ret = 0
  if bidirectional:
    num_buckets //= 2
    ret = (n < 0).astype(np.int32) * num_buckets
    n = xp.abs(n)
  else:
    n = xp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
      xp.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
      / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
  val_if_large = xp.minimum(val_if_large, num_buckets - 1)
  return ret + xp.where(is_small, n, val_if_large)


def _kernel_init(scale: float = 1.0, distribution: str = "truncated_normal"):
  return nn.initializers.variance_scaling(scale, "fan_in", distribution)


class Dense(nn.Module):
  """A 2-D `kernel` [in, out] with logical axes; matmul in the compute dtype."""

  features: int
  kernel_axes: tuple[str, str]
  dtype: Any = jnp.float32
  kernel_init: Any = _kernel_init()

  @nn.compact
  def __call__(self, x_BxLxI: Array) -> Array:
    kernel_IxO = self.param(
        "kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
        (x_BxLxI.shape[-1], self.features), jnp.float32)
    return layers.project(x_BxLxI.astype(self.dtype), kernel_IxO.astype(self.dtype))


class Embed(nn.Module):
  """Token embedding shared by encoder and decoder (`token_embedder/embedding`)."""

  num_embeddings: int
  features: int
  dtype: Any = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, tokens_BxL: Array) -> Array:
    return jnp.take(self.embedding, tokens_BxL, axis=0).astype(self.dtype)

  def output_kernel(self) -> Array:
    """The embedding as a tied output head [D, V]."""
    return nn.with_logical_constraint(self.embedding.T, ("embed", "vocab"))


class RelativePositionBias(nn.Module):
  """Per-stack bias [1, N, T, S] from bucketed relative positions (`rel_embedding` [N, R])."""

  config: MT5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions_T: Array, key_positions_S: Array) -> Array:
    cfg = self.config
    bucket_TxS = relative_position_bucket(
        key_positions_S[None, :] - query_positions_T[:, None], bidirectional=self.bidirectional,
        num_buckets=cfg.relative_attention_num_buckets, max_distance=cfg.relative_attention_max_distance)
    rel_embedding_NxR = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                                     ("heads", "relpos_buckets")),
        (cfg.num_heads, cfg.relative_attention_num_buckets), jnp.float32)
    # A one-hot matmul, as T5X does, not a gather: the gradient is then a dot, where the
    # gather's scatter-add made XLA:CPU reduce the [B, N, T, S] bias gradient over the
    # batch into a [T*S, N] layout (~15 ms of a 160 ms tiny mT5 step). Exact in float32.
    # NumPy buckets (training) give a NumPy one-hot: a constant of the program, where a
    # traced one rebuilt the [R, T*S] floats and their transpose every step. Only while
    # small: at 512 x 512 positions it is 32 MiB, which every compiler pass then copies
    # and compares (the TPU compiler took minutes over the program text alone); larger
    # ones are compared in the program against int8 bucket constants R times smaller.
    r = cfg.relative_attention_num_buckets
    if isinstance(bucket_TxS, np.ndarray) and r * bucket_TxS.size * 4 <= MAX_ONE_HOT_CONSTANT_BYTES:
      one_hot_RxTxS = bucket_TxS[None] == np.arange(r)[:, None, None]
    else:
      small = bucket_TxS.astype(np.int8) if isinstance(bucket_TxS, np.ndarray) and r <= 127 else bucket_TxS
      one_hot_RxTxS = jnp.asarray(small)[None] == jax.lax.broadcasted_iota(small.dtype, (r, 1, 1), 0)
    return jnp.einsum("nr,rts->nts", rel_embedding_NxR, one_hot_RxTxS.astype(np.float32),
                      precision=jax.lax.Precision.HIGHEST)[None]


class MultiHeadAttention(nn.Module):
  """T5 attention: `query`/`key`/`value`/`out` 2-D kernels, no scaling, additive bias."""

  config: MT5Config

  def setup(self):
    cfg = self.config
    inner = cfg.num_heads * cfg.head_dim
    base = _kernel_init(1.0, "normal")
    query_init = lambda *a: base(*a) / np.sqrt(cfg.head_dim).astype(np.float32)
    dt = cfg.compute_dtype
    self.query = Dense(inner, ("embed", "joined_kv"), dt, query_init)
    self.key = Dense(inner, ("embed", "joined_kv"), dt, base)
    self.value = Dense(inner, ("embed", "joined_kv"), dt, base)
    self.out = Dense(cfg.emb_dim, ("joined_kv", "embed"), dt, base)

  def _split_heads(self, x_BxLxI: Array) -> Array:
    b, length, _ = x_BxLxI.shape
    x_BxLxNxH = x_BxLxI.reshape(b, length, self.config.num_heads, self.config.head_dim)
    return nn.with_logical_constraint(x_BxLxNxH, ("batch", "length", "heads", "kv"))

  def project_kv(self, x_BxSxD: Array) -> tuple[Array, Array]:
    return self._split_heads(self.key(x_BxSxD)), self._split_heads(self.value(x_BxSxD))

  def __call__(self, x_BxTxD, k_BxSxNxH, v_BxSxNxH, mask_Bx1xTxS, bias_BxNxTxS, deterministic: bool):
    cfg = self.config
    q_BxTxNxH = self._split_heads(self.query(x_BxTxD))
    dropout_rng = None
    if not deterministic and cfg.dropout_rate > 0:
      dropout_rng = self.make_rng("dropout")
    out_BxTxNxH = layers.dot_product_attention(
        q_BxTxNxH, k_BxSxNxH, v_BxSxNxH, mask_Bx1xTxS=mask_Bx1xTxS, bias_BxNxTxS=bias_BxNxTxS,
        dropout_rate=cfg.dropout_rate, dropout_rng=dropout_rng, dtype=cfg.compute_dtype,
        implementation=cfg.attention)
    b, t = out_BxTxNxH.shape[:2]
    return self.out(out_BxTxNxH.reshape(b, t, -1))


class MlpBlock(nn.Module):
  """Gated (T5.1.1/mT5): wo(act(wi_0 x) * wi_1 x); plain (original T5): wo(act(wi x))."""

  config: MT5Config

  @nn.compact
  def __call__(self, x_BxLxD: Array, deterministic: bool) -> Array:
    cfg = self.config
    dt = cfg.compute_dtype
    act = MLP_ACTIVATIONS[cfg.activation]
    if cfg.mlp_gated:
      gate_BxLxF = Dense(cfg.mlp_dim, ("embed", "mlp"), dt, name="wi_0")(x_BxLxD)
      up_BxLxF = Dense(cfg.mlp_dim, ("embed", "mlp"), dt, name="wi_1")(x_BxLxD)
      h_BxLxF = act(gate_BxLxF) * up_BxLxF
    else:
      h_BxLxF = act(Dense(cfg.mlp_dim, ("embed", "mlp"), dt, name="wi")(x_BxLxD))
    h_BxLxF = nn.with_logical_constraint(h_BxLxF, ("batch", "length", "mlp"))
    h_BxLxF = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(h_BxLxF, deterministic)
    return Dense(cfg.emb_dim, ("mlp", "embed"), dt, name="wo")(h_BxLxF)


def _norm(cfg: MT5Config, name: str) -> layers.RMSNorm:
  return layers.RMSNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.compute_dtype, name=name)


def _dropout(cfg: MT5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic)


def _constrain(x_BxLxD: Array) -> Array:
  return nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed"))


def _add_layer_relpos(cfg: MT5Config, bias_BxNxTxS: Array, relpos_positions, bidirectional: bool) -> Array:
  """With `relpos_per_layer` (UMT5), adds this layer's own `relpos_bias` to the stack's mask bias;
  `relpos_positions` is (query positions [T], key positions [S])."""
  if not cfg.relpos_per_layer:
    return bias_BxNxTxS
  relpos_1xNxTxS = RelativePositionBias(cfg, bidirectional=bidirectional, name="relpos_bias")(*relpos_positions)
  return bias_BxNxTxS + layers.broadcast_batch(relpos_1xNxTxS.astype(bias_BxNxTxS.dtype), bias_BxNxTxS.shape[0])


class EncoderLayer(nn.Module):
  config: MT5Config
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxSxD, unused_xs, bias_BxNxSxS, relpos_positions):
    cfg, det = self.config, self.deterministic
    bias_BxNxSxS = _add_layer_relpos(cfg, bias_BxNxSxS, relpos_positions, bidirectional=True)
    h = _norm(cfg, "pre_attention_layer_norm")(x_BxSxD)
    attention = MultiHeadAttention(cfg, name="attention")
    k, v = attention.project_kv(h)
    x_BxSxD = x_BxSxD + _dropout(cfg, attention(h, k, v, None, bias_BxNxSxS, det), det)
    h = _norm(cfg, "pre_mlp_layer_norm")(x_BxSxD)
    x_BxSxD = x_BxSxD + _dropout(cfg, MlpBlock(cfg, name="mlp")(h, det), det)
    return _constrain(x_BxSxD), None


class DecoderLayer(nn.Module):
  """One decoder block. `cache_mode`: 'none' (teacher forcing), 'init' (also return the
  cross-attention keys/values), 'step' (one token against a KV cache at `decode_index`)."""

  config: MT5Config
  deterministic: bool = True
  cache_mode: str = "none"

  @nn.compact
  def __call__(self, y_BxTxD, cache, encoded_BxSxD, self_bias, relpos_positions, cross_bias, decode_index):
    cfg, det = self.config, self.deterministic
    self_bias = _add_layer_relpos(cfg, self_bias, relpos_positions, bidirectional=False)
    h = _norm(cfg, "pre_self_attention_layer_norm")(y_BxTxD)
    self_attention = MultiHeadAttention(cfg, name="self_attention")
    k, v = self_attention.project_kv(h)
    if self.cache_mode == "step":
      k = jax.lax.dynamic_update_slice(cache["self_k"], k.astype(cache["self_k"].dtype), (0, decode_index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache["self_v"], v.astype(cache["self_v"].dtype), (0, decode_index, 0, 0))
    y_BxTxD = y_BxTxD + _dropout(cfg, self_attention(h, k, v, None, self_bias, det), det)

    h = _norm(cfg, "pre_cross_attention_layer_norm")(y_BxTxD)
    cross_attention = MultiHeadAttention(cfg, name="encoder_decoder_attention")
    if self.cache_mode == "step":
      ck, cv = cache["cross_k"], cache["cross_v"]
    else:
      ck, cv = cross_attention.project_kv(encoded_BxSxD)
    y_BxTxD = y_BxTxD + _dropout(cfg, cross_attention(h, ck, cv, None, cross_bias, det), det)

    h = _norm(cfg, "pre_mlp_layer_norm")(y_BxTxD)
    y_BxTxD = _constrain(y_BxTxD + _dropout(cfg, MlpBlock(cfg, name="mlp")(h, det), det))
    if self.cache_mode == "none":
      return y_BxTxD, None
    if self.cache_mode == "init":
      return y_BxTxD, {"cross_k": ck, "cross_v": cv}
    return y_BxTxD, {"self_k": k, "self_v": v, "cross_k": ck, "cross_v": cv}


def _apply_layers(parent_cfg: MT5Config, layer_cls, num_layers: int, x, xs, broadcast_args, **attrs):
  """Runs `num_layers` layers as `layers_{i}` or, with scan_layers, one scanned `layers`.

  `xs` (per-layer inputs, stacked on axis 0) and the layers' second outputs are stacked
  on axis 0 either way, so callers see one layout.
  """
  cls = layer_cls
  policy = REMAT_POLICIES[parent_cfg.remat_policy]
  if parent_cfg.remat_policy != "none":
    cls = nn.remat(cls, policy=policy, prevent_cse=not parent_cfg.scan_layers)
  if parent_cfg.scan_layers:
    scanned = nn.scan(
        cls, variable_axes={"params": PARAM_SCAN_AXIS}, split_rngs={"params": True, "dropout": True},
        in_axes=(0,) + (nn.broadcast,) * len(broadcast_args), length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"})
    return scanned(config=parent_cfg, name="layers", **attrs)(x, xs, *broadcast_args)
  outputs = []
  for i in range(num_layers):
    xs_i = None if xs is None else jax.tree.map(lambda a: a[i], xs)
    x, out = cls(config=parent_cfg, name=f"layers_{i}", **attrs)(x, xs_i, *broadcast_args)
    outputs.append(out)
  stacked = None if outputs[0] is None else jax.tree.map(lambda *a: jnp.stack(a), *outputs)
  return x, stacked


class Encoder(nn.Module):
  config: MT5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens_BxS, segment_ids_BxS, deterministic: bool = True):
    cfg = self.config
    x_BxSxD = _dropout(cfg, _constrain(self.shared_embedding(tokens_BxS)), deterministic)
    positions_S = np.arange(tokens_BxS.shape[1])  # NumPy: constant relative-position buckets
    mask_Bx1xSxS = layers.attention_mask(segment_ids_BxS, segment_ids_BxS, causal=False)
    if cfg.relpos_per_layer:  # each layer adds its own table to the mask bias
      bias_BxNxSxS, relpos_positions = layers.mask_bias(mask_Bx1xSxS), (positions_S, positions_S)
    else:
      bias_1xNxSxS = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(positions_S, positions_S)
      bias_BxNxSxS, relpos_positions = layers.mask_bias(mask_Bx1xSxS, bias_1xNxSxS), None  # once for all layers
    x_BxSxD, _ = _apply_layers(cfg, EncoderLayer, cfg.num_encoder_layers, x_BxSxD, None,
                               (bias_BxNxSxS, relpos_positions), deterministic=deterministic)
    x_BxSxD = _norm(cfg, "encoder_norm")(x_BxSxD)
    return _dropout(cfg, x_BxSxD, deterministic)


class LogitsKernel(nn.Module):
  """The untied output head `logits_dense/kernel` [embed, vocab], returned unapplied so the
  loss can compute the cross-entropy in chunks without full logits."""

  config: MT5Config

  @nn.compact
  def __call__(self) -> Array:
    return self.param("kernel", nn.with_logical_partitioning(_kernel_init(), ("embed", "vocab")),
                      (self.config.emb_dim, self.config.vocab_size), jnp.float32)


class Decoder(nn.Module):
  config: MT5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded_BxSxD, encoder_segment_ids_BxS, input_tokens_BxT, segment_ids_BxT,
               deterministic: bool = True, cache_mode: str = "none", cache=None, decode_index=None):
    """Returns final hidden states [B, T, D], the output kernel [D, V] and the cache."""
    cfg = self.config
    y_BxTxD = _dropout(cfg, _constrain(self.shared_embedding(input_tokens_BxT)), deterministic)
    if cache_mode == "step":
      key_length = cache["self_k"].shape[2]
      keys_S = jnp.arange(key_length)
      queries_T = decode_index[None]
      self_mask = jnp.broadcast_to((keys_S <= decode_index)[None, None, None, :],
                                   (input_tokens_BxT.shape[0], 1, 1, key_length))
    else:
      queries_T = keys_S = np.arange(input_tokens_BxT.shape[1])  # NumPy: constant buckets
      self_mask = layers.attention_mask(segment_ids_BxT, segment_ids_BxT, causal=True)
    cross_mask = layers.attention_mask(segment_ids_BxT, encoder_segment_ids_BxS, causal=False)
    # Masks folded into additive biases once for all layers.
    if cfg.relpos_per_layer:  # each layer adds its own table to the mask bias
      self_bias, relpos_positions = layers.mask_bias(self_mask), (queries_T, keys_S)
    else:
      bias = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(queries_T, keys_S)
      self_bias, relpos_positions = layers.mask_bias(self_mask, bias), None
    cross_bias = layers.mask_bias(cross_mask)
    y_BxTxD, new_cache = _apply_layers(
        cfg, DecoderLayer, cfg.num_decoder_layers, y_BxTxD, cache,
        (encoded_BxSxD, self_bias, relpos_positions, cross_bias, decode_index),
        deterministic=deterministic, cache_mode=cache_mode)
    y_BxTxD = _dropout(cfg, _norm(cfg, "decoder_norm")(y_BxTxD), deterministic)
    if cfg.scale_decoder_outputs:  # original T5 (Mesh TF) rescales before the tied head
      y_BxTxD = y_BxTxD * jnp.asarray(cfg.emb_dim ** -0.5, y_BxTxD.dtype)
    kernel_DxV = (self.shared_embedding.output_kernel() if cfg.tie_embeddings
                  else LogitsKernel(cfg, name="logits_dense")())
    return y_BxTxD, kernel_DxV, new_cache


class Transformer(nn.Module):
  """mT5: shared `token_embedder`, `encoder`, `decoder` (with its own `logits_dense`)."""

  config: MT5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, cfg.compute_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def encode(self, encoder_input_tokens, encoder_segment_ids, deterministic: bool = True):
    return self.encoder(encoder_input_tokens, encoder_segment_ids, deterministic)

  def decode(self, encoded, encoder_segment_ids, decoder_input_tokens, decoder_segment_ids,
             deterministic: bool = True, cache_mode: str = "none", cache=None, decode_index=None):
    return self.decoder(encoded, encoder_segment_ids, decoder_input_tokens, decoder_segment_ids,
                        deterministic, cache_mode, cache, decode_index)

  def __call__(self, encoder_input_tokens, encoder_segment_ids, decoder_input_tokens,
               decoder_segment_ids, deterministic: bool = True):
    """Decoder hidden states [B, T, D] and the output kernel [D, V]."""
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, deterministic)
    hidden, kernel, _ = self.decode(encoded, encoder_segment_ids, decoder_input_tokens,
                                    decoder_segment_ids, deterministic)
    return hidden, kernel


def logits(hidden_BxTxD: Array, kernel_DxV: Array) -> Array:
  """Full float32 logits (decoding and tests; training uses layers.output_logit_stats)."""
  return jnp.einsum("btd,dv->btv", hidden_BxTxD, kernel_DxV.astype(hidden_BxTxD.dtype),
                    preferred_element_type=jnp.float32)


@functools.lru_cache(maxsize=None)
def param_shapes(config: MT5Config) -> dict:
  """The unboxed parameter tree of `config` as ShapeDtypeStructs (no computation)."""
  module = Transformer(config)
  ones = jnp.ones((1, 1), jnp.int32)
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), ones, ones, ones, ones))
  return nn.unbox(variables)["params"]
