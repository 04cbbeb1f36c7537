"""mT5 training step (forward + backward) in linguamix (JAX) next to transformers (PyTorch).

  python benchmarks/bench_mt5.py                      # tiny and mt5_small-shaped, CPU
  python benchmarks/bench_mt5.py --sizes small --batch 8 --inputs 128 --targets 32

Each (framework, size) runs in its own process, so peak RSS is that step's alone. Both
compute the mean target cross-entropy and its gradients in float32 with the same shapes;
tokens/s counts encoder + decoder positions, target tokens/s the decoder ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIZES = {  # emb_dim, num_heads, layers, head_dim, mlp_dim, vocab (spec/t5x.md; tiny = mt5_tiny.gin)
    "tiny": (64, 4, 2, 16, 128, 1024),
    "small": (512, 6, 8, 64, 1024, 250112),
}


def _batch(args, vocab):
  import numpy as np
  rng = np.random.default_rng(0)
  enc = rng.integers(2, vocab, size=(args.batch, args.inputs))
  tgt = rng.integers(2, vocab, size=(args.batch, args.targets))
  dec_in = np.concatenate([np.zeros((args.batch, 1), np.int64), tgt[:, :-1]], axis=1)
  return enc, tgt, dec_in


def _time(step, steps):
  step()  # compile / warm up
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - start) / steps


def run_jax(size, args):
  import jax
  import numpy as np
  import seqio
  from linguamix.models import mt5
  from linguamix.models.encoder_decoder import EncoderDecoderModel

  d, h, layers, kv, f, vocab = SIZES[size]
  cfg = mt5.MT5Config(vocab_size=vocab, emb_dim=d, num_heads=h, num_encoder_layers=layers,
                      num_decoder_layers=layers, head_dim=kv, mlp_dim=f, dtype="float32")
  model = EncoderDecoderModel(cfg, seqio.PassThroughVocabulary(vocab, eos_id=1), z_loss=0.0)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jax.device_put(rng.standard_normal(s.shape, np.float32) * 0.05),
                        mt5.param_shapes(cfg))
  enc, tgt, dec_in = _batch(args, vocab)
  batch = dict(encoder_input_tokens=enc, decoder_target_tokens=tgt, decoder_input_tokens=dec_in)
  grad_fn = jax.jit(jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0]))
  return _time(lambda: jax.block_until_ready(grad_fn(params)), args.steps)


def run_torch(size, args):
  import torch
  import transformers

  torch.set_num_threads(args.torch_threads or os.cpu_count())
  d, h, layers, kv, f, vocab = SIZES[size]
  config = transformers.MT5Config(vocab_size=vocab, d_model=d, d_kv=kv, d_ff=f, num_layers=layers,
                                  num_decoder_layers=layers, num_heads=h, dropout_rate=0.0,
                                  feed_forward_proj="gated-gelu", decoder_start_token_id=0)
  model = transformers.MT5ForConditionalGeneration(config).train()
  enc, tgt, dec_in = (torch.tensor(x) for x in _batch(args, vocab))

  def step():
    model.zero_grad(set_to_none=True)
    model(input_ids=enc, decoder_input_ids=dec_in, labels=tgt).loss.backward()
  return _time(step, args.steps)


def child(framework, size, args):
  seconds = {"jax": run_jax, "torch": run_torch}[framework](size, args)
  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_mib}))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="tiny,small", help="comma-separated, from: " + ", ".join(SIZES))
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--inputs", type=int, default=64, help="encoder length")
  parser.add_argument("--targets", type=int, default=16, help="decoder length")
  parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
  parser.add_argument("--torch_threads", type=int, default=0, help="torch intra-op threads (0: all cores)")
  parser.add_argument("--_child", nargs=2, metavar=("FRAMEWORK", "SIZE"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:
    return child(*args._child, args)
  flags = ["--batch", str(args.batch), "--inputs", str(args.inputs), "--targets", str(args.targets),
           "--steps", str(args.steps),
           "--torch_threads", str(args.torch_threads)]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  tokens = args.batch * (args.inputs + args.targets)
  print(f"forward+backward, float32, batch {args.batch} x (inputs {args.inputs} + targets {args.targets}), "
        f"{args.steps} timed steps, {os.cpu_count()} CPU cores")
  print(f"{'size':<6} {'framework':<12} {'s/step':>8} {'tokens/s':>9} {'target tok/s':>12} {'peak RSS MiB':>12}")
  for size in args.sizes.split(","):
    result = {}
    for framework in ("jax", "torch"):
      out = subprocess.run([sys.executable, __file__, "--_child", framework, size, *flags], env=env,
                           capture_output=True, text=True, check=False)
      if out.returncode:
        sys.exit(f"{framework} {size} failed:\n{out.stderr[-3000:]}")
      result[framework] = json.loads(out.stdout.strip().splitlines()[-1])
      r = result[framework]
      name = "linguamix" if framework == "jax" else "transformers"
      print(f"{size:<6} {name:<12} {r['seconds']:>8.3f} {tokens / r['seconds']:>9.0f} "
            f"{args.batch * args.targets / r['seconds']:>12.0f} {r['peak_rss_mib']:>12.0f}")
    print(f"{size:<6} speed-up linguamix/transformers: {result['torch']['seconds'] / result['jax']['seconds']:.2f}x, "
          f"peak RSS ratio {result['jax']['peak_rss_mib'] / result['torch']['peak_rss_mib']:.2f}")


if __name__ == "__main__":
  main()
