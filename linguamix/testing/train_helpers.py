"""A tiny SeqIO task and tiny mT5 gin for the trainer's tests (no files, no network).

`train_tiny.reverse` maps a random lowercase word sequence to its reverse, byte-level;
it has train and validation splits, a prediction metric and a score metric.
"""

from __future__ import annotations

import pathlib
import random

import seqio
import tensorflow as tf

TASK = "train_tiny.reverse"
VOCAB = seqio.ByteVocabulary()


def _examples(split: str) -> dict[str, list[str]]:
  rng = random.Random({"train": 0, "validation": 1}[split])
  n = {"train": 400, "validation": 12}[split]
  inputs = ["".join(rng.choice("abcdef") for _ in range(rng.randint(3, 10))) for _ in range(n)]
  return {"inputs": inputs, "targets": [s[::-1] for s in inputs]}


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices(_examples(split))


def exact_match(targets, predictions):
  return {"exact_match": 100.0 * sum(t == p for t, p in zip(targets, predictions)) / len(targets)}


def mean_score(targets, scores):
  del targets
  return {"mean_log_likelihood": float(sum(scores) / len(scores))}


def register() -> None:
  if TASK in seqio.TaskRegistry.names():
    return
  features = {k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")}
  seqio.TaskRegistry.add(
      TASK,
      source=seqio.FunctionDataSource(_dataset_fn, splits=("train", "validation")),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
      output_features=features,
      metric_fns=[exact_match, mean_score])


register()

TINY_MODEL_GIN = """
from __gin__ import dynamic_registration
import seqio
import linguamix.testing.train_helpers
from linguamix.models import encoder_decoder
from linguamix.models import mt5

VOCABULARY = @seqio.ByteVocabulary()
MODEL = @encoder_decoder.EncoderDecoderModel()
encoder_decoder.EncoderDecoderModel:
  config = @mt5.MT5Config()
  vocabulary = %VOCABULARY
mt5.MT5Config:
  vocab_size = 264
  emb_dim = 32
  num_heads = 4
  num_encoder_layers = 1
  num_decoder_layers = 1
  head_dim = 8
  mlp_dim = 64
  dropout_rate = %DROPOUT_RATE
  dtype = 'float32'

MIXTURE_OR_TASK_NAME = 'train_tiny.reverse'
TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 16}
INITIAL_CHECKPOINT_PATH = None
BATCH_SIZE = 8
TRAIN_STEPS = 6
EVAL_PERIOD = 3
EVAL_STEPS = 2
RANDOM_SEED = 0
USE_CACHED_TASKS = False
DROPOUT_RATE = 0.0
"""


def write_gin(directory: pathlib.Path, extra: str = "") -> pathlib.Path:
  path = directory / "tiny.gin"
  path.write_text(TINY_MODEL_GIN + extra)
  return path
