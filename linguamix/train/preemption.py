"""Preemption notices: SIGTERM (what preemptible TPU VMs, Kubernetes and most schedulers
send before a kill) and JAX's multi-host preemption sync point.

The train loop asks `watch.reached(step)` after every step; when it says yes the
trainer writes a checkpoint at that step and raises `Preempted`, which the entry point
turns into exit status `EXIT_PREEMPTED` (143 = 128 + SIGTERM, what a scheduler expects
from a job that stopped on SIGTERM). The same command then resumes from that step.

One process: a Python SIGTERM handler sets a flag (the step in flight finishes).
Several processes (`jax.distributed`): JAX's coordination service receives the notice
on any host and `multihost_utils.reached_preemption_sync_point` agrees on one step for
all hosts; no Python handler is installed there (it would replace JAX's own).
"""

from __future__ import annotations

import signal
import threading

import jax

from linguamix import errors

EXIT_PREEMPTED = 128 + signal.SIGTERM


class Preempted(errors.UserError):
  """Stopped on a preemption notice after writing a checkpoint."""
  label = "preempted"
  exit_code = EXIT_PREEMPTED


class Watch:
  """`with Watch() as watch: ... if watch.reached(step): save; raise Preempted`."""

  def __init__(self):
    self.signal: int | None = None
    self._previous = None

  def _handler(self, signum, frame):
    del frame
    self.signal = signum

  def __enter__(self) -> "Watch":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handler)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the preemption service is disabled (jax config)
        return False
    return self.signal is not None
