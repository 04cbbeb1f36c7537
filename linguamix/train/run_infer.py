"""`python -m linguamix.infer`: predict | score | predict_with_aux over a split of a
mixture or task with a checkpoint (runs/infer.gin), one JSONL file per task."""

from __future__ import annotations

import json
import os
from typing import Mapping

import gin
import jax
import numpy as np
import seqio

from linguamix import atomic
from linguamix.train import data as data_lib
from linguamix.train import evaluation
from linguamix.train import partitioning
from linguamix.train import run_eval

MODES = ("predict", "score", "predict_with_aux")


def _text(vocab: seqio.Vocabulary, ids) -> str:
  return vocab.decode([int(i) for i in ids])


@gin.configurable
def infer(*, model, checkpoint_path: str, output_dir: str, mixture_or_task_name: str,
          mode: str = "predict", split: str = "test", batch_size: int = 32,
          task_feature_lengths: Mapping[str, int] | None = None,
          num_examples: int | None = None, seed: int = 0) -> dict[str, str]:
  """Writes `<output_dir>/<task>-<mode>.jsonl`; returns {task: path}. `seed` seeds sampling
  (a model gin's decode_method='sample'); greedy and beam search ignore it."""
  if mode not in MODES:
    raise ValueError(f"infer mode {mode!r}; expected one of {MODES}")
  mt = data_lib.get_mixture_or_task(mixture_or_task_name)
  tasks = [t for t in seqio.get_subtasks(mt) if split in t.splits]
  if not tasks:
    raise ValueError(f"no task of {mixture_or_task_name!r} has split {split!r}")
  data_lib.check_vocabulary(mixture_or_task_name, model.vocabulary)
  params = run_eval.load_checkpoint_params(model, checkpoint_path, task_feature_lengths)
  runner = evaluation.BatchRunner(partitioning.Partitioner(), batch_size)
  rng = jax.random.key(seed)

  def predict_with_aux(b):  # one decode gives both the tokens and their scores
    tokens, aux = model.predict_batch_with_aux(params, b, rng)
    return tokens, aux["scores"]

  pred = jax.jit(predict_with_aux if mode == "predict_with_aux"
                 else lambda b: model.predict_batch(params, b, rng))
  score = jax.jit(lambda b: model.score_batch(params, b))
  converter = model.feature_converter_cls(pack=False)
  paths = {}
  os.makedirs(output_dir, exist_ok=True)
  for task in tasks:
    ds = task.get_dataset(task_feature_lengths, split=split, shuffle=False, num_epochs=1)
    if num_examples:
      ds = ds.take(num_examples)
    examples = list(ds.as_numpy_iterator())
    lengths = task_feature_lengths or {
        k: max(len(e[k]) for e in examples) for k in ("inputs", "targets")}
    model_ds = converter(ds, lengths).enumerate()
    if mode == "score":
      outputs = dict(runner(score, model_ds))
    else:
      outputs = dict(runner(pred, model_ds))
    path = os.path.join(output_dir, f"{task.name}-{mode}.jsonl")
    if jax.process_index() == 0:
      vocab = task.output_features["targets"].vocabulary
      with atomic.atomic_write(path) as f:  # a killed run leaves no half file
        for i, ex in enumerate(examples):
          rec = {"index": i}
          for k in ("inputs", "targets"):
            pre = ex.get(f"{k}_pretokenized")
            rec[k] = pre.decode() if isinstance(pre, bytes) else _text(vocab, ex[k])
          if mode == "score":
            rec["score"] = float(outputs[i])
          else:
            tokens, score = outputs[i] if mode == "predict_with_aux" else (outputs[i], None)
            rec["prediction"] = _text(vocab, tokens)
            if score is not None:
              rec["aux"] = {"score": float(np.asarray(score).reshape(-1)[0])}
          f.write(json.dumps(rec, ensure_ascii=False) + "\n")
      print(f"{task.name}: {len(examples)} examples -> {path}")
    paths[task.name] = path
  return paths
