"""The model contract the trainer, evaluator and inference share (T5X's).

A model wraps a Flax linen module and knows its feature converter and vocabulary.
Batches are dicts of arrays as the model's SeqIO feature converter produces them
(`EncDecFeatureConverter` or `DecoderFeatureConverter`), packed or not.

Parameters carry logical axis names (`nn.with_logical_partitioning`) from
`LOGICAL_AXES`; the trainer maps them to mesh axes with one rule table.
"""

from __future__ import annotations

import abc
import copy
import math
from typing import Any, Mapping

import jax
import seqio

Array = jax.Array
Batch = Mapping[str, Array]
Params = Any  # a pytree of arrays
Metrics = Mapping[str, Array]

# Logical axis names used by every model; the trainer's rule table maps them to mesh axes.
LOGICAL_AXES = (
    "batch",      # examples
    "length",     # sequence positions
    "embed",      # model width d_model
    "mlp",        # MLP hidden width
    "heads",      # attention (query) heads
    "kv_heads",   # key/value heads (grouped-query attention)
    "kv",         # per-head width
    "joined_kv",  # heads * kv, in 2-D attention kernels
    "vocab",      # vocabulary
    "layers",     # stacked layers under nn.scan
    "relpos_buckets",  # T5 relative position buckets
    "expert",     # mixture-of-experts experts (expert parallelism)
)


class BaseModel(abc.ABC):
  """What the trainer needs from a model (T5X's `BaseTransformerModel` contract)."""

  feature_converter_cls: type[seqio.FeatureConverter]
  # What a decoder-only model puts before each sequence (`DecoderOnlyModel`); None: no
  # such slot (encoder-decoder models). Evaluation derives it from the tokenizer.
  start_token: str | None = None
  # `optim.build` name the trainer uses unless a gin names another.
  default_optimizer: str = "adamw"

  def with_config(self, config) -> "BaseModel":
    """The same model over another config of its family (its module rebuilt from it)."""
    model = copy.copy(self)
    model.config = config
    model.module = type(self.module)(config)
    return model

  def with_start_token(self, start_token: str) -> "BaseModel":
    """The same model with another start-token policy; a model without the slot is itself."""
    return self

  def attention_needs(self) -> dict[str, str]:
    """What the model's attention asks a kernel to express (feature -> why), from its
    config; `attention_kernels.attention_impl_for` picks the implementation from it."""
    return self.config.attention_needs()

  def tied_output_params(self) -> int:
    """Parameters of an output layer that is the input embedding (tied): a matmul whose
    parameters `matmul_params` would otherwise leave out as an embedding lookup."""
    return 0

  def matmul_params(self, abstract_params: Params) -> tuple[int, int]:
    """(encoder, other) parameter counts that enter matmuls, for MFU's 6 x N x tokens:
    embedding lookups left out, a tied output layer counted."""
    enc = dec = 0
    for path, x in jax.tree_util.tree_leaves_with_path(abstract_params):
      keys = [str(getattr(k, "key", k)) for k in path]
      if "embedding" in keys[-1]:
        continue
      n = math.prod(x.shape)
      if keys[0] == "encoder":
        enc += n
      else:
        dec += n
    return enc, dec + self.tied_output_params()

  def attention_flops(self, lengths: Mapping[str, int]) -> float:
    """Training FLOPs (forward + backward) of one row's attention scores and weighted sums
    at the model feature `lengths`, over the full square (as a materialised or fused
    kernel without causal skipping computes it); 0 for a model that does not say."""
    return 0.0

  def trainable_mask(self, params: Params) -> Any:
    """A tree of bools like `params` marking what trains (LoRA: the adapters); None: everything."""
    return None

  @property
  @abc.abstractmethod
  def vocabulary(self) -> seqio.Vocabulary:
    """Vocabulary for both inputs and targets."""

  @abc.abstractmethod
  def init_variables(self, rng: Array, input_shapes: Mapping[str, tuple[int, ...]]) -> Params:
    """Initial variables, boxed with logical axis names (call under `jax.eval_shape` for shapes)."""

  @abc.abstractmethod
  def loss_fn(self, params: Params, batch: Batch, dropout_rng: Array | None) -> tuple[Array, Metrics]:
    """Mean cross-entropy over target tokens weighted by loss weights, plus z-loss; metrics."""

  @abc.abstractmethod
  def score_batch(self, params: Params, batch: Batch) -> Array:
    """Per-example summed target log-likelihood, weighted by loss weights, no z-loss. [B]."""

  @abc.abstractmethod
  def predict_batch_with_aux(self, params: Params, batch: Batch, rng: Array | None = None,
                             **decode_kwargs) -> tuple[Array, Mapping[str, Array]]:
    """Decoded target token ids [B, L] and {'scores': [B]}: each prediction's summed
    log-likelihood (beam search: length-normalised). Greedy unless decode_kwargs or the
    constructor ask otherwise (`decoding.decode_options` names the options)."""

  def predict_batch(self, params: Params, batch: Batch, rng: Array | None = None, **decode_kwargs) -> Array:
    """Decoded target token ids [B, L], the tokens of `predict_batch_with_aux`."""
    return self.predict_batch_with_aux(params, batch, rng, **decode_kwargs)[0]
