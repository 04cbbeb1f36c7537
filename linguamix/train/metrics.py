"""Metrics out: TensorBoard event files and a JSON-lines log, written by host 0 only;
the per-device peak FLOP/s table for MFU."""

from __future__ import annotations

import json
import os
from typing import Mapping

import jax

# bf16 dense peak FLOP/s per chip (spec/performance.md).
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

  def __init__(self, model_dir: str):
    self.enabled = jax.process_index() == 0
    self.model_dir = model_dir
    self._writers = {}
    if self.enabled:
      os.makedirs(model_dir, exist_ok=True)
      self._jsonl = open(os.path.join(model_dir, "metrics.jsonl"), "a")

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
