"""linguamix's training step next to transformers' for the same model, interleaved.

  python benchmarks/bench_compare.py                       # all cases, 2 threads
  python benchmarks/bench_compare.py --cases tiny --rounds 9 --threads 2

Each framework runs in its own long-lived process, pinned to the same cores; after a
warm-up (compilation) the two take turns, A B A B ..., one round of `--steps` steps each,
so a load change on the machine hits both alike and the per-round ratio stays honest;
each round starts with `--settle` untimed steps, so it times the steady state a training
loop sees rather than the first step after the other process churned memory.
One step is the whole update: forward, backward and the optimizer (Adafactor as T5X sets
it for mT5: decay 0.8, parameter scale, clipping 1.0, no momentum; AdamW for decoders), in
float32 on the same shapes, on batches without padding. Printed per case: the median
s/step of each, the median of the per-round ratios (transformers time / linguamix time,
so > 1 means linguamix is faster) with its min-max and interquartile range, peak host RSS,
and the load average before and after; once for wall time and once for process CPU time
(all threads), which other jobs on a shared machine disturb far less: a loaded core
stretches wall time, not the CPU time the step itself burns. A third line per case sets
the steps against the CPU: XLA's FLOP count of the step, each side's GFLOP/s and its share
of that framework's own 2048^3 float32 GEMM rate on these cores, and the speed-up linguamix
would have if its whole step ran at its GEMM rate. Where a step is mostly matmuls and both
libraries run their GEMMs near the CPU's peak, that ceiling, not the code, bounds the ratio.

Threads: both processes are pinned to cores 0..N-1 (`--threads N`, sched_setaffinity);
torch uses N intra-op threads (`torch.set_num_threads`, interop 1); XLA:CPU sizes its
pool from the cores it is allowed. `--ynn` picks the XLA:CPU YNNPACK fusions of the
linguamix step (`step`: the step's own, jaxlib's default, see linguamix/train/step.py;
`off`: none; `dot`, `reduce`, `reduce+dot`: those kinds only), to measure that choice.
Both processes get the glibc malloc settings linguamix's entry points give themselves
(huge pages, a heap that keeps its memory: `linguamix/_malloc_tuning.py`), and the
linguamix step runs on the calling thread as theirs do (`run_cpu_programs_inline`);
`--no-malloc-tuning` leaves both alone. torch flushes denormals to zero as XLA does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

# Measure the checkout this script lives in, not whichever linguamix is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from linguamix import _malloc_tuning, _quiet  # noqa: E402  (light: the standard library only)

# name: (family, shape, batch description); tiny = models/mt5_tiny.gin at the trainer's
# batch 16 x (128 + 128); mt5_small = models/mt5_small.gin; decoder = Llama-style 124.7M.
MT5_SHAPES = {
    "tiny": dict(vocab_size=1024, emb_dim=64, num_heads=4, num_layers=2, head_dim=16, mlp_dim=128),
    "mt5_small": dict(vocab_size=250112, emb_dim=512, num_heads=6, num_layers=8, head_dim=64, mlp_dim=1024),
}
DECODER_SHAPE = dict(vocab_size=32000, d_model=768, num_layers=12, num_heads=12, num_kv_heads=4,
                     mlp_dim=2048)
LORA_RANK, LORA_ALPHA = 16, 32.0
GEMM_N = 2048  # the matmul whose rate each framework's step is set against
CASES = {
    "tiny": dict(kind="mt5", shape="tiny", batch=16, inputs=128, targets=128),
    "mt5_small": dict(kind="mt5", shape="mt5_small", batch=4, inputs=128, targets=32),
    "decoder": dict(kind="decoder", lora=False, batch=2, length=256),
    "decoder_lora": dict(kind="decoder", lora=True, batch=2, length=256),
}
YNN = {"dot": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
       "off": {"xla_cpu_experimental_ynn_fusion_type": ""}, "default": {},
       "reduce": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"},
       "reduce+dot": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_DOT"}}


def _tokens(case: dict) -> int:
  if case["kind"] == "mt5":
    return case["batch"] * (case["inputs"] + case["targets"])
  return case["batch"] * case["length"]


def _mt5_batch(case, vocab):
  rng = np.random.default_rng(0)
  enc = rng.integers(2, vocab, size=(case["batch"], case["inputs"])).astype(np.int32)
  tgt = rng.integers(2, vocab, size=(case["batch"], case["targets"])).astype(np.int32)
  dec_in = np.concatenate([np.zeros((case["batch"], 1), np.int32), tgt[:, :-1]], axis=1)
  return enc, tgt, dec_in


def _decoder_ids(case):
  rng = np.random.default_rng(0)
  return rng.integers(1, DECODER_SHAPE["vocab_size"], size=(case["batch"], case["length"] + 1)).astype(np.int32)


# --- linguamix ------------------------------------------------------------------------

def linguamix_step(case: dict, ynn: str):
  """The trainer's own jitted step (make_train_step) and its first state; returns step()."""
  import flax.linen as nn
  import jax
  import seqio

  from linguamix.train import optim, partitioning
  from linguamix.train import step as step_lib

  if ynn != "step":
    step_lib.CPU_COMPILER_OPTIONS = YNN[ynn]
  if case["kind"] == "mt5":
    from linguamix.models import mt5
    from linguamix.models.encoder_decoder import EncoderDecoderModel
    s = dict(MT5_SHAPES[case["shape"]])
    layers = s.pop("num_layers")
    cfg = mt5.MT5Config(**s, num_encoder_layers=layers, num_decoder_layers=layers, dtype="float32")
    model = EncoderDecoderModel(cfg, seqio.PassThroughVocabulary(cfg.vocab_size, eos_id=1), z_loss=1e-4)
    enc, tgt, dec_in = _mt5_batch(case, cfg.vocab_size)
    batch = dict(encoder_input_tokens=enc, decoder_input_tokens=dec_in, decoder_target_tokens=tgt,
                 decoder_loss_weights=np.ones_like(tgt))
    shapes = {"encoder_input_tokens": enc.shape, "decoder_input_tokens": dec_in.shape}
    opt = "adafactor"
  else:
    from linguamix.models import decoder
    from linguamix.models import lora as lora_lib
    adapters = lora_lib.LoraConfig(targets="attention/", rank=LORA_RANK, alpha=LORA_ALPHA) \
        if case["lora"] else None
    model = decoder.DecoderOnlyModel(decoder.DecoderConfig(**DECODER_SHAPE, lora=adapters), None)
    ids = _decoder_ids(case)
    batch = dict(decoder_input_tokens=ids[:, :-1], decoder_target_tokens=ids[:, 1:],
                 decoder_loss_weights=np.ones_like(ids[:, 1:]))
    shapes = {"decoder_input_tokens": ids[:, :-1].shape}
    opt = "adamw"
  partitioner = partitioning.Partitioner()
  boxed = model.init_variables(jax.random.PRNGKey(0), shapes)
  params = nn.unbox(boxed["params"])
  trainable = model.trainable_mask(params)
  lr = optim.schedule("constant", 1e-3 if opt == "adafactor" else 1e-4)
  tx = optim.build(opt, lr, trainable=trainable)
  shardings = step_lib.state_shardings(partitioner.param_shardings(boxed["params"]), tx,
                                       jax.eval_shape(lambda: params), partitioner)
  state = {"params": params, "opt_state": tx.init(params), "step": np.int32(0)}
  state = jax.device_put(state, shardings)
  train_step = step_lib.make_train_step(model, tx, lr, partitioner, shardings)
  rng = jax.random.PRNGKey(1)
  batch = jax.device_put(batch)
  holder = {"state": state}

  def run(steps: int) -> None:
    m = None
    for _ in range(steps):
      holder["state"], m = train_step(holder["state"], batch, rng)
    jax.block_until_ready(m)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  # XLA's FLOP count of the whole step (forward, backward, optimizer) before optimisation:
  # the same work for both frameworks, so each one's GFLOP/s says how near its GEMM rate it is.
  flops = train_step.lower(state, batch, rng).cost_analysis()["flops"]
  return run, n_params, flops


def linguamix_gemm_gflops(n: int = GEMM_N) -> float:
  """XLA:CPU's rate on one n x n x n float32 matmul, best of 3."""
  import jax
  import jax.numpy as jnp
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
  matmul = jax.jit(jnp.matmul)
  return _best_rate(lambda: jax.block_until_ready(matmul(a, a)), 2 * n**3)


def _best_rate(fn, flops: float, repeats: int = 3) -> float:
  """GFLOP/s of fn's best run after one untimed."""
  fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return flops / best / 1e9


# --- transformers -----------------------------------------------------------------------

def transformers_step(case: dict, threads: int):
  import torch
  import transformers

  torch.set_num_threads(threads)
  torch.set_num_interop_threads(1)
  # XLA:CPU flushes denormals to zero; torch computes with them, and as Adafactor's
  # statistics decayed into that range its mt5_small step slowed from 5.6 to 24.7 s over
  # five steps (2-core Xeon). Same numerics for both, so the rounds measure the same work.
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  if case["kind"] == "mt5":
    s = MT5_SHAPES[case["shape"]]
    config = transformers.MT5Config(
        vocab_size=s["vocab_size"], d_model=s["emb_dim"], d_kv=s["head_dim"], d_ff=s["mlp_dim"],
        num_layers=s["num_layers"], num_decoder_layers=s["num_layers"], num_heads=s["num_heads"],
        dropout_rate=0.0, feed_forward_proj="gated-gelu", decoder_start_token_id=0,
        tie_word_embeddings=False)
    model = transformers.MT5ForConditionalGeneration(config).train()
    enc, tgt, dec_in = (torch.tensor(x, dtype=torch.long) for x in _mt5_batch(case, s["vocab_size"]))
    # T5X's Adafactor in transformers' spelling (decay_rate -0.8 = 1 - t^-0.8).
    optimizer = transformers.optimization.Adafactor(
        model.parameters(), lr=1e-3, scale_parameter=True, relative_step=False, warmup_init=False,
        clip_threshold=1.0, decay_rate=-0.8, beta1=None, weight_decay=0.0)
    forward = lambda: model(input_ids=enc, decoder_input_ids=dec_in, labels=tgt).loss  # noqa: E731
  else:
    config = transformers.LlamaConfig(
        vocab_size=DECODER_SHAPE["vocab_size"], hidden_size=DECODER_SHAPE["d_model"],
        num_hidden_layers=DECODER_SHAPE["num_layers"], num_attention_heads=DECODER_SHAPE["num_heads"],
        num_key_value_heads=DECODER_SHAPE["num_kv_heads"], intermediate_size=DECODER_SHAPE["mlp_dim"],
        tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config)
    if case["lora"]:
      import peft
      model = peft.get_peft_model(model, peft.LoraConfig(
          r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  weight_decay=0.01)
    ids = torch.tensor(_decoder_ids(case), dtype=torch.long)
    forward = lambda: model(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss  # noqa: E731

  def run(steps: int) -> None:
    for _ in range(steps):
      forward().backward()
      optimizer.step()
      optimizer.zero_grad(set_to_none=True)
  return run, sum(p.numel() for p in model.parameters()), None


def transformers_gemm_gflops(n: int = GEMM_N) -> float:
  """torch's rate on one n x n x n float32 matmul, best of 3 (threads as set for the step)."""
  import torch
  a = torch.from_numpy(np.random.default_rng(0).random((n, n), np.float32))
  with torch.no_grad():
    return _best_rate(lambda: a @ a, 2 * n**3)


# --- processes --------------------------------------------------------------------------

def child(framework: str, case_name: str, args) -> None:
  os.sched_setaffinity(0, set(range(args.threads)))
  case = CASES[case_name]
  t0 = time.perf_counter()
  if framework == "linguamix":
    _malloc_tuning.run_cpu_programs_inline()  # as the entry points do (unless switched off)
    run, n_params, flops = linguamix_step(case, args.ynn)
    gemm = linguamix_gemm_gflops
  else:
    run, n_params, flops = transformers_step(case, args.threads)
    gemm = transformers_gemm_gflops
  run(1)  # compile / warm up
  warmup_s = time.perf_counter() - t0
  print(json.dumps({"ready": True, "params": n_params, "flops": flops, "gemm_gflops": gemm(),
                    "warmup_s": warmup_s}), flush=True)
  for line in sys.stdin:
    if line.strip() == "quit":
      break
    steps = int(line)
    run(args.settle)  # untimed: see --settle
    start, cpu_start = time.perf_counter(), time.process_time()
    run(steps)
    print(json.dumps({"seconds": (time.perf_counter() - start) / steps,
                      "cpu_seconds": (time.process_time() - cpu_start) / steps}), flush=True)
  print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


class Child:
  def __init__(self, framework, case_name, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               OMP_NUM_THREADS=str(args.threads))
    if args.malloc_tuning:  # what linguamix's entry points give themselves, for both alike
      env = _malloc_tuning.environment(env) or env
    else:
      env[_malloc_tuning.ENV_SWITCH] = "0"
    self.proc = subprocess.Popen(
        [sys.executable, __file__, "--_child", framework, case_name, "--threads", str(args.threads),
         "--ynn", args.ynn, "--settle", str(args.settle)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    self.info = self._read()

  def _read(self) -> dict:
    while True:
      line = self.proc.stdout.readline()
      if not line:
        raise SystemExit(f"error: a benchmark process exited (code {self.proc.wait()})")
      if line.startswith("{"):
        return json.loads(line)

  def round(self, steps: int) -> dict:
    self.proc.stdin.write(f"{steps}\n")
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> float:
    self.proc.stdin.write("quit\n")
    self.proc.stdin.flush()
    rss = self._read()["peak_rss_mib"]
    self.proc.wait()
    return rss


def _tunables(args) -> str:
  env = dict(os.environ)
  return ((_malloc_tuning.environment(env) if args.malloc_tuning else None) or env).get("GLIBC_TUNABLES", "")


def _load() -> str:
  with open("/proc/loadavg") as f:
    return " ".join(f.read().split()[:3])


def _spread(t_transformers, t_linguamix) -> dict:
  """Median of the per-round ratios (transformers / linguamix), its min-max and IQR."""
  ratios = np.array(t_transformers) / np.array(t_linguamix)
  q1, q3 = np.percentile(ratios, [25, 75])
  return {"ratio": float(np.median(ratios)), "ratio_min": float(ratios.min()),
          "ratio_max": float(ratios.max()), "ratio_q1": float(q1), "ratio_q3": float(q3)}


def compare(case_name: str, args) -> dict:
  load_before = _load()
  a, b = Child("linguamix", case_name, args), Child("transformers", case_name, args)
  rounds = {"linguamix": [], "transformers": []}
  try:
    for _ in range(args.rounds):
      rounds["linguamix"].append(a.round(args.steps))
      rounds["transformers"].append(b.round(args.steps))
  finally:
    rss = {"linguamix": a.close(), "transformers": b.close()}
  wall = {k: [r["seconds"] for r in v] for k, v in rounds.items()}
  cpu = {k: [r["cpu_seconds"] for r in v] for k, v in rounds.items()}
  return {"case": case_name, "params": a.info["params"], "tokens": _tokens(CASES[case_name]),
          "gflop_per_step": a.info["flops"] / 1e9,
          "gemm_gflops": {"linguamix": a.info["gemm_gflops"], "transformers": b.info["gemm_gflops"]},
          "linguamix_s": float(np.median(wall["linguamix"])),
          "transformers_s": float(np.median(wall["transformers"])),
          **_spread(wall["transformers"], wall["linguamix"]),
          "linguamix_cpu_s": float(np.median(cpu["linguamix"])),
          "transformers_cpu_s": float(np.median(cpu["transformers"])),
          "cpu": _spread(cpu["transformers"], cpu["linguamix"]),
          "rss_mib": rss, "load_before": load_before, "load_after": _load(),
          "rounds_s": wall, "rounds_cpu_s": cpu}


def roofline_line(r: dict) -> str:
  """Each side's step rate against its own float32 GEMM rate, and the speed-up linguamix
  would have if its whole step ran at that GEMM rate: where a step is mostly matmuls, the
  ratio of the two libraries' GEMMs on this CPU bounds the ratio of the steps."""
  gflop, gemm = r["gflop_per_step"], r["gemm_gflops"]
  rate = {k: gflop / r[k + "_s"] for k in ("linguamix", "transformers")}
  ceiling = r["transformers_s"] / (gflop / gemm["linguamix"])
  return (f"{r['case']:<13} work  {gflop:.2f} GFLOP/step (XLA's count); GFLOP/s, wall: linguamix "
          f"{rate['linguamix']:.1f} ({100 * rate['linguamix'] / gemm['linguamix']:.0f}% of its "
          f"{GEMM_N}^3 fp32 GEMM, {gemm['linguamix']:.1f}), transformers {rate['transformers']:.1f} "
          f"({100 * rate['transformers'] / gemm['transformers']:.0f}% of {gemm['transformers']:.1f}); "
          f"at its GEMM rate: {ceiling:.2f}x")


def describe(name: str) -> str:
  c = CASES[name]
  if c["kind"] == "mt5":
    return f"{c['shape']} mT5, batch {c['batch']} x ({c['inputs']} + {c['targets']}), Adafactor"
  return (f"Llama-style 124.7M{' + LoRA r16 q/k/v/o' if c['lora'] else ''}, batch {c['batch']} x "
          f"{c['length']}, AdamW")


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
  p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (A B) per case")
  p.add_argument("--steps", type=int, default=2, help="steps per round per framework")
  p.add_argument("--settle", type=int, default=1,
                 help="untimed steps at the start of each round: the first step after the other "
                      "process ran pays for memory the other one churned (with huge pages, the "
                      "kernel's compaction: ~1.2 s of linguamix's 2.1 s LoRA step)")
  p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                 help="cores both processes are pinned to; torch intra-op threads")
  p.add_argument("--ynn", choices=["step", *sorted(YNN)], default="step",
                 help="XLA:CPU YNNPACK fusions of the linguamix step (step: the step's own choice)")
  p.add_argument("--no-malloc-tuning", dest="malloc_tuning", action="store_false",
                 help="leave glibc malloc as the environment has it (default: for both the settings "
                      "linguamix's entry points give themselves; see linguamix/_malloc_tuning.py)")
  p.add_argument("--json", action="store_true", help="also print each case's figures as JSON")
  p.add_argument("--_child", nargs=2, metavar=("FRAMEWORK", "CASE"), help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._child:
    # The children's stderr as linguamix's commands have it: no C++ start-up logs (TF via
    # seqio), no library deprecation warnings; errors and tracebacks still pass.
    _quiet.install(verbose=False)
    warnings.filterwarnings("ignore", category=FutureWarning)
    child(*args._child, args)
    return 0
  unknown = [c for c in args.cases.split(",") if c not in CASES]
  if unknown:
    p.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
  if args.threads > len(os.sched_getaffinity(0)):
    p.error(f"--threads {args.threads} > the {len(os.sched_getaffinity(0))} cores this process may use")
  print(f"float32, one full training step (forward, backward, optimizer); {args.rounds} interleaved "
        f"rounds x {args.steps} steps (after {args.settle} untimed); both pinned to {args.threads} core(s) (torch threads "
        f"{args.threads}); XLA:CPU YNNPACK fusions: {args.ynn}; GLIBC_TUNABLES (both): "
        f"{_tunables(args) or 'none'}; "
        f"torch flushes denormals (as XLA); machine: {os.cpu_count()} cores")
  print("wall: seconds per step; cpu: process CPU seconds per step (all threads), which other "
        "jobs on the machine disturb far less than wall time")
  print(f"{'case':<13} {'clock':<5} {'linguamix s/step':>16} {'transformers s/step':>19} {'speed-up':>9} "
        f"{'min-max':>11} {'IQR':>11} {'RSS MiB (l/t)':>14}  load before -> after")
  for name in args.cases.split(","):
    r = compare(name, args)
    for clock, s, spread in (("wall", "_s", r), ("cpu", "_cpu_s", r["cpu"])):
      print(f"{name:<13} {clock:<5} {r['linguamix' + s]:>16.4f} {r['transformers' + s]:>19.4f} "
            f"{spread['ratio']:>8.2f}x {spread['ratio_min']:>5.2f}-{spread['ratio_max']:<5.2f} "
            f"{spread['ratio_q1']:>5.2f}-{spread['ratio_q3']:<5.2f} "
            f"{r['rss_mib']['linguamix']:>6.0f}/{r['rss_mib']['transformers']:<7.0f}  "
            f"{r['load_before']} -> {r['load_after']}   ({describe(name)})", flush=True)
    print(roofline_line(r), flush=True)
    if args.json:
      print(json.dumps(r))
  return 0


if __name__ == "__main__":
  sys.exit(main())
