"""`linguamix bench train --gin_file=...`: the training step and the input pipeline of
a gin configuration, measured: steps/s, tokens/s, MFU against the device's peak, peak
memory; examples/s, tokens/s and packing efficiency of the mixture's pipeline.

Same flags and gin files as `python -m linguamix.train` (MODEL_DIR not needed).
"""

from __future__ import annotations

import resource
import time

import flax.linen as nn
import gin
import jax
import numpy as np

from linguamix.train import data as data_lib
from linguamix.train import metrics as metrics_lib
from linguamix.train import optim
from linguamix.train import step as step_lib
from linguamix.train import trainer


def _examples(batch) -> int:
  """Examples in a (packed) batch: distinct non-zero segment ids per row."""
  seg = batch.get("decoder_segment_ids")
  return int(np.sum(np.max(seg, axis=1))) if seg is not None else len(batch["decoder_target_tokens"])


def bench_pipeline(cfg, model, batches: int) -> dict:
  ds = data_lib.host_dataset(cfg, model.feature_converter_cls(pack=cfg.pack), host_index=0,
                             num_hosts=1, seed=0)
  it = data_lib.numpy_batches(ds)
  next(it)  # builds the pipeline
  t0, ex, tok, slots = time.perf_counter(), 0, 0, 0
  for _ in range(batches):
    b = next(it)
    ex, tok, slots = ex + _examples(b), tok + data_lib.all_tokens(b), slots + data_lib.slot_tokens(b)
  dt = time.perf_counter() - t0
  return {"examples_per_s": ex / dt, "tokens_per_s": tok / dt, "packing_efficiency": tok / slots,
          "batches_per_s": batches / dt}


@gin.configurable("bench_train", denylist=["steps", "peak_flops"])
def bench_train(*, model, train_dataset_cfg, partitioner, optimizer=None, learning_rate=None,
                num_microbatches: int = 1, steps: int = 10, peak_flops: float | None = None) -> dict:
  boxed, shapes = trainer.abstract_params(model, train_dataset_cfg.task_feature_lengths)
  abstract = nn.unbox(boxed)
  shardings = partitioner.param_shardings(boxed)
  lr = learning_rate or optim.schedule()
  if isinstance(lr, optim.NeedsTotalSteps):  # cosine without TRAIN_STEPS: decay over the bench
    lr = lr.at(steps)
  tx = optim.build(optimizer or model.default_optimizer, lr)
  state_sh = step_lib.state_shardings(shardings, tx, abstract, partitioner)
  params = jax.jit(lambda r: nn.unbox(trainer._params_of(model.init_variables(r, shapes))),
                   out_shardings=shardings)(jax.random.PRNGKey(0))
  state = {"params": params, "opt_state": jax.jit(tx.init, out_shardings=state_sh["opt_state"])(params),
           "step": jax.device_put(np.int32(0), partitioner.replicated())}
  train_step = step_lib.make_train_step(model, tx, lr, partitioner, state_sh, num_microbatches)
  rng = jax.device_put(jax.random.PRNGKey(1), partitioner.replicated())
  ds = data_lib.host_dataset(train_dataset_cfg, model.feature_converter_cls(pack=True),
                             host_index=0, num_hosts=1, seed=0)
  host_batches = [b for _, b in zip(range(steps + 1), data_lib.numpy_batches(ds))]
  batches = [partitioner.global_batch(b) for b in host_batches]
  t0 = time.perf_counter()
  state, m = train_step(state, batches[0], rng)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for b in batches[1:]:
    state, m = train_step(state, b, rng)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / steps
  flop_params = model.matmul_params(abstract)
  flops = np.mean([trainer.model_flops_per_step(flop_params, b) for b in host_batches[1:]])
  peak = peak_flops or metrics_lib.peak_flops_per_device()
  out = {
      "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
      "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract))),
      "compile_s": compile_s, "steps_per_s": 1 / dt,
      "target_tokens_per_s": np.mean([data_lib.target_tokens(b) for b in host_batches[1:]]) / dt,
      "tokens_per_s": np.mean([data_lib.all_tokens(b) for b in host_batches[1:]]) / dt,
      "model_tflops_per_s": flops / dt / 1e12,
      "mfu": flops / dt / (peak * jax.device_count()) if peak else None, "peak_flops": peak,
      "peak_host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
  }
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["peak_device_memory_gib"] = stats["peak_bytes_in_use"] / 2**30
  # At least 100 batches: a few make a tenth of a second, too short to time a pipeline.
  out["pipeline"] = bench_pipeline(train_dataset_cfg, model, max(steps, 100))
  return out


def format_report(r: dict) -> str:
  mfu = f"{100 * r['mfu']:.1f}% of {r['peak_flops'] / 1e12:.0f} TFLOP/s/device" if r["mfu"] is not None \
      else "n/a (no peak FLOP/s known for this device; pass --peak_tflops)"
  p = r["pipeline"]
  lines = [
      f"device           {r['device']} x {r['devices']}",
      f"parameters       {r['params']:,}",
      f"compile          {r['compile_s']:.1f} s",
      f"steps/s          {r['steps_per_s']:.2f}",
      f"tokens/s         {r['tokens_per_s']:,.0f} (non-pad inputs+targets), "
      f"{r['target_tokens_per_s']:,.0f} target",
      f"model TFLOP/s    {r['model_tflops_per_s']:.4f}",
      f"MFU              {mfu}",
      f"peak host RSS    {r['peak_host_rss_gib']:.2f} GiB",
  ]
  if "peak_device_memory_gib" in r:
    lines.append(f"peak device mem  {r['peak_device_memory_gib']:.2f} GiB")
  lines += [
      f"input pipeline   {p['examples_per_s']:,.0f} examples/s, {p['tokens_per_s']:,.0f} tokens/s "
      f"per host, packing efficiency {100 * p['packing_efficiency']:.1f}%",
      f"pipeline / step  {p['batches_per_s'] / r['steps_per_s']:.1f}x (batches the pipeline makes per "
      f"batch the step consumes; keep >= 10x)",
  ]
  return "\n".join(lines)
