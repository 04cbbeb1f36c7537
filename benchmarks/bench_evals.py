"""Rank-classification throughput of `linguamix.evals.runner.evaluate` (requests/s).

    python benchmarks/bench_evals.py [task_or_mixture]
        tiny random mT5 on the bundled vocabulary, real XCOPA (bundled): requests/s.
    python benchmarks/bench_evals.py --vs-lm-eval [--limit N] [--batch_size B] [--size small]
        lm-evaluation-harness 0.4.13 (HFLM, PyTorch) and linguamix (JAX), one after the
        other, on the same random Llama-style causal LM (BOS-adding byte-level BPE
        tokenizer trained here), the same real XCOPA files (lm-eval's own yamls pointed at
        them) and the same batch size: requests/s of each and the ratio. Both wall times
        cover the whole call (data, tokenization, compilation, scoring, metrics); lm-eval's
        time inside its scoring loop is printed too. Needs the test extra (lm-eval, torch,
        transformers). Threads and the machine's load are printed: figures on a shared,
        loaded machine are not ratios of truth.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import flax.linen as nn
import jax

from linguamix.evals import runner
from linguamix.models import encoder_decoder, mt5
from linguamix.t5x_tasks import vocab

BUNDLED = pathlib.Path(__file__).resolve().parents[1] / "linguamix" / "evals" / "bundled"
SIZES = {  # hidden, layers, heads, kv heads, mlp
    "tiny": (32, 2, 4, 2, 64),
    "small": (256, 4, 8, 4, 768),
}


def load() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def tiny_mt5(name: str) -> None:
  os.environ.setdefault("LINGUAMIX_EVAL_DATA_ROOT", str(BUNDLED))
  model = encoder_decoder.EncoderDecoderModel(mt5.MT5Config(
      vocab_size=vocab.VOCABULARY.vocab_size, emb_dim=64, num_heads=2, num_encoder_layers=2,
      num_decoder_layers=2, head_dim=32, mlp_dim=128, dtype="float32"), vocab.VOCABULARY)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = nn.meta.unbox(jax.jit(lambda r: model.init_variables(r, shapes))(jax.random.PRNGKey(0)))["params"]
  with tempfile.TemporaryDirectory() as out:
    start = time.time()
    results = runner.evaluate(model, params, name, out, batch_size=64)
    seconds = time.time() - start
  requests = sum(2 * r["num_examples"] for r in results.values())  # two choices per example
  print(f"{name}: {requests} requests in {seconds:.1f} s = {requests / seconds:.0f} requests/s "
        f"(tiny mT5, batch 64, {jax.devices()[0].platform}); load: {load()}")
  for task, m in sorted(results.items()):
    print(f"  {task}: acc {m['acc']:.1f} ± {m['acc_stderr']:.1f} n {m['num_examples']}")


def vs_lm_eval(args) -> None:
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
  import gin
  import torch
  import transformers
  import lm_eval_helpers  # lm-eval on local files (tests/)
  from linguamix.models import decoder, hf_vocabulary
  from linguamix.models.hf import decoder_io

  langs = sorted(p.name for p in (BUNDLED / "xcopa").iterdir() if p.is_dir())
  texts = [" ".join([r["premise"], r["choice1"], r["choice2"]])
           for lang in langs for r in map(json.loads, (BUNDLED / "xcopa" / lang / f"test.{lang}.jsonl")
                                          .read_text("utf-8").splitlines())]
  hidden, layers, heads, kv, mlp = SIZES[args.size]
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    hf_dir = tmp / "hf"
    n = lm_eval_helpers.train_tokenizer(hf_dir, texts, "<s> $A", ["<unk>", "<s>", "</s>"],
                                        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
                                        vocab_size=args.vocab_size)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=n, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, intermediate_size=mlp, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2)).eval().save_pretrained(hf_dir)
    files = {f"xcopa_{l}": str(BUNDLED / "xcopa" / l / f"test.{l}.jsonl") for l in langs}
    lm_eval_helpers.copy_tasks(tmp / "tasks", files, folders=(("xcopa", "_xcopa.yaml"),))
    limit = args.limit
    requests = 2 * len(langs) * (limit or 500)
    print(f"model: random Llama-style d={hidden} layers={layers} vocab={n}; XCOPA {len(langs)} "
          f"languages x {limit or 500} examples x 2 choices = {requests} requests; batch {args.batch_size}")
    print(f"threads: torch {torch.get_num_threads()} (intra-op), JAX CPU devices "
          f"{jax.device_count()}, os.cpu_count {os.cpu_count()}")
    print(f"load before: {load()}")

    start = time.perf_counter()
    lm_out, _, scoring = lm_eval_helpers.run(hf_dir, ["lmx_xcopa"], tmp / "tasks", limit,
                                             batch_size=args.batch_size)
    lm_seconds = time.perf_counter() - start
    print(f"lm-eval {lm_eval_helpers.lm_eval.__version__}: {lm_seconds:.1f} s = "
          f"{requests / lm_seconds:.1f} requests/s (its scoring loop alone: {scoring:.1f} s = "
          f"{requests / scoring:.1f} requests/s); load: {load()}")

    os.environ["LINGUAMIX_EVAL_DATA_ROOT"] = str(BUNDLED)
    vocabulary = hf_vocabulary.HfTokenizerVocabulary(str(hf_dir))
    with gin.unlock_config():
      gin.bind_parameter("linguamix.t5x_tasks.task_vocabulary.vocabulary", vocabulary)
    _, cfg, params = decoder_io.load_hf(hf_dir)
    model = decoder.DecoderOnlyModel(cfg, vocabulary)
    start = time.perf_counter()
    results = runner.evaluate(model, params, "xcopa", str(tmp / "ours"), batch_size=args.batch_size,
                              num_examples=2 * limit if limit else None)
    ours_seconds = time.perf_counter() - start
    print(f"linguamix: {ours_seconds:.1f} s = {requests / ours_seconds:.1f} requests/s "
          f"(including compilation); load: {load()}")
    print(f"ratio linguamix / lm-eval requests/s: {lm_seconds / ours_seconds:.2f}x "
          f"(vs its scoring loop alone: {scoring / ours_seconds:.2f}x)")
    group = lm_out["results"]["lmx_xcopa"]["acc,none"] * 100
    ours = sum(r["acc"] * r["num_examples"] for r in results.values()) / sum(
        r["num_examples"] for r in results.values())
    print(f"xcopa acc (size-weighted): lm-eval {group:.2f}, linguamix {ours:.2f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("task", nargs="?", default="xcopa", help="task or mixture (tiny mT5 mode)")
  parser.add_argument("--vs-lm-eval", action="store_true", help="both tools side by side")
  parser.add_argument("--limit", type=int, default=None, help="XCOPA examples per language (of 500)")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--size", choices=sorted(SIZES), default="small")
  parser.add_argument("--vocab_size", type=int, default=2000)
  args = parser.parse_args()
  if args.vs_lm_eval:
    vs_lm_eval(args)
  else:
    tiny_mt5(args.task)


if __name__ == "__main__":
  main()
