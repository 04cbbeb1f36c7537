"""Which attention implementation `attention='fused'` runs on each platform, and the TPU one.

One table (`IMPLEMENTATIONS`) says what each implementation can express; a model says what
its attention needs (`attention_needs()`, feature -> what in the model asks for it), and
`attention_impl_for` picks the first implementation of the target platform that expresses
all of it, with the reason in words (what `linguamix plan` prints).

On TPU that is Pallas' splash attention (flash attention with block-sparse static masks):
packing's segment ids, causal and sliding-window masks, prefix-LM, logit soft-capping and
grouped-query / multi-query heads. The model hands it a `KernelMask` (per-token ids, not a
[T, S] mask). The choice between splash and the XLA path is made when the program is
lowered (`jax.lax.platform_dependent`), so it follows the target: a TPU program compiled
ahead of time on a CPU host gets the kernel, a CPU run of the same code does not.

Tensor names carry their shapes as in `layers`. Pallas is imported where the kernel is
built, so importing the models does not import it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Features a model's attention may need. The reasons `attention_impl_for` gives name them.
FEATURES = (
    "causal",          # decoder self-attention
    "segment_ids",     # packed examples do not see each other
    "prefix_lm",       # inputs attend to each other both ways (T5X's decoder_causal_attention)
    "hidden_start",    # start_token='none': the start slot is seen by its own query only
    "sliding_window",  # a window on every layer or on the local layers (Mistral, Gemma 2/3)
    "logit_softcap",   # cap * tanh(logits / cap) before the softmax (Gemma 2)
    "grouped_query",   # fewer key/value heads than query heads (GQA, MQA)
    "additive_bias",   # a float bias on the logits (T5 relative positions, ALiBi)
    "dropout",         # dropout on the attention weights
    "float32",         # float32 compute
)


@dataclasses.dataclass(frozen=True)
class Implementation:
  name: str
  platforms: tuple[str, ...] | None  # None: any platform
  expresses: frozenset[str]
  what: str


_ALL = frozenset(FEATURES)
IMPLEMENTATIONS: tuple[Implementation, ...] = (
    Implementation(
        "splash", ("tpu",),
        frozenset({"causal", "segment_ids", "prefix_lm", "hidden_start", "sliding_window",
                   "logit_softcap", "grouped_query", "float32"}),
        "Pallas splash attention (flash attention for TPU)"),
    Implementation(  # the mask reaches cuDNN folded into the bias, so any mask works
        "cudnn", ("gpu",), _ALL - {"logit_softcap", "dropout", "float32"},
        "cuDNN flash attention through jax.nn.dot_product_attention"),
    Implementation(
        "xla", None, _ALL - {"logit_softcap", "dropout"},
        "jax.nn.dot_product_attention's XLA composition"),
    Implementation(
        "materialised", None, _ALL,
        "the [B, N, T, S] probabilities formed explicitly"),
)
# A combination the splash masks cannot express, though each part alone they can: with a
# bidirectional prefix the hidden start must see the whole prefix while no other query
# sees the start, and segment ids compare for equality only.
_INCOMPATIBLE = {"splash": (frozenset({"prefix_lm", "hidden_start"}),)}


def platform_of(devices) -> str:
  """'tpu', 'gpu' or 'cpu' for a set of devices (a mesh's, a topology's)."""
  platforms = {d.platform for d in np.asarray(devices).flat}
  if len(platforms) != 1:
    raise ValueError(f"devices of several platforms: {sorted(platforms)}")
  platform = platforms.pop()
  return "gpu" if platform in ("cuda", "rocm") else platform


def attention_impl_for(model_or_config: Any, platform: str) -> tuple[str, str]:
  """(implementation, reason) that `attention` of a model or config runs on `platform`.

  `model_or_config` has `attention_needs()` (feature -> what asks for it) and an
  `attention` setting, itself or on its `.config`. Pure: nothing is traced or compiled.
  """
  config = getattr(model_or_config, "config", model_or_config)
  if config.attention != "fused":
    return "materialised", f"attention={config.attention!r}"
  needs: Mapping[str, str] = model_or_config.attention_needs()
  unknown = set(needs) - set(FEATURES)
  if unknown:
    raise ValueError(f"unknown attention features {sorted(unknown)}; known: {FEATURES}")
  lacking = []
  for impl in IMPLEMENTATIONS:
    if impl.platforms is not None and platform not in impl.platforms:
      continue
    missing = [f"{f} ({needs[f]})" for f in needs if f not in impl.expresses]
    missing += [" with ".join(f"{f} ({needs[f]})" for f in sorted(combo))
                for combo in _INCOMPATIBLE.get(impl.name, ()) if combo <= set(needs)]
    if not missing:
      why = "; ".join(lacking) if lacking else f"{impl.what} expresses every need"
      return impl.name, why
    lacking.append(f"{impl.name} cannot express {', '.join(missing)}")
  raise AssertionError("the materialised implementation expresses every feature")


@flax.struct.dataclass
class KernelMask:
  """The attention mask the way kernels take it: per-token ids and static structure.

  Query t may see key s when their ids are equal (`q_ids_BxT`, `kv_ids_BxS`; 0 is
  padding) and s <= t when `causal`, and t - s < `window` -- or, on `prefix_BxT` rows,
  when both are in the prefix (the models' prefix-LM mask); and where `local` (a bool
  scalar, set per layer: Gemma 2/3's sliding layers) is True, only when t - s <
  `local_window`, prefix or not (the decoder's local-layer mask).
  """

  q_ids_BxT: Array
  kv_ids_BxS: Array
  prefix_BxT: Array | None = None
  local: Array | None = None
  causal: bool = flax.struct.field(pytree_node=False, default=True)
  window: int | None = flax.struct.field(pytree_node=False, default=None)
  local_window: int | None = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def for_decoder(cls, segment_ids_BxL: Array, *, prefix_BxL: Array | None = None,
                  hidden_start_BxL: Array | None = None, window: int | None = None,
                  local_window: int | None = None) -> "KernelMask":
    """Causal self-attention over packed rows; `hidden_start_BxL` marks slots seen only by
    their own query (each is its example's first token): they get an id of their own."""
    ids = segment_ids_BxL.astype(jnp.int32)
    if hidden_start_BxL is not None:
      ids = jnp.where(hidden_start_BxL & (ids > 0), -ids, ids)
    prefix = None if prefix_BxL is None else prefix_BxL.astype(bool)
    return cls(ids, ids, prefix, None, True, window, local_window)

  def materialise(self) -> Array:
    """The [B, 1, T, S] boolean mask this describes (for the XLA path and for checks)."""
    q, kv = self.q_ids_BxT[:, :, None], self.kv_ids_BxS[:, None, :]
    allowed = (q == kv) & (q != 0)
    t = jnp.arange(q.shape[1])[:, None]
    s = jnp.arange(kv.shape[2])[None, :]
    order = (t >= s) if self.causal else jnp.ones((q.shape[1], kv.shape[2]), bool)
    if self.window is not None:
      order = order & (t - s < self.window)
    if self.prefix_BxT is not None:
      order = order | (self.prefix_BxT[:, :, None] & self.prefix_BxT[:, None, :])
    allowed = allowed & order
    if self.local is not None and self.local_window is not None:
      allowed = allowed & jnp.where(self.local, t - s < self.local_window, True)
    return allowed[:, None]


# Splash's tiles are multiples of the 128 TPU lanes; larger tiles (up to MaxText's 512)
# cut the per-tile overhead where the sequence divides them.
_LANES = 128
_MAX_BLOCK = 512
# The mesh the trainer builds ('data', 'fsdp', 'model'): batch over the first two, heads
# over the third (the partitioner's rules for `batch` and `heads`).
BATCH_MESH_AXES = ("data", "fsdp")
HEADS_MESH_AXIS = "model"


def padded_length(length: int) -> int:
  """The sequence length splash runs at: `length` rounded up to whole 128-lane tiles."""
  return -(-length // _LANES) * _LANES


def block_sizes(q_length: int, kv_length: int):
  """Splash tiles for these lengths (each a multiple of 128 dividing the padded length)."""
  from jax.experimental.pallas.ops.tpu import splash_attention as splash

  def block(length):
    padded = padded_length(length)
    return max(b for b in range(_LANES, _MAX_BLOCK + 1, _LANES) if padded % b == 0)

  bq, bkv = block(q_length), block(kv_length)
  return splash.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv,
                           block_q_dkv=bq, block_kv_dkv=bkv, block_kv_dkv_compute=bkv,
                           block_q_dq=bq, block_kv_dq=bkv)


def _static_mask(t: int, s: int, heads: int, *, causal: bool, window: int | None):
  from jax.experimental.pallas.ops.tpu import splash_attention as splash
  if window is not None:
    one = splash.LocalMask((t, s), window_size=(window - 1, 0 if causal else None), offset=0)
  elif causal:
    one = splash.CausalMask((t, s))
  else:
    one = splash.FullMask((t, s))
  return splash.MultiHeadMask([one] * heads)


def _splash_one(q_NxTxH, k_KxSxH, v_KxSxH, q_ids_T, kv_ids_S, *, causal, window, softcap,
                interpret):
  """One example, one static mask: splash with the ids as its segment ids."""
  from jax.experimental.pallas.ops.tpu import splash_attention as splash
  n, t, _ = q_NxTxH.shape
  s = k_KxSxH.shape[1]
  kernel = splash.make_splash_mha(
      _static_mask(t, s, n, causal=causal, window=window), block_sizes=block_sizes(t, s),
      head_shards=1, q_seq_shards=1, attn_logits_soft_cap=softcap, interpret=interpret)
  return kernel(q_NxTxH, k_KxSxH, v_KxSxH, segment_ids=splash.SegmentIds(q_ids_T, kv_ids_S))


def _splash_local(q, k, v, q_ids, kv_ids, prefix, local, *, causal, window, local_window,
                  softcap, interpret):
  """[B, N, T, H] splash attention on (a shard of) the batch, padded to whole tiles."""
  b, n, t, h = q.shape
  s = k.shape[2]
  tp, sp = padded_length(t), padded_length(s)
  # Padded query slots take an id no key has and padded keys one no query has (both
  # negative, below every hidden-start id), so nothing real sees them; their rows are cut.
  pad_q, pad_kv = jnp.iinfo(jnp.int32).min, jnp.iinfo(jnp.int32).min + 1
  q = jnp.pad(q, ((0, 0), (0, 0), (0, tp - t), (0, 0)))
  k, v = (jnp.pad(x, ((0, 0), (0, 0), (0, sp - s), (0, 0))) for x in (k, v))
  q_ids = jnp.pad(q_ids, ((0, 0), (0, tp - t)), constant_values=pad_q)
  kv_ids = jnp.pad(kv_ids, ((0, 0), (0, sp - s)), constant_values=pad_kv)

  def run(window, q_ids, kv_ids, causal):
    one = functools.partial(_splash_one, causal=causal, window=window, softcap=softcap,
                            interpret=interpret)
    return jax.vmap(one)(q, k, v, q_ids, kv_ids)

  def attend(window, prefix_window):
    out = run(window, q_ids, kv_ids, causal)
    if prefix is None:
      return out
    # A prefix query sees the prefix keys of its example (the causal keys before it are
    # prefix keys too) and every other query what the causal mask gives it; so the prefix
    # rows come from a second, non-causal call whose keys are the prefix keys only, and
    # the rows are chosen per query.
    prefix_q = jnp.pad(prefix, ((0, 0), (0, tp - t)))
    prefix_kv = jnp.pad(prefix, ((0, 0), (0, sp - s)))
    full = run(prefix_window, q_ids, jnp.where(prefix_kv, kv_ids, pad_kv), False)
    return jnp.where(prefix_q[:, None, :, None], full, out)

  if local is None or local_window is None:
    out = attend(window, None)
  else:  # a sliding layer's window limits the prefix too
    out = jax.lax.cond(local, lambda: attend(local_window, local_window),
                       lambda: attend(window, None))
  return out[:, :, :t]


def _mesh_specs(mesh, b: int, n: int, kv_heads: int):
  """PartitionSpecs of q/k/v [B, N, T, H] and ids [B, T] for the kernel's shard_map."""
  from jax.sharding import PartitionSpec as P
  batch = tuple(a for a in BATCH_MESH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
  if batch and b % int(np.prod([mesh.shape[a] for a in batch])):
    batch = ()  # the batch does not divide: every shard runs the whole batch
  heads = None
  if (HEADS_MESH_AXIS in mesh.axis_names and mesh.shape[HEADS_MESH_AXIS] > 1
      and n % mesh.shape[HEADS_MESH_AXIS] == 0 and kv_heads % mesh.shape[HEADS_MESH_AXIS] == 0):
    heads = HEADS_MESH_AXIS
  batch = batch or None
  return P(batch, heads, None, None), P(batch, None)


def splash_attention(q_BxTxNxH: Array, k_BxSxKxH: Array, v_BxSxKxH: Array, mask: KernelMask, *,
                     logit_softcap: float | None = None, dtype=jnp.float32,
                     interpret: bool = False) -> Array:
  """Attention through Pallas' splash kernel; [B, T, N, H] like `layers.dot_product_attention`.

  No scaling inside (callers scale the queries). Rows of padding queries (id 0) are zeros,
  as in the reference. Under a mesh in context (`jax.set_mesh`) the kernel runs per shard
  (batch over 'data' x 'fsdp', heads over 'model' where they divide): Mosaic kernels are
  not partitioned by XLA. `interpret=True` runs the kernel's Python on any backend (tests).
  """
  q, k, v = (jnp.swapaxes(x.astype(dtype), 1, 2) for x in (q_BxTxNxH, k_BxSxKxH, v_BxSxKxH))
  b, n, _, _ = q.shape
  local = functools.partial(
      _splash_local, causal=mask.causal, window=mask.window, local_window=mask.local_window,
      softcap=logit_softcap, interpret=interpret)
  prefix = mask.prefix_BxT
  args = (q, k, v, mask.q_ids_BxT, mask.kv_ids_BxS)
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    out = local(*args, prefix, mask.local)
  else:
    qkv_spec, ids_spec = _mesh_specs(mesh, b, n, k.shape[1])
    from jax.sharding import PartitionSpec as P
    specs = (qkv_spec, qkv_spec, qkv_spec, ids_spec, ids_spec)
    if prefix is not None:
      specs, args = specs + (ids_spec,), args + (prefix,)
    if mask.local is not None:
      specs, args = specs + (P(),), args + (mask.local,)

    def body(*xs):
      xs = list(xs)
      loc = xs.pop() if mask.local is not None else None
      pre = xs.pop() if prefix is not None else None
      return local(*xs, pre, loc)

    out = jax.shard_map(body, in_specs=specs, out_specs=qkv_spec, check_vma=False)(*args)
  out_BxTxNxH = jnp.swapaxes(out, 1, 2)
  valid_BxTx1x1 = (mask.q_ids_BxT != 0)[:, :, None, None]
  return jnp.where(valid_BxTx1x1, out_BxTxNxH, 0.0).astype(out_BxTxNxH.dtype)
