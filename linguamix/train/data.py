"""SeqIO datasets for training and evaluation, per host, deterministic and resumable.

A `DatasetConfig` (T5X's) names the mixture, lengths, split and global batch size. The
host pipeline is seeded and deterministic, so its position is just the number of
batches consumed: restoring skips that many batches.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable, Iterator, Mapping

import gin
import numpy as np
import seqio
import tensorflow as tf

from linguamix.t5x_tasks import vocab as vocab_lib


@dataclasses.dataclass
class DatasetConfig:
  """T5X's dataset config. `shard_by`: 'source' reads `seqio.ShardInfo(host, hosts)`
  (T5X; a recipe mixture then gives host h the positions h, h + hosts, ... of its one
  global stream); 'rows' (runs/finetune.gin's train default) reads the whole stream on
  every host and keeps this host's rows of each packed global batch, so any host count
  trains the same packed batches in the same order."""

  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int] | None
  split: str
  batch_size: int
  shuffle: bool
  seed: int | None = None
  use_cached: bool = False
  pack: bool = True
  shard_by: str = "source"


def get_mixture_or_task(name: str) -> seqio.Task | seqio.Mixture:
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    known = sorted(seqio.MixtureRegistry.names()) + sorted(seqio.TaskRegistry.names())
    close = difflib.get_close_matches(name, known, n=5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    from linguamix.mixtures import registry  # pylint: disable=g-import-not-at-top
    hint = f": {why}" if (why := registry.explain_unknown(name)) else hint
    raise ValueError(
        f"unknown mixture or task {name!r} (MIXTURE_OR_TASK_NAME); {len(known)} are "
        f"registered by the imported modules{hint}") from None


def check_vocabulary(name: str, vocabulary: seqio.Vocabulary | None) -> None:
  """An error when the tasks of `name` tokenize otherwise than the model's vocabulary: a
  model gin that forgets to bind the tasks' vocabulary would else train (and count
  epochs) on token ids of another tokenizer, silently."""
  task_vocab = get_mixture_or_task(name).output_features["targets"].vocabulary
  vocab_lib.check_same_tokenization(f"MIXTURE_OR_TASK_NAME={name!r}", task_vocab, vocabulary)


@gin.configurable(module="linguamix.train.data")
def train_steps(total_steps: int | None, train_epochs: float | None, cfg: DatasetConfig,
                converter: seqio.FeatureConverter, *, seed: int, initial_step: int = 0,
                log: Callable[[str], None] = print, default_steps: int | None = None) -> int:
  """TRAIN_STEPS (absolute) when given; else `initial_step` + TRAIN_EPOCHS epochs of
  packed batches, counted once over one epoch of the train stream (cached, printed:
  linguamix.mixtures.epochs); else `default_steps` (quickstart.gin: 200)."""
  if total_steps is not None:
    if train_epochs is not None:
      log(f"note: TRAIN_STEPS={total_steps} is set, so TRAIN_EPOCHS={train_epochs} is ignored")
    return int(total_steps)
  if train_epochs is None:
    if default_steps is not None:
      return int(default_steps)
    raise ValueError("set TRAIN_STEPS (absolute, counting the initial checkpoint's steps) "
                     "or TRAIN_EPOCHS (epochs of MIXTURE_OR_TASK_NAME)")
  if not train_epochs > 0:
    raise ValueError(f"TRAIN_EPOCHS={train_epochs!r}: must be a number > 0")
  from linguamix.mixtures import epochs
  count = epochs.count_epoch(cfg.mixture_or_task_name, cfg.task_feature_lengths,
                             cfg.batch_size, converter, seed)
  steps = count.steps(train_epochs)
  log(f"TRAIN_EPOCHS={train_epochs}: {count.describe()}; TRAIN_STEPS = {initial_step} + "
      f"{steps} = {initial_step + steps}")
  return initial_step + steps


def _use_cache(mt, use_cached: bool) -> bool:
  tasks = mt.tasks if isinstance(mt, seqio.Mixture) else [mt]
  if use_cached and not all(t.cache_dir for t in tasks):
    print(f"note: USE_CACHED_TASKS=True but {mt.name!r} has no cache; reading raw data")
    return False
  return use_cached


def host_dataset(
    cfg: DatasetConfig,
    feature_converter: seqio.FeatureConverter,
    *,
    host_index: int,
    num_hosts: int,
    seed: int,
    num_epochs: int | None = None,
    skip_batches: int = 0,
) -> tf.data.Dataset:
  """This host's batches (`batch_size // num_hosts` rows each), after `skip_batches`."""
  mt = get_mixture_or_task(cfg.mixture_or_task_name)
  if cfg.batch_size % num_hosts:
    raise ValueError(f"BATCH_SIZE={cfg.batch_size} is not divisible by {num_hosts} hosts")
  host_rows = cfg.batch_size // num_hosts
  shard = seqio.ShardInfo(host_index, num_hosts) if cfg.shard_by == "source" else None
  ds = mt.get_dataset(
      sequence_length=cfg.task_feature_lengths, split=cfg.split,
      use_cached=_use_cache(mt, cfg.use_cached), shuffle=cfg.shuffle,
      seed=seed if cfg.shuffle else None, shard_info=shard, num_epochs=num_epochs)
  ds = feature_converter(ds, cfg.task_feature_lengths)
  if cfg.shard_by == "rows":
    start = host_index * host_rows
    ds = ds.batch(cfg.batch_size, drop_remainder=True)
    ds = ds.map(lambda b: {k: v[start:start + host_rows] for k, v in b.items()})
  else:
    ds = ds.batch(host_rows, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  # Consecutive per-example maps (the tasks', the converter's) as one: each map an
  # element passes costs thread hand-offs, often more than its work.
  options.experimental_optimization.map_fusion = True
  return ds.with_options(options).skip(skip_batches).prefetch(tf.data.AUTOTUNE)


def numpy_batches(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  return iter(ds.as_numpy_iterator())


def target_tokens(batch: Mapping[str, np.ndarray]) -> int:
  """Non-padding target tokens of a batch (those that carry loss)."""
  if "decoder_loss_weights" in batch:
    return int(np.sum(batch["decoder_loss_weights"] > 0))
  return int(np.sum(batch["decoder_target_tokens"] > 0))


def all_tokens(batch: Mapping[str, np.ndarray]) -> int:
  """Non-padding tokens fed to the model (encoder inputs + decoder targets)."""
  n = int(np.sum(batch["decoder_target_tokens"] > 0))
  if "encoder_input_tokens" in batch:
    n += int(np.sum(batch["encoder_input_tokens"] > 0))
  return n


def slot_tokens(batch: Mapping[str, np.ndarray]) -> int:
  """All token slots, padding included (denominator of packing efficiency)."""
  n = batch["decoder_target_tokens"].size
  if "encoder_input_tokens" in batch:
    n += batch["encoder_input_tokens"].size
  return int(n)
