"""Training MFU on one accelerator: a ~1B decoder and mT5-large, per remat/scan/attention.

  bash benchmarks/device_mfu.sh                 # on the GPU: the table, < 8 minutes
  python benchmarks/device_mfu.py --dry-run     # CPU: the same programs at a reduced size

Each row compiles the trainer's own step (linguamix/train/step.py: loss, backward,
optimizer update, donated state; AdamW for the decoder, T5X's Adafactor for mT5) for one
choice of attention (`materialised` | `fused`: cuDNN flash attention on NVIDIA GPUs),
remat policy and layer scan, then times `--steps` steps after one warm-up step.

  MFU       = 6 x matmul parameters x tokens / step time / peak (bf16 dense per chip;
              encoder parameters count input tokens, the rest target tokens; a tied
              output head counts once). Attention's QK^T and PV FLOPs (x3 for training,
              causal halves) are reported on their own and in "MFU+attn".
  memory    = XLA's compiled footprint (arguments + outputs + temporaries - aliased) and
              the device's peak bytes in use so far (it only grows across rows).

A row that does not fit (out of memory) or fails to compile reports it and the next one
runs; rows that would start after `--budget_s` are skipped, so the whole run stays
within its budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

import numpy as np

# Llama-3.2-1B (tied embeddings, GQA 32/8, head 64, rope 500k) and mT5-large (docs/models.md).
DECODER_1B = dict(vocab_size=128256, d_model=2048, num_layers=16, num_heads=32, num_kv_heads=8,
                  head_dim=64, mlp_dim=8192, rope_base=500000.0, norm_eps=1e-5, tie_embeddings=True)
MT5_LARGE = dict(vocab_size=250112, emb_dim=1024, num_heads=16, num_encoder_layers=24,
                 num_decoder_layers=24, head_dim=64, mlp_dim=2816)
FULL = {
    "decoder_1b": dict(kind="decoder", shape=DECODER_1B, batch=8, length=2048, chunk=512),
    "mt5_large": dict(kind="mt5", shape=MT5_LARGE, batch=64, inputs=512, targets=128, chunk=128),
}
DRY = {  # the same programs (kinds, switches, scan, chunked loss) at a size a CPU compiles fast
    "decoder_1b": dict(kind="decoder", batch=2, length=64, chunk=16,
                       shape=dict(DECODER_1B, vocab_size=256, d_model=32, num_layers=2, num_heads=4,
                                  num_kv_heads=2, head_dim=8, mlp_dim=64)),
    "mt5_large": dict(kind="mt5", batch=2, inputs=32, targets=16, chunk=8,
                      shape=dict(MT5_LARGE, vocab_size=256, emb_dim=32, num_heads=4, num_encoder_layers=2,
                                 num_decoder_layers=2, head_dim=8, mlp_dim=64)),
}
# (attention, remat policy, scan): the choices worth comparing, fastest expected first.
VARIANTS = {
    "decoder_1b": [("fused", "none", True), ("fused", "dots_with_no_batch_dims", True),
                   ("fused", "full", True), ("materialised", "dots_with_no_batch_dims", True)],
    "mt5_large": [("fused", "none", True), ("fused", "dots_with_no_batch_dims", True),
                  ("materialised", "none", True)],
}


def build(model_name: str, spec: dict, attention: str, remat: str, scan: bool, dtype: str):
  """(model, optimizer name, batch of numpy arrays, init shapes) for one row."""
  rng = np.random.default_rng(0)
  if spec["kind"] == "decoder":
    from linguamix.models import decoder
    cfg = decoder.DecoderConfig(**spec["shape"], dtype=dtype, param_dtype="float32", scan_layers=scan,
                                remat_policy=remat, attention=attention)
    model = decoder.DecoderOnlyModel(cfg, None, logits_chunk_length=spec["chunk"])
    ids = rng.integers(1, cfg.vocab_size, size=(spec["batch"], spec["length"] + 1)).astype(np.int32)
    batch = dict(decoder_input_tokens=ids[:, :-1], decoder_target_tokens=ids[:, 1:],
                 decoder_loss_weights=np.ones_like(ids[:, 1:]))
    return model, "adamw", batch, {"decoder_input_tokens": batch["decoder_input_tokens"].shape}
  import seqio
  from linguamix.models import mt5
  from linguamix.models.encoder_decoder import EncoderDecoderModel
  cfg = mt5.MT5Config(**spec["shape"], dtype=dtype, scan_layers=scan, remat_policy=remat,
                      attention=attention)
  model = EncoderDecoderModel(cfg, seqio.PassThroughVocabulary(cfg.vocab_size, eos_id=1),
                              logits_chunk_length=spec["chunk"])
  b = spec["batch"]
  enc = rng.integers(2, cfg.vocab_size, size=(b, spec["inputs"])).astype(np.int32)
  tgt = rng.integers(2, cfg.vocab_size, size=(b, spec["targets"])).astype(np.int32)
  dec_in = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], axis=1)
  batch = dict(encoder_input_tokens=enc, decoder_input_tokens=dec_in, decoder_target_tokens=tgt,
               decoder_loss_weights=np.ones_like(tgt))
  return model, "adafactor", batch, {"encoder_input_tokens": enc.shape, "decoder_input_tokens": dec_in.shape}


def flops(spec: dict, model, abstract_params) -> tuple[float, float]:
  """(6 x matmul params x tokens, attention FLOPs) per training step, every slot a token."""
  enc, dec = model.matmul_params(abstract_params)
  s = spec["shape"]
  if spec["kind"] == "decoder":
    tokens = spec["batch"] * spec["length"]
    h = s.get("head_dim") or s["d_model"] // s["num_heads"]
    attn = 3 * 4 * spec["batch"] * spec["length"] ** 2 * s["num_heads"] * h * s["num_layers"] * 0.5
    return 6.0 * (enc + dec) * tokens, float(attn)
  b, i, t = spec["batch"], spec["inputs"], spec["targets"]
  nh = s["num_heads"] * s["head_dim"]
  attn = 3 * 4 * b * nh * (i * i * s["num_encoder_layers"]
                           + (0.5 * t * t + t * i) * s["num_decoder_layers"])
  return 6.0 * (enc * b * i + dec * b * t), float(attn)


def run_row(model_name: str, spec: dict, variant, args, peak: float | None) -> dict:
  import flax.linen as nn
  import jax

  from linguamix.train import optim, partitioning
  from linguamix.train import step as step_lib

  attention, remat, scan = variant
  row = {"model": model_name, "attention": attention, "remat": remat, "scan": scan}
  model, opt, batch, shapes = build(model_name, spec, attention, remat, scan, args.dtype)
  partitioner = partitioning.Partitioner()
  boxed = jax.eval_shape(lambda r: model.init_variables(r, shapes), jax.random.PRNGKey(0))["params"]
  abstract = nn.unbox(boxed)
  param_sh = partitioner.param_shardings(boxed)
  lr = optim.schedule("constant", 1e-4)
  tx = optim.build(opt, lr)
  state_sh = step_lib.state_shardings(param_sh, tx, abstract, partitioner)
  params = jax.jit(lambda r: nn.unbox(model.init_variables(r, shapes)["params"]),
                   out_shardings=param_sh)(jax.random.PRNGKey(0))
  state = {"params": params, "opt_state": jax.jit(tx.init, out_shardings=state_sh["opt_state"])(params),
           "step": jax.device_put(np.int32(0), partitioner.replicated())}
  train_step = step_lib.make_train_step(model, tx, lr, partitioner, state_sh)
  rng = jax.device_put(jax.random.PRNGKey(1), partitioner.replicated())
  dev_batch = partitioner.global_batch(batch)
  t0 = time.perf_counter()
  compiled = train_step.lower(state, dev_batch, rng).compile()
  row["compile_s"] = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  if mem is not None:
    row["footprint_gib"] = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                            + mem.temp_size_in_bytes - mem.alias_size_in_bytes) / 2**30
  state, m = compiled(state, dev_batch, rng)  # warm-up
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, m = compiled(state, dev_batch, rng)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / args.steps
  model_flops, attn_flops = flops(spec, model, abstract)
  tokens = batch["decoder_target_tokens"].size + batch.get("encoder_input_tokens", np.zeros(0)).size
  row.update(step_s=dt, tokens_per_s=tokens / dt, params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract))),
             model_tflop=model_flops / 1e12, attn_tflop=attn_flops / 1e12, loss=float(m["loss"]))
  row["mfu"] = model_flops / dt / peak if peak else None
  row["mfu_attn"] = (model_flops + attn_flops) / dt / peak if peak else None
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    row["peak_gib"] = stats["peak_bytes_in_use"] / 2**30
  del state, compiled, params
  return row


def _fmt(v, spec):
  return "-" if v is None else format(v, spec)


def format_table(rows: list[dict], header: str) -> str:
  lines = [header, f"{'model':<11} {'attention':<12} {'remat':<24} {'scan':<5} {'compile s':>9} "
           f"{'step s':>8} {'tokens/s':>10} {'MFU':>7} {'MFU+attn':>8} {'attn TFLOP':>10} "
           f"{'footprint GiB':>13} {'peak GiB':>8}  note"]
  for r in rows:
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines.append(
        f"{r['model']:<11} {r['attention']:<12} {r['remat']:<24} {str(r['scan']):<5} "
        f"{_fmt(r.get('compile_s'), '9.1f'):>9} {_fmt(r.get('step_s'), '8.3f'):>8} "
        f"{_fmt(r.get('tokens_per_s'), '10,.0f'):>10} {pct(r.get('mfu')):>7} {pct(r.get('mfu_attn')):>8} "
        f"{_fmt(r.get('attn_tflop'), '10.2f'):>10} {_fmt(r.get('footprint_gib'), '13.2f'):>13} "
        f"{_fmt(r.get('peak_gib'), '8.2f'):>8}  {r.get('note', '')}")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dry-run", action="store_true", help="reduced sizes on the CPU (compiles and runs "
                 "every row's program; figures mean nothing)")
  p.add_argument("--models", default="decoder_1b,mt5_large")
  p.add_argument("--steps", type=int, default=5, help="timed steps per row after one warm-up step")
  p.add_argument("--budget_s", type=float, default=420.0, help="start no row after this many seconds")
  p.add_argument("--peak_tflops", type=float, default=None, help="peak bf16 TFLOP/s per device "
                 "(default: the table in linguamix/train/metrics.py; H100/H200 989)")
  p.add_argument("--dtype", default="bfloat16", help="compute dtype (parameters stay float32)")
  p.add_argument("--rows", type=int, default=None, help="only the first N choices per model")
  p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
  args = p.parse_args(argv)
  import jax
  if args.dry_run:
    jax.config.update("jax_platforms", "cpu")
  from linguamix.train import metrics as metrics_lib
  specs = DRY if args.dry_run else FULL
  names = args.models.split(",")
  unknown = [n for n in names if n not in specs]
  if unknown:
    p.error(f"unknown model(s) {unknown}; known: {', '.join(specs)}")
  dev = jax.devices()[0]
  peak = args.peak_tflops * 1e12 if args.peak_tflops else metrics_lib.peak_flops_per_device(dev)
  start, rows = time.perf_counter(), []
  for name in names:
    for variant in VARIANTS[name][:args.rows]:
      base = {"model": name, "attention": variant[0], "remat": variant[1], "scan": variant[2]}
      if time.perf_counter() - start > args.budget_s:
        rows.append({**base, "note": f"skipped: past the {args.budget_s:.0f} s budget"})
        continue
      try:
        rows.append(run_row(name, specs[name], variant, args, peak))
      except Exception as e:  # noqa: BLE001 - a row that does not fit is a result, not a crash
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        oom = "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower()
        rows.append({**base, "note": ("out of memory: " if oom else "failed: ") + msg[:160]})
      gc.collect()
      jax.clear_caches()
  sizes = ", ".join(f"{n} batch {specs[n]['batch']} x " + (f"{specs[n]['length']}" if specs[n]["kind"] == "decoder"
                    else f"({specs[n]['inputs']} + {specs[n]['targets']})") for n in names)
  peak_text = f"peak {peak / 1e12:.0f} TFLOP/s" if peak else "no peak known (MFU -)"
  header = (f"{'DRY RUN (reduced sizes, CPU; figures mean nothing): ' if args.dry_run else ''}"
            f"{dev.device_kind} x 1, {args.dtype} compute, fp32 params; {sizes}; "
            f"{args.steps} timed steps; {peak_text}")
  print(format_table(rows, header))
  print(f"total {time.perf_counter() - start:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"header": header, "rows": rows}, f, indent=1, default=float)
  return 0


if __name__ == "__main__":
  sys.exit(main())
