"""The train loop, gin-configurable like T5X's `train`.

Checks everything checkable (mixture, batch divisibility, MODEL_DIR owner, initial
checkpoint fit) on abstract shapes before compiling anything; restores the latest
checkpoint of MODEL_DIR with the input pipeline's position; never waits on the device
except to log the previous step's metrics and at checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from typing import Any, Callable, Sequence

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
    if loaded is None or any(x is None for x in jax.tree.leaves(loaded, is_leaf=_is_none)):
      rng = jax.random.PRNGKey(seed)
      shapes = abstract_params(model, train_dataset_cfg.task_feature_lengths)[1]
      init_params = jax.jit(lambda r: nn.unbox(_params_of(model.init_variables(r, shapes))),
                            out_shardings=param_shardings)(rng)
      if loaded is not None:
        old = {jax.tree_util.keystr(p): x for p, x in
               jax.tree_util.tree_flatten_with_path(loaded, is_leaf=_is_none)[0]}
        init_params = jax.tree_util.tree_map_with_path(
            lambda p, new: new if old[jax.tree_util.keystr(p)] is None else old[jax.tree_util.keystr(p)],
            init_params)
    else:
      init_params = loaded
    opt_state = jax.jit(tx.init, out_shardings=shardings["opt_state"])(init_params)
    state = {"params": init_params, "opt_state": opt_state,
             "step": jax.device_put(np.int32(initial_step), partitioner.replicated())}
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
  checkpoint_period = checkpoint_period or eval_period
  summary: dict[str, Any] = {"model_dir": model_dir, "start_step": start_step,
                             "total_steps": total_steps, "seed": seed, "fingerprint": fp,
                             "devices": jax.device_count(), "processes": jax.process_count()}

  saved = [start_step if meta is not None else None]

  def save(step: int, last_metrics: dict | None, eval_metrics: dict | None):
    saved[0] = step
    meta_out = {"batches": step - initial_step, "initial_step": initial_step, "seed": seed,
                "fingerprint": fp, "mixture": train_dataset_cfg.mixture_or_task_name,
                "batch_size": train_dataset_cfg.batch_size}
    checkpointer.save(step, state, meta_out, metrics=eval_metrics)
    summary["last_checkpoint"] = os.path.join(model_dir, f"checkpoint_{step}")

  def run_evals(step: int) -> dict:
    flat = {}
    if train_eval_dataset_cfg is not None:
      for task, m in evaluation.train_eval(eval_step, state["params"], train_eval_dataset_cfg,
                                           model, partitioner, eval_steps=eval_steps,
                                           seed=seed).items():
        writer.write(step, f"training_eval/{task}", m)
        flat.update({f"training_eval/{task}/{k}": v for k, v in m.items()})
      for name in ("loss", "accuracy"):  # the mean over tasks, as the summary shows it
        values = [v for k, v in flat.items() if k.endswith(f"/{name}")]
        if values:
          flat[f"training_eval/{name}"] = float(np.mean(values))
    if evaluator is not None:
      for task, m in evaluation.infer_eval(evaluator, model, state["params"], runner,
                                           step=step).items():
        scalars = {k: v for k, v in m.items() if np.isscalar(v)}
        writer.write(step, f"inference_eval/{task}", scalars)
        flat.update({f"inference_eval/{task}/{k}": v for k, v in scalars.items()})
    return flat

  # --- loop -----------------------------------------------------------------------
  flop_params = model.matmul_params(abstract)  # once: walking the tree each step costs host time
  bar = tqdm(total=total_steps, initial=start_step, disable=not (host0 and progress_bar),
             unit="step", dynamic_ncols=True)
  pending = None  # (step, device metrics, host token counts, flops) of the last dispatched step
  window = {"tokens": 0, "all_tokens": 0, "flops": 0.0, "t0": time.time(), "steps": 0}
  last: dict[str, float] = {}
  tokens_total, t_loop = 0, time.time()

  def drain(p) -> dict:
    """Fetches step p's metrics (the device is already busy with the next step)."""
    step, dev_metrics, tokens, all_tok, flops = p
    m = {k: float(v) for k, v in jax.device_get(dev_metrics).items()}
    if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
      checkpointer.wait()
      good = checkpointer.latest_step()
      raise TrainingError(
          f"loss is {m['loss']} (grad norm {m['grad_norm']}) at step {step + 1}; stopped. "
          f"The last good checkpoint is {model_dir}/checkpoint_{good}" if good is not None
          else f"loss is {m['loss']} at step {step + 1}; stopped before any checkpoint")
    window["tokens"] += tokens
    window["all_tokens"] += all_tok
    window["flops"] += flops
    window["steps"] += 1
    if (step + 1) % log_period == 0 or step + 1 == total_steps:
      dt = max(time.time() - window["t0"], 1e-9)
      m["tokens_per_s"] = window["tokens"] / dt
      m["all_tokens_per_s"] = window["all_tokens"] / dt
      m["steps_per_s"] = window["steps"] / dt
      if peak:
        m["mfu"] = window["flops"] / dt / (peak * jax.device_count())
      writer.write(step + 1, "train", m)
      window.update(tokens=0, all_tokens=0, flops=0.0, t0=time.time(), steps=0)
      bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}")
    last.update(m)
    return m

  watch = preemption.Watch().__enter__()
  try:
    for step in range(start_step, total_steps):
      host_batch = next(batches)
      state, dev_metrics = train_step(state, partitioner.global_batch(host_batch), base_rng)
      tokens = data_lib.target_tokens(host_batch) * jax.process_count()
      all_tok = data_lib.all_tokens(host_batch) * jax.process_count()
      tokens_total += tokens
      if pending is not None:
        drain(pending)
      pending = (step, dev_metrics, tokens, all_tok,
                 model_flops_per_step(flop_params, host_batch) * jax.process_count())
      bar.update(1)
      done = step + 1
      at_eval = done % eval_period == 0 or done == total_steps
      if at_eval or done % checkpoint_period == 0:
        drain(pending)  # never checkpoint a state whose step went NaN
        pending = None
        eval_metrics = run_evals(done) if at_eval else None
        save(done, last, eval_metrics)
        if eval_metrics:
          summary["eval"] = eval_metrics
          shown = {k: round(v, 4) for k, v in eval_metrics.items()
                   if k.count("/") == 1 or k.startswith("inference_eval")}
          bar.write(f"step {done}: " + json.dumps(shown)) if host0 else None
      if watch.reached(done) and done < total_steps:
        if pending is not None:
          drain(pending)
          pending = None
        if saved[0] != done:
          save(done, last, None)
        checkpointer.wait()
        raise preemption.Preempted(
            f"{'SIGTERM' if watch.signal else 'preemption notice'} at step {done}: wrote "
            f"{model_dir}/checkpoint_{done}; run the same command to resume "
            f"(exit status {preemption.EXIT_PREEMPTED})")
    if pending is not None:
      drain(pending)
  except BaseException as e:
    try:  # a save in flight completes (a SaveFailed's save is already given up)
      checkpointer.close(finished=not isinstance(e, ckpt_lib.SaveFailed))
    except ckpt_lib.SaveFailed as failed:  # the run's own error stays the one reported
      print(f"warning: {failed}", file=sys.stderr)
    raise
  finally:
    watch.__exit__()
    bar.close()
    writer.close()
  checkpointer.close()  # waits for the last save; SaveFailed if it could not be written
  elapsed = time.time() - t_loop
  summary.update(final_step=max(total_steps, start_step), final_train=last,
                 train_tokens=tokens_total, seconds=round(time.time() - t_start, 1),
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
