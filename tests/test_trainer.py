"""linguamix.train.trainer's parts on their own: the hook schedule, the one-step-late
metrics fetch, NaN stop, throughput windows, checkpoints at the right steps (a real
Orbax `Checkpointer`), preemption on a real SIGTERM. The train step here is a plain
function over numpy arrays, so nothing is compiled; tests/test_train.py runs the whole
trainer on a real model."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from linguamix.train import checkpoints as ckpt_lib
from linguamix.train import preemption
from linguamix.train import trainer as trainer_lib


def _batches(losses):
  """Host batches whose step reports `losses[i]` as its loss; 3 target tokens each."""
  for loss in losses:
    yield {"loss": np.float32(loss), "decoder_target_tokens": np.array([[5, 6, 7, 0]])}


def _step(state, batch, rng):
  """A step that counts itself in the state and reports the batch's loss."""
  del rng
  new = {"params": {"w": state["params"]["w"] + 1.0}, "step": state["step"] + 1}
  return new, {"loss": batch["loss"], "grad_norm": np.float32(1.0)}


def _state():
  return {"params": {"w": np.zeros((2, 3), np.float32)}, "step": np.int32(0)}


class _Log:
  def __init__(self):
    self.rows = []

  def __call__(self, step, split, scalars):
    self.rows.append((step, split, dict(scalars)))


def _trainer(total, *, log_period=1, nan_stop=None, clock=None, write=None):
  metrics = trainer_lib.StepMetrics(write or _Log(), log_period=log_period, total_steps=total,
                                    nan_stop=nan_stop, **({"clock": clock} if clock else {}))
  return trainer_lib.Trainer(
      _step, metrics, batch_counts=lambda b: (int(np.sum(b["decoder_target_tokens"] > 0)), 4, 10.0))


def test_hooks_fire_every_n_steps_at_the_end_and_in_order():
  t = _trainer(10)
  calls = []
  t.add_hook(lambda loop: calls.append(("a", loop.step)), every=3)
  t.add_hook(lambda loop: calls.append(("b", loop.step)), every=4, at_end=True)
  loop = trainer_lib.LoopState(state=_state(), step=0, total_steps=10)
  loop = t.run(loop, _batches([1.0] * 10))
  assert calls == [("a", 3), ("b", 4), ("a", 6), ("b", 8), ("a", 9), ("b", 10)]
  assert loop.step == 10 and float(loop.state["params"]["w"][0, 0]) == 10.0
  assert loop.tokens == 30 and loop.pending is None


def test_a_resumed_loop_starts_at_its_step_and_keeps_the_schedule():
  t = _trainer(9)
  seen = []
  t.add_hook(lambda loop: seen.append(loop.step), every=4)
  t.run(trainer_lib.LoopState(state=_state(), step=5, total_steps=9), _batches([1.0] * 4))
  assert seen == [8]
  with pytest.raises(ValueError, match="period must be >= 1"):
    t.add_hook(lambda loop: None, every=0)


def test_metrics_are_fetched_one_step_late_unless_a_hook_syncs():
  t = _trainer(4)
  seen = []
  t.add_hook(lambda loop: seen.append(("async", loop.step, dict(loop.last_train))), every=1)
  t.add_hook(lambda loop: seen.append(("sync", loop.step, dict(loop.last_train))), every=2,
             sync=True)
  loop = t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=4),
               _batches([4.0, 3.0, 2.0, 1.0]))
  losses = [(kind, step, m.get("loss")) for kind, step, m in seen]
  assert losses == [("async", 1, None), ("async", 2, 4.0), ("sync", 2, 3.0),
                    ("async", 3, 3.0), ("async", 4, 2.0), ("sync", 4, 1.0)]
  assert loop.last_train["loss"] == 1.0


def test_throughput_is_written_every_log_period_and_at_the_last_step():
  log = _Log()
  ticks = iter(range(100))
  t = _trainer(5, log_period=2, write=log, clock=lambda: float(next(ticks)))
  t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=5), _batches([1.0] * 5))
  assert [(s, split) for s, split, _ in log.rows] == [(2, "train"), (4, "train"), (5, "train")]
  # Window 1: clock 0 -> 1 for 2 steps of 3 target tokens; each window restarts the clock.
  first, last = log.rows[0][2], log.rows[-1][2]
  assert first["tokens_per_s"] == 6.0 and first["all_tokens_per_s"] == 8.0
  assert first["steps_per_s"] == 2.0 and "mfu" not in first
  assert last["steps_per_s"] == 1.0 and last["loss"] == 1.0


def test_mfu_divides_the_window_flops_by_the_devices_peak():
  out = trainer_lib.Throughput(t0=0.0)
  for _ in range(3):
    out.add(trainer_lib.StepOutput(1, None, 2, 4, 1e12))
  rates = out.rates(2.0, peak_flops=1e12, num_devices=2)
  assert rates["mfu"] == pytest.approx(3e12 / 2.0 / 2e12)
  assert rates["tokens_per_s"] == 3.0


class _FakeCheckpointer:
  """The two questions NanStop asks; the real Checkpointer is exercised below."""

  def __init__(self, latest):
    self.latest, self.waited = latest, False

  def wait(self):
    self.waited = True

  def latest_step(self):
    return self.latest


@pytest.mark.parametrize("bad", ["loss", "grad_norm"])
def test_nan_stop_names_the_step_and_the_last_good_checkpoint(bad):
  stop = trainer_lib.NanStop(_FakeCheckpointer(4), "/runs/x")
  stop({"loss": 1.0, "grad_norm": 2.0}, 5)  # finite: nothing happens
  m = {"loss": 1.0, "grad_norm": 2.0, bad: float("nan")}
  with pytest.raises(trainer_lib.TrainingError, match=r"at step 6; stopped\. The last good "
                     r"checkpoint is /runs/x/checkpoint_4"):
    stop(m, 6)
  assert stop.checkpointer.waited
  with pytest.raises(trainer_lib.TrainingError, match="stopped before any checkpoint"):
    trainer_lib.NanStop(_FakeCheckpointer(None), "/runs/x")({"loss": np.inf, "grad_norm": 1.0}, 1)


def test_a_nan_step_stops_before_a_syncing_hook_sees_it():
  ckpt = _FakeCheckpointer(2)
  t = _trainer(6, nan_stop=trainer_lib.NanStop(ckpt, "/runs/x"))
  saved = []
  t.add_hook(lambda loop: saved.append(loop.step), every=1, sync=True)
  with pytest.raises(trainer_lib.TrainingError, match="at step 3"):
    t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=6),
          _batches([1.0, 1.0, float("nan"), 1.0, 1.0, 1.0]))
  assert saved == [1, 2]


def _saved_steps(model_dir) -> list[int]:
  return sorted(int(n.split("_")[1]) for n in os.listdir(model_dir) if n.startswith("checkpoint_")
                and n.split("_")[1].isdigit())


def _checkpointing_trainer(model_dir, total, *, eval_period, checkpoint_period, keep=100):
  """The trainer's own wiring of evaluation and checkpoints (see trainer.train)."""
  checkpointer = ckpt_lib.Checkpointer(str(model_dir), keep=keep, best_metric="training_eval/loss")
  summary = {}
  saving = trainer_lib.Checkpointing(
      checkpointer, {"initial_step": 0, "seed": 7, "fingerprint": "f"}, summary)
  evals = []
  evaluating = trainer_lib.Evaluation(
      lambda params, step: evals.append(step) or {"training_eval/loss": float(step)}, summary)
  t = _trainer(total)
  t.add_hook(evaluating, every=eval_period, at_end=True, sync=True)
  t.add_hook(saving, every=eval_period, at_end=True, sync=True)
  t.add_hook(saving, every=checkpoint_period, sync=True)
  return t, checkpointer, saving, summary, evals


def test_checkpoints_at_evals_at_the_period_and_at_the_end_each_once(tmp_path):
  t, checkpointer, _, summary, evals = _checkpointing_trainer(
      tmp_path, 7, eval_period=4, checkpoint_period=3)
  loop = t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=7), _batches([1.0] * 7))
  checkpointer.close()
  assert evals == [4, 7]
  assert _saved_steps(tmp_path) == [3, 4, 6, 7]
  assert loop.saved_step == 7 and summary["last_checkpoint"] == str(tmp_path / "checkpoint_7")
  meta = checkpointer.read_meta(6)
  assert meta["batches"] == 6 and meta["seed"] == 7 and meta["fingerprint"] == "f"
  import orbax.checkpoint as ocp
  restored = ocp.PyTreeCheckpointer().restore(str(tmp_path / "checkpoint_4" / "state"))
  np.testing.assert_array_equal(restored["params"]["w"], np.full((2, 3), 4.0))


def test_an_evaluations_metrics_go_with_its_checkpoint(tmp_path):
  """keep=1 and the best (lowest) eval loss: the latest and the best-evaluated checkpoint
  stay; checkpoints saved between evaluations carry no metrics and go."""
  t, checkpointer, _, _, _ = _checkpointing_trainer(
      tmp_path, 7, eval_period=4, checkpoint_period=3, keep=1)
  t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=7), _batches([1.0] * 7))
  checkpointer.close()
  assert _saved_steps(tmp_path) == [4, 7]


def test_preemption_checkpoints_the_step_done_and_raises(tmp_path):
  """A real SIGTERM during step 3: the step finishes, checkpoint_3 is written, Preempted."""
  t, checkpointer, saving, _, _ = _checkpointing_trainer(
      tmp_path, 10, eval_period=100, checkpoint_period=2)

  def step(state, batch, rng):
    if int(state["step"]) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return _step(state, batch, rng)

  t.train_step = step
  with preemption.Watch() as watch:
    t.add_hook(trainer_lib.Preemption(watch, saving, t.sync, checkpointer, str(tmp_path)))
    with pytest.raises(preemption.Preempted, match=r"SIGTERM at step 3: wrote .*checkpoint_3"):
      t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=10), _batches([1.0] * 10))
  checkpointer.close()
  assert _saved_steps(tmp_path) == [2, 3]
  assert checkpointer.read_meta(3)["batches"] == 3
  assert signal.getsignal(signal.SIGTERM) is not watch._handler  # the handler is given back


def test_no_preemption_checkpoint_after_the_last_step(tmp_path):
  t, checkpointer, saving, _, _ = _checkpointing_trainer(
      tmp_path, 2, eval_period=100, checkpoint_period=100)
  def step(state, batch, rng):
    if int(state["step"]) == 1:  # the notice comes while the last step runs
      os.kill(os.getpid(), signal.SIGTERM)
    return _step(state, batch, rng)

  t.train_step = step
  with preemption.Watch() as watch:
    t.add_hook(trainer_lib.Preemption(watch, saving, t.sync, checkpointer, str(tmp_path)))
    loop = t.run(trainer_lib.LoopState(state=_state(), step=0, total_steps=2), _batches([1.0] * 2))
  checkpointer.close()
  assert loop.step == 2 and _saved_steps(tmp_path) == [2]  # the at-end save only
