"""The train loop, gin-configurable like T5X's `train`.

Checks everything checkable (mixture, batch divisibility, MODEL_DIR owner, initial
checkpoint fit) on abstract shapes before compiling anything; restores the latest
checkpoint of MODEL_DIR with the input pipeline's position; never waits on the device
except to log the previous step's metrics and at checkpoints.

The loop is a `Trainer` (levanter-style hooks, `add_hook(fn, every=N)`) over one explicit
`LoopState`; `train` wires its named parts: `StepMetrics` fetches each step's metrics one
step late and writes them with their `Throughput`, `NanStop` ends a diverged run,
`Evaluation`, `Checkpointing` and `Preemption` run as hooks, the progress bar is one too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from linguamix import atomic
from linguamix import errors
from linguamix.train import checkpoints as ckpt_lib
from linguamix.train import data as data_lib
from linguamix.train import evaluation
from linguamix.train import metrics as metrics_lib
from linguamix.train import optim
from linguamix.train import partitioning
from linguamix.train import preemption
from linguamix.train import step as step_lib


class TrainingError(errors.UserError, RuntimeError):
  """A run that cannot go on (NaN loss); the last good checkpoint is intact."""
  label = "stopped"
  exit_code = errors.EXIT_STOPPED


def _params_of(variables):
  return variables["params"] if isinstance(variables, dict) and "params" in variables else variables


def abstract_params(model, task_feature_lengths, *, batch_size: int = 1):
  """Boxed abstract params from `jax.eval_shape` (no compilation)."""
  converter = model.feature_converter_cls(pack=True)
  lengths = converter.get_model_feature_lengths(task_feature_lengths)
  shapes = {k: (batch_size, int(v)) for k, v in lengths.items()}
  init = lambda rng: model.init_variables(rng, shapes)  # noqa: E731 - shapes stay static
  return _params_of(jax.eval_shape(init, jax.random.PRNGKey(0))), shapes


def _is_none(x) -> bool:
  return x is None


def _initial_step(path: str | None) -> int:
  m = re.search(r"checkpoint_(\d+)/?$", path or "")
  return int(m.group(1)) if m else 0


def model_flops_per_step(params: tuple[int, int], batch: dict) -> float:
  """6 x matmul params x tokens (`params` from `model.matmul_params`): encoder params count
  input tokens, the rest target tokens (decoder-only: all tokens); attention scores
  left out."""
  enc, dec = params
  if "encoder_input_tokens" in batch:
    return 6.0 * (enc * np.sum(batch["encoder_input_tokens"] > 0)
                  + dec * np.sum(batch["decoder_target_tokens"] > 0))
  return 6.0 * (enc + dec) * np.sum(batch["decoder_target_tokens"] > 0)


def check_batch_size(partitioner: partitioning.Partitioner, batch_size: int,
                     num_microbatches: int) -> None:
  dp = partitioner.data_parallel_size
  if batch_size % (dp * num_microbatches):
    raise ValueError(
        f"BATCH_SIZE={batch_size} is not divisible by the data-parallel size {dp} "
        f"(mesh data x fsdp) x {num_microbatches} microbatches")


def build_train_step(model, partitioner: partitioning.Partitioner, boxed, *, optimizer: str | None,
                     lr_schedule, max_grad_norm: float | None, num_microbatches: int):
  """(tx, state shardings, jitted train step) of a run: what `train` executes and what
  `linguamix plan` compiles for a TPU topology."""
  abstract = nn.unbox(boxed)
  tx = optim.build(optimizer or model.default_optimizer, lr_schedule,
                   max_grad_norm=max_grad_norm, trainable=model.trainable_mask(abstract))
  shardings = step_lib.state_shardings(partitioner.param_shardings(boxed), tx, abstract, partitioner)
  return tx, shardings, step_lib.make_train_step(model, tx, lr_schedule, partitioner, shardings,
                                                 num_microbatches)


def abstract_state(abstract, tx, shardings):
  """The train state as ShapeDtypeStructs carrying their shardings (no arrays)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      jax.eval_shape(lambda p: {"params": p, "opt_state": tx.init(p), "step": np.int32(0)}, abstract),
      shardings)


def init_state(model, tx, shardings, partitioner: partitioning.Partitioner,
               task_feature_lengths, *, seed: int, step: int, loaded=None) -> dict:
  """A fresh train state at `step`: the parameters `loaded` from an initial checkpoint
  where it has them (None leaves: LoRA adapters a base checkpoint lacks), the model's
  init from `seed` elsewhere; the optimizer's initial state."""
  if loaded is None or any(x is None for x in jax.tree.leaves(loaded, is_leaf=_is_none)):
    shapes = abstract_params(model, task_feature_lengths)[1]
    params = jax.jit(lambda r: nn.unbox(_params_of(model.init_variables(r, shapes))),
                     out_shardings=shardings["params"])(jax.random.PRNGKey(seed))
    if loaded is not None:
      old = {jax.tree_util.keystr(p): x for p, x in
             jax.tree_util.tree_flatten_with_path(loaded, is_leaf=_is_none)[0]}
      params = jax.tree_util.tree_map_with_path(
          lambda p, new: new if old[jax.tree_util.keystr(p)] is None else old[jax.tree_util.keystr(p)],
          params)
  else:
    params = loaded
  opt_state = jax.jit(tx.init, out_shardings=shardings["opt_state"])(params)
  return {"params": params, "opt_state": opt_state,
          "step": jax.device_put(np.int32(step), partitioner.replicated())}


# --- the loop as named parts --------------------------------------------------------


@dataclasses.dataclass
class StepOutput:
  """What one dispatched step left to look at: its metrics still on the device (fetched
  one step later, while the device runs the next) and its batch's host-side counts."""
  step: int  # steps done once it finished
  metrics: Any
  tokens: int
  all_tokens: int
  flops: float


@dataclasses.dataclass
class LoopState:
  """Everything the loop and its hooks share, passed to each hook."""
  state: Any  # the train state {'params', 'opt_state', 'step'}
  step: int  # steps done (absolute)
  total_steps: int
  saved_step: int | None = None  # the step of the last checkpoint written (or restored)
  eval_step: int | None = None  # the step `eval_metrics` belong to
  eval_metrics: dict | None = None
  last_train: dict = dataclasses.field(default_factory=dict)  # the last fetched train metrics
  tokens: int = 0  # loss-carrying tokens trained on by this process's run
  pending: StepOutput | None = None  # the last dispatched step, metrics not yet fetched

  @property
  def at_end(self) -> bool:
    return self.step == self.total_steps


@dataclasses.dataclass
class Throughput:
  """Token, step and FLOP counts since the window opened."""
  tokens: int = 0
  all_tokens: int = 0
  flops: float = 0.0
  steps: int = 0
  t0: float = dataclasses.field(default_factory=time.time)

  def add(self, out: StepOutput) -> None:
    self.tokens += out.tokens
    self.all_tokens += out.all_tokens
    self.flops += out.flops
    self.steps += 1

  def rates(self, now: float, peak_flops: float | None, num_devices: int) -> dict[str, float]:
    """Per-second rates over the window (MFU where the device has a known peak)."""
    dt = max(now - self.t0, 1e-9)
    out = {"tokens_per_s": self.tokens / dt, "all_tokens_per_s": self.all_tokens / dt,
           "steps_per_s": self.steps / dt}
    if peak_flops:
      out["mfu"] = self.flops / dt / (peak_flops * num_devices)
    return out


class NanStop:
  """Stops the run on a non-finite loss or gradient norm, naming the last good checkpoint
  (after the save in flight, if any, has finished)."""

  def __init__(self, checkpointer: ckpt_lib.Checkpointer, model_dir: str):
    self.checkpointer, self.model_dir = checkpointer, model_dir

  def __call__(self, m: dict[str, float], step: int) -> None:
    if math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]):
      return
    self.checkpointer.wait()
    good = self.checkpointer.latest_step()
    raise TrainingError(
        f"loss is {m['loss']} (grad norm {m['grad_norm']}) at step {step}; stopped. "
        f"The last good checkpoint is {self.model_dir}/checkpoint_{good}" if good is not None
        else f"loss is {m['loss']} at step {step}; stopped before any checkpoint")


class StepMetrics:
  """Fetches a step's metrics, checks them (`nan_stop`) and every `log_period` steps (and
  at the last) writes them with the throughput of the steps since the previous write."""

  def __init__(self, write: Callable[[int, str, dict], None], *, log_period: int,
               total_steps: int, nan_stop: Callable[[dict, int], None] | None = None,
               peak_flops: float | None = None, num_devices: int = 1,
               on_log: Callable[[dict], None] | None = None, clock: Callable[[], float] = time.time):
    self.write, self.log_period, self.total_steps = write, log_period, total_steps
    self.nan_stop, self.peak_flops, self.num_devices = nan_stop, peak_flops, num_devices
    self.on_log, self.clock = on_log, clock
    self.window = Throughput(t0=clock())

  def drain(self, out: StepOutput) -> dict[str, float]:
    m = {k: float(v) for k, v in jax.device_get(out.metrics).items()}
    if self.nan_stop is not None:
      self.nan_stop(m, out.step)
    self.window.add(out)
    if out.step % self.log_period == 0 or out.step == self.total_steps:
      now = self.clock()
      m.update(self.window.rates(now, self.peak_flops, self.num_devices))
      self.write(out.step, "train", m)
      self.window = Throughput(t0=self.clock())
      if self.on_log is not None:
        self.on_log(m)
    return m


@dataclasses.dataclass
class _Hook:
  fn: Callable[[LoopState], None]
  every: int
  at_end: bool
  sync: bool

  def due(self, loop: LoopState) -> bool:
    return loop.step % self.every == 0 or (self.at_end and loop.at_end)


class Trainer:
  """The step loop: dispatches steps, fetches each step's metrics while the next runs,
  and after each step calls its hooks in the order they were added (levanter's
  `add_hook(fn, every=N)`)."""

  def __init__(self, train_step: Callable, metrics: StepMetrics, *, rng: Any = None,
               global_batch: Callable[[dict], Any] = lambda b: b,
               batch_counts: Callable[[dict], tuple[int, int, float]] = lambda b: (0, 0, 0.0)):
    """`train_step(state, global batch, rng) -> (state, device metrics)`; `batch_counts`:
    a host batch's (target tokens, all tokens, model FLOPs), over all processes."""
    self.train_step, self.metrics, self.rng = train_step, metrics, rng
    self.global_batch, self.batch_counts = global_batch, batch_counts
    self.hooks: list[_Hook] = []

  def add_hook(self, fn: Callable[[LoopState], None], *, every: int = 1, at_end: bool = False,
               sync: bool = False) -> None:
    """`fn(loop)` after every step that is a multiple of `every` (and after the last one
    with `at_end`); `sync`: first wait for the step's metrics (a NaN stops before `fn`)."""
    if every < 1:
      raise ValueError(f"a hook's period must be >= 1, got {every}")
    self.hooks.append(_Hook(fn, every, at_end, sync))

  def sync(self, loop: LoopState) -> None:
    """Fetches the metrics of the step in flight, if any (waits for the device)."""
    if loop.pending is not None:
      out, loop.pending = loop.pending, None
      loop.last_train.update(self.metrics.drain(out))

  def run(self, loop: LoopState, batches: Iterator[dict]) -> LoopState:
    for step in range(loop.step, loop.total_steps):
      host_batch = next(batches)
      loop.state, dev_metrics = self.train_step(loop.state, self.global_batch(host_batch), self.rng)
      tokens, all_tokens, flops = self.batch_counts(host_batch)
      loop.tokens += tokens
      self.sync(loop)  # the previous step's metrics: the device is busy with this one
      loop.pending = StepOutput(step + 1, dev_metrics, tokens, all_tokens, flops)
      loop.step = step + 1
      for hook in self.hooks:
        if hook.due(loop):
          if hook.sync:
            self.sync(loop)
          hook.fn(loop)
    self.sync(loop)
    return loop


class Evaluation:
  """Runs `evaluate(params, step) -> flat metrics` into the loop state and the summary."""

  def __init__(self, evaluate: Callable[[Any, int], dict], summary: dict,
               show: Callable[[str], None] | None = None):
    self.evaluate, self.summary, self.show = evaluate, summary, show

  def __call__(self, loop: LoopState) -> None:
    loop.eval_metrics = self.evaluate(loop.state["params"], loop.step)
    loop.eval_step = loop.step
    if loop.eval_metrics:
      self.summary["eval"] = loop.eval_metrics
      if self.show is not None:
        shown = {k: round(v, 4) for k, v in loop.eval_metrics.items()
                 if k.count("/") == 1 or k.startswith("inference_eval")}
        self.show(f"step {loop.step}: " + json.dumps(shown))


class Checkpointing:
  """Saves the state at the loop's step (once per step, with that step's eval metrics),
  with the meta a resume needs: batches consumed past `initial_step`, the seed, the
  parameter fingerprint."""

  def __init__(self, checkpointer: ckpt_lib.Checkpointer, run_meta: dict, summary: dict):
    self.checkpointer, self.run_meta, self.summary = checkpointer, run_meta, summary

  def __call__(self, loop: LoopState) -> None:
    if loop.saved_step == loop.step:
      return
    meta = {"batches": loop.step - self.run_meta["initial_step"], **self.run_meta}
    metrics = loop.eval_metrics if loop.eval_step == loop.step else None
    self.checkpointer.save(loop.step, loop.state, meta, metrics=metrics)
    loop.saved_step = loop.step
    self.summary["last_checkpoint"] = self.checkpointer.path(loop.step)


class Preemption:
  """On a preemption notice (`preemption.Watch`): checkpoints the step just done, waits for
  the write and raises `preemption.Preempted` (a clean exit the same command resumes)."""

  def __init__(self, watch: preemption.Watch, save: Callable[[LoopState], None],
               sync: Callable[[LoopState], None], checkpointer: ckpt_lib.Checkpointer,
               model_dir: str):
    self.watch, self.save, self.sync = watch, save, sync
    self.checkpointer, self.model_dir = checkpointer, model_dir

  def __call__(self, loop: LoopState) -> None:
    if not self.watch.reached(loop.step) or loop.at_end:
      return
    self.sync(loop)
    self.save(loop)
    self.checkpointer.wait()
    raise preemption.Preempted(
        f"{'SIGTERM' if self.watch.signal else 'preemption notice'} at step {loop.step}: wrote "
        f"{self.model_dir}/checkpoint_{loop.step}; run the same command to resume "
        f"(exit status {preemption.EXIT_PREEMPTED})")


def run_evals(eval_step, params, step: int, *, writer: metrics_lib.MetricWriter, model,
              partitioner: partitioning.Partitioner, runner: evaluation.BatchRunner,
              evaluator, train_eval_dataset_cfg: data_lib.DatasetConfig | None,
              eval_steps: int, seed: int) -> dict:
  """The training-eval losses and the inference evals at `step`, written and returned flat
  (`training_eval/<task>/<metric>`, their means over tasks, `inference_eval/...`)."""
  flat = {}
  if train_eval_dataset_cfg is not None:
    for task, m in evaluation.train_eval(eval_step, params, train_eval_dataset_cfg, model,
                                         partitioner, eval_steps=eval_steps, seed=seed).items():
      writer.write(step, f"training_eval/{task}", m)
      flat.update({f"training_eval/{task}/{k}": v for k, v in m.items()})
    for name in ("loss", "accuracy"):  # the mean over tasks, as the summary shows it
      values = [v for k, v in flat.items() if k.endswith(f"/{name}")]
      if values:
        flat[f"training_eval/{name}"] = float(np.mean(values))
  if evaluator is not None:
    for task, m in evaluation.infer_eval(evaluator, model, params, runner, step=step).items():
      scalars = {k: v for k, v in m.items() if np.isscalar(v)}
      writer.write(step, f"inference_eval/{task}", scalars)
      flat.update({f"inference_eval/{task}/{k}": v for k, v in scalars.items()})
  return flat


@gin.configurable
def train(
    *,
    model,
    model_dir: str,
    train_dataset_cfg: data_lib.DatasetConfig,
    total_steps: int | None = None,
    train_epochs: float | None = None,
    train_eval_dataset_cfg: data_lib.DatasetConfig | None = None,
    infer_eval_dataset_cfg: data_lib.DatasetConfig | None = None,
    initial_checkpoint_path: str | None = None,
    random_seed: int | None = None,
    partitioner: partitioning.Partitioner | None = None,
    optimizer: str | None = None,
    learning_rate=None,
    max_grad_norm: float | None = None,
    num_microbatches: int = 1,
    eval_period: int = 1000,
    eval_steps: int = 20,
    infer_eval_examples: int | None = None,
    checkpoint_period: int | None = None,
    keep_checkpoints: int = 3,
    best_metric: str | None = None,
    best_mode: str = "min",
    log_period: int = 10,
    logger_cls: Sequence[type] = (),
    progress_bar: bool = True,
    benchmark: Callable[..., dict] | None = None,
) -> dict:
  """Trains to `total_steps` (absolute; or from `train_epochs`, see data.train_steps);
  returns the run summary (also in summary.json).

  `benchmark`: called after training as `benchmark(model=, params=, model_dir=, step=)`
  (e.g. `run_eval.benchmark`, which runs/quickstart.gin binds to score XCOPA)."""
  t_start = time.time()
  partitioner = partitioner or partitioning.Partitioner()
  model_dir = os.path.abspath(model_dir)
  ckpt_lib.check_directory(model_dir, "MODEL_DIR")
  host0 = jax.process_index() == 0
  # --- checks on shapes only, before any compilation -----------------------------
  data_lib.get_mixture_or_task(train_dataset_cfg.mixture_or_task_name)
  check_batch_size(partitioner, train_dataset_cfg.batch_size, num_microbatches)
  boxed, _ = abstract_params(model, train_dataset_cfg.task_feature_lengths)
  abstract = nn.unbox(boxed)
  param_shardings = partitioner.param_shardings(boxed)
  print_ = print if host0 else (lambda *a, **k: None)
  fp = ckpt_lib.fingerprint(abstract)
  checkpointer = ckpt_lib.Checkpointer(model_dir, keep=keep_checkpoints,
                                       best_metric=best_metric, best_mode=best_mode)
  latest, meta = checkpointer.latest_meta()
  if meta is not None and meta.get("fingerprint") != fp:
    raise ValueError(
        f"MODEL_DIR {model_dir} holds checkpoints of another model (checkpoint_{latest}: "
        f"parameter fingerprint {meta.get('fingerprint')} != this model's {fp}); "
        "use a fresh MODEL_DIR")
  trainable = model.trainable_mask(abstract)  # LoRA: adapters only
  loaded = None
  if meta is None and initial_checkpoint_path:
    # With LoRA, a base checkpoint lacks the adapters: they start from their init.
    loaded = ckpt_lib.load_params(initial_checkpoint_path, abstract, param_shardings,
                                  missing_ok=trainable)
  seed = int(meta["seed"]) if meta else (
      random_seed if random_seed is not None else int(np.random.SeedSequence().entropy % 2**31))
  if jax.process_count() > 1:  # a drawn seed must be the same on every host
    seed = int(multihost_utils.broadcast_one_to_all(np.int32(seed)))
  data_lib.check_vocabulary(train_dataset_cfg.mixture_or_task_name, model.vocabulary)
  total_steps = data_lib.train_steps(
      total_steps, train_epochs, train_dataset_cfg,
      model.feature_converter_cls(pack=train_dataset_cfg.pack), seed=seed,
      initial_step=int(meta["initial_step"]) if meta else _initial_step(initial_checkpoint_path),
      log=print_)
  # --- optimizer and state ---------------------------------------------------------
  lr_schedule = learning_rate or optim.schedule()
  if isinstance(lr_schedule, optim.NeedsTotalSteps):  # decays to a count known only now
    lr_schedule = lr_schedule.at(total_steps)
  tx, shardings, train_step = build_train_step(
      model, partitioner, boxed, optimizer=optimizer, lr_schedule=lr_schedule,
      max_grad_norm=max_grad_norm, num_microbatches=num_microbatches)
  if meta is not None:
    latest, state, meta = checkpointer.restore_latest(abstract_state(abstract, tx, shardings))  # corrupt: the one before
    batches_done = int(meta["batches"])
    initial_step = int(meta["initial_step"])
    print_(f"restored {model_dir}/checkpoint_{latest} (step {latest}, "
           f"{batches_done} batches consumed)")
  else:
    initial_step = _initial_step(initial_checkpoint_path)
    state = init_state(model, tx, shardings, partitioner, train_dataset_cfg.task_feature_lengths,
                       seed=seed, step=initial_step, loaded=loaded)
    batches_done = 0
  start_step = initial_step + batches_done
  if start_step >= total_steps:
    print_(f"nothing to do: step {start_step} >= TRAIN_STEPS={total_steps}")
  # --- data -----------------------------------------------------------------------
  converter = model.feature_converter_cls(pack=train_dataset_cfg.pack)
  train_ds = data_lib.host_dataset(
      train_dataset_cfg, converter, host_index=jax.process_index(),
      num_hosts=jax.process_count(), seed=seed, skip_batches=batches_done)
  batches = data_lib.numpy_batches(train_ds)
  eval_step = step_lib.make_eval_step(model, partitioner, shardings["params"])
  base_rng = jax.device_put(jax.random.PRNGKey(seed + 1), partitioner.replicated())
  writer = metrics_lib.MetricWriter(model_dir, resume_step=start_step)  # drops steps > start
  evaluator = None
  if infer_eval_dataset_cfg is not None:
    evaluator = evaluation.make_evaluator(
        infer_eval_dataset_cfg, model, log_dir=os.path.join(model_dir, "inference_eval"),
        logger_cls=logger_cls, seed=seed, num_examples=infer_eval_examples)
  runner = evaluation.BatchRunner(partitioner, train_dataset_cfg.batch_size)
  peak = metrics_lib.peak_flops_per_device()
  summary: dict[str, Any] = {"model_dir": model_dir, "start_step": start_step,
                             "total_steps": total_steps, "seed": seed, "fingerprint": fp,
                             "devices": jax.device_count(), "processes": jax.process_count()}

  # --- the loop and its hooks -------------------------------------------------------
  flop_params = model.matmul_params(abstract)  # once: walking the tree each step costs host time
  nproc = jax.process_count()
  bar = tqdm(total=total_steps, initial=start_step, disable=not (host0 and progress_bar),
             unit="step", dynamic_ncols=True)
  step_metrics = StepMetrics(
      writer.write, log_period=log_period, total_steps=total_steps,
      nan_stop=NanStop(checkpointer, model_dir), peak_flops=peak,
      num_devices=jax.device_count(),
      on_log=lambda m: bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}"))
  trainer = Trainer(
      train_step, step_metrics, global_batch=partitioner.global_batch, rng=base_rng,
      batch_counts=lambda b: (data_lib.target_tokens(b) * nproc, data_lib.all_tokens(b) * nproc,
                              model_flops_per_step(flop_params, b) * nproc))
  run_meta = {"initial_step": initial_step, "seed": seed, "fingerprint": fp,
              "mixture": train_dataset_cfg.mixture_or_task_name,
              "batch_size": train_dataset_cfg.batch_size}
  saving = Checkpointing(checkpointer, run_meta, summary)
  evaluating = Evaluation(
      lambda params, step: run_evals(eval_step, params, step, writer=writer, model=model,
                                     partitioner=partitioner, runner=runner, evaluator=evaluator,
                                     train_eval_dataset_cfg=train_eval_dataset_cfg,
                                     eval_steps=eval_steps, seed=seed),
      summary, show=bar.write if host0 else None)
  trainer.add_hook(lambda loop: bar.update(1))
  trainer.add_hook(evaluating, every=eval_period, at_end=True, sync=True)
  # Every evaluation is checkpointed (with its metrics, for best_metric); in between, every
  # checkpoint_period steps. The metrics are fetched first: no NaN state is ever saved.
  trainer.add_hook(saving, every=eval_period, at_end=True, sync=True)
  trainer.add_hook(saving, every=checkpoint_period or eval_period, sync=True)
  loop = LoopState(state=state, step=start_step, total_steps=total_steps,
                   saved_step=start_step if meta is not None else None)
  t_loop = time.time()
  with preemption.Watch() as watch:
    trainer.add_hook(Preemption(watch, saving, trainer.sync, checkpointer, model_dir))
    try:
      loop = trainer.run(loop, batches)
    except BaseException as e:
      try:  # a save in flight completes (a SaveFailed's save is already given up)
        checkpointer.close(finished=not isinstance(e, ckpt_lib.SaveFailed))
      except ckpt_lib.SaveFailed as failed:  # the run's own error stays the one reported
        print(f"warning: {failed}", file=sys.stderr)
      raise
    finally:
      bar.close()
      writer.close()
  state = loop.state
  checkpointer.close()  # waits for the last save; SaveFailed if it could not be written
  elapsed = time.time() - t_loop
  summary.update(final_step=max(total_steps, start_step), final_train=loop.last_train,
                 train_tokens=loop.tokens, seconds=round(time.time() - t_start, 1),
                 loop_seconds=round(elapsed, 1))

  def write_summary():
    if host0:
      with atomic.atomic_write(os.path.join(model_dir, "summary.json")) as f:
        json.dump(summary, f, indent=1, default=float)

  write_summary()  # before the benchmark: a failing one loses nothing of the run
  if host0:
    print(format_summary(summary))
  if benchmark is not None:
    summary["benchmark"] = benchmark(model=model, params=state["params"], model_dir=model_dir,
                                     step=summary["final_step"])
    write_summary()
  return summary


def format_summary(s: dict) -> str:
  lines = [f"done: step {s['final_step']} of {s['total_steps']} in {s['seconds']} s "
           f"({s['devices']} device(s), {s['processes']} process(es))"]
  if s.get("final_train"):
    t = s["final_train"]
    lines.append(f"  train loss {t.get('loss', float('nan')):.4f}"
                 + (f", accuracy {t['accuracy']:.4f}" if "accuracy" in t else "")
                 + (f", {t['tokens_per_s']:.0f} target tokens/s" if "tokens_per_s" in t else ""))
  for k, v in sorted((s.get("eval") or {}).items()):
    if k.count("/") == 1 or k.startswith("inference_eval/"):  # per-task losses: metrics.jsonl
      lines.append(f"  {k} = {v:.4f}")
  if s.get("last_checkpoint"):
    lines.append(f"  checkpoint {s['last_checkpoint']}")
  lines.append(f"  metrics {s['model_dir']}/metrics.jsonl, TensorBoard {s['model_dir']}/train, "
               f"summary {s['model_dir']}/summary.json")
  return "\n".join(lines)
