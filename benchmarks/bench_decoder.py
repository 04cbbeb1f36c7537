"""Training step of a ~100M-parameter Llama-style decoder: linguamix (JAX) vs. transformers.

  python benchmarks/bench_decoder.py [--batch 2 --length 256 --steps 3]

Runs full fine-tuning and LoRA (rank 16 on q/k/v/o) in each framework, each in its own
subprocess so peak RSS is per configuration, and prints target tokens/s, peak host RSS
and the linguamix / transformers ratios. Both use float32 AdamW on the CPU, the same
shapes and all cores the machine gives them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

SHAPE = dict(vocab_size=32000, d_model=768, num_layers=12, num_heads=12, num_kv_heads=4, mlp_dim=2048)
LORA_RANK, LORA_ALPHA = 16, 32.0


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_linguamix(lora: bool, batch: int, length: int, steps: int) -> dict:
  import jax
  import jax.numpy as jnp
  import flax.linen as nn
  import numpy as np
  import optax

  from linguamix.models import decoder, lora as lora_lib

  adapters = lora_lib.LoraConfig(targets="attention/", rank=LORA_RANK, alpha=LORA_ALPHA) if lora else None
  model = decoder.DecoderOnlyModel(decoder.DecoderConfig(**SHAPE, lora=adapters), None)
  params = jax.jit(lambda rng: nn.meta.unbox(model.init_variables(
      rng, {"decoder_input_tokens": (1, length)}))["params"])(jax.random.PRNGKey(0))
  mask = model.trainable_mask(params)
  tx = optax.adamw(1e-4)
  if mask is not None:
    tx = optax.multi_transform({True: tx, False: optax.set_to_zero()}, mask)
  opt_state = jax.jit(tx.init)(params)
  ids = np.random.default_rng(0).integers(1, SHAPE["vocab_size"], size=(batch, length + 1))
  data = {"decoder_input_tokens": jnp.asarray(ids[:, :-1]), "decoder_target_tokens": jnp.asarray(ids[:, 1:])}

  @functools.partial(jax.jit, donate_argnums=(0, 1))  # update in place, as the trainer does
  def step(params, opt_state, data):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, data, None)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params, opt_state, loss = step(params, opt_state, data)  # compile
  loss.block_until_ready()
  start = time.perf_counter()
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state, data)
  loss.block_until_ready()
  seconds = time.perf_counter() - start
  trainable = sum(x.size for x, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask))
                  if m) if mask is not None else sum(x.size for x in jax.tree.leaves(params))
  return {"tokens_per_s": batch * length * steps / seconds, "peak_rss_mb": _peak_rss_mb(),
          "params": sum(x.size for x in jax.tree.leaves(params)), "trainable": trainable,
          "loss": float(loss)}


def run_transformers(lora: bool, batch: int, length: int, steps: int) -> dict:
  import torch
  import transformers

  torch.manual_seed(0)
  config = transformers.LlamaConfig(
      vocab_size=SHAPE["vocab_size"], hidden_size=SHAPE["d_model"], num_hidden_layers=SHAPE["num_layers"],
      num_attention_heads=SHAPE["num_heads"], num_key_value_heads=SHAPE["num_kv_heads"],
      intermediate_size=SHAPE["mlp_dim"], tie_word_embeddings=False)
  model = transformers.LlamaForCausalLM(config)
  if lora:
    import peft
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
  model.train()
  optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
  ids = torch.randint(1, SHAPE["vocab_size"], (batch, length + 1), generator=torch.Generator().manual_seed(0))

  def step():
    loss = model(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss

  step()  # warm-up
  start = time.perf_counter()
  for _ in range(steps):
    loss = step()
  seconds = time.perf_counter() - start
  return {"tokens_per_s": batch * length * steps / seconds, "peak_rss_mb": _peak_rss_mb(),
          "params": sum(p.numel() for p in model.parameters()),
          "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "loss": float(loss)}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--length", type=int, default=256)
  parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up/compile step")
  parser.add_argument("--only", help=argparse.SUPPRESS)  # child process: framework,lora
  args = parser.parse_args()
  if args.only:
    framework, lora = args.only.split(",")
    run = run_linguamix if framework == "linguamix" else run_transformers
    print(json.dumps(run(lora == "lora", args.batch, args.length, args.steps)))
    return 0
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  results = {}
  for mode in ("full", "lora"):
    for framework in ("linguamix", "transformers"):
      out = subprocess.run(
          [sys.executable, __file__, "--batch", str(args.batch), "--length", str(args.length),
           "--steps", str(args.steps), "--only", f"{framework},{mode}"],
          env=env, capture_output=True, text=True, check=True)
      results[framework, mode] = json.loads(out.stdout.strip().splitlines()[-1])
  r = results["linguamix", "full"]
  print(f"Llama-style decoder, {r['params'] / 1e6:.1f}M parameters, batch {args.batch} x {args.length} "
        f"tokens, fp32 AdamW, {os.cpu_count()} CPU cores, {args.steps} timed steps")
  print(f"{'mode':<6} {'framework':<13} {'trainable':>10} {'tokens/s':>9} {'peak RSS MB':>12}")
  for mode in ("full", "lora"):
    for framework in ("linguamix", "transformers"):
      r = results[framework, mode]
      print(f"{mode:<6} {framework:<13} {r['trainable'] / 1e6:>9.2f}M {r['tokens_per_s']:>9.1f} "
            f"{r['peak_rss_mb']:>12.0f}")
    jx, pt = results["linguamix", mode], results["transformers", mode]
    print(f"{mode:<6} ratio linguamix/transformers: tokens/s x{jx['tokens_per_s'] / pt['tokens_per_s']:.2f}, "
          f"peak RSS x{jx['peak_rss_mb'] / pt['peak_rss_mb']:.2f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
