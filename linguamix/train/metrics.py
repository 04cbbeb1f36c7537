"""Metrics out: TensorBoard event files and a JSON-lines log, written by host 0 only;
the per-device peak FLOP/s table for MFU.

Each step once after any number of resumes: a run restored at step S first drops what
an earlier process logged past S (its state was lost, the steps are redone), from
`metrics.jsonl` and from every event file under MODEL_DIR (each rewritten atomically
without those events), so neither a JSON reader nor TensorBoard sees a step twice.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Mapping

import jax

from linguamix import atomic

# bf16 dense peak FLOP/s per chip (the vendors' published specifications; docs/performance.md).
PEAK_FLOPS = {
    "H100": 989e12, "H200": 989e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def peak_flops_per_device(device: jax.Device | None = None) -> float | None:
  """Peak of the device kind, or None (CPU: no meaningful peak)."""
  kind = (device or jax.devices()[0]).device_kind
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if name.lower() in kind.lower():
      return PEAK_FLOPS[name]
  return None


class MetricWriter:
  """Scalars per step to `<dir>/<split>/events.*` and `<dir>/metrics.jsonl`."""

  def __init__(self, model_dir: str, resume_step: int = 0):
    """`resume_step`: the step the run restored (0: fresh); later entries are dropped."""
    self.enabled = jax.process_index() == 0
    self.model_dir = model_dir
    self._writers = {}
    if self.enabled:
      os.makedirs(model_dir, exist_ok=True)
      path = os.path.join(model_dir, "metrics.jsonl")
      truncate_jsonl(path, resume_step)
      truncate_event_files(model_dir, resume_step)
      self._jsonl = open(path, "a")

  def _writer(self, split: str):
    import tensorflow as tf  # TensorBoard event files through tf.summary
    if split not in self._writers:
      self._writers[split] = tf.summary.create_file_writer(os.path.join(self.model_dir, split))
    return self._writers[split]

  def write(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    import tensorflow as tf
    scalars = {k: float(v) for k, v in scalars.items()}
    with self._writer(split).as_default():
      for k, v in scalars.items():
        tf.summary.scalar(k, v, step=step)
    self._jsonl.write(json.dumps({"step": int(step), "split": split, **scalars}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      for w in self._writers.values():
        w.flush()
        w.close()
      self._jsonl.close()


def truncate_jsonl(path: str, last_step: int) -> int:
  """Drops `metrics.jsonl` lines with step > last_step (and a torn last line); returns
  how many lines were dropped."""
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if int(json.loads(line)["step"]) <= last_step:
        kept.append(line if line.endswith("\n") else line + "\n")
    except (ValueError, KeyError, TypeError):
      pass  # a line torn by a kill mid-write
  if len(kept) != len(lines):
    atomic.write_text(path, "".join(kept))
  return len(lines) - len(kept)


def truncate_event_files(model_dir: str, last_step: int) -> int:
  """Rewrites each TensorBoard event file under model_dir without events past
  last_step (atomically, same name); returns how many events were dropped."""
  paths = glob.glob(os.path.join(model_dir, "**", "events.out.tfevents.*"), recursive=True)
  paths = [p for p in paths if f"{os.sep}checkpoint_" not in p and ".tmp-" not in p]
  if not paths:
    return 0
  import tensorflow as tf  # event files are TFRecord files of `Event` protos
  dropped = 0
  for path in paths:
    kept, n, torn = [], 0, False
    try:
      for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        n += 1
        event = tf.compat.v1.Event.FromString(record)
        if event.step <= last_step or not event.HasField("summary"):
          kept.append(record)
    except tf.errors.DataLossError:
      torn = True  # a record torn by a kill mid-write: dropped with what follows it
    if torn or len(kept) != n:
      tmp = f"{path}.tmp-truncate"
      with tf.io.TFRecordWriter(tmp) as w:
        for record in kept:
          w.write(record)
      os.replace(tmp, path)
      dropped += n - len(kept)
  return dropped
