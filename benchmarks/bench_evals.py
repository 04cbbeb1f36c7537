"""Rank-classification throughput of `linguamix.evals.runner.evaluate` (requests/s).

    python benchmarks/bench_evals.py [task_or_mixture]
        tiny random mT5 on the bundled vocabulary, real XCOPA (bundled): requests/s.
    python benchmarks/bench_evals.py --vs-lm-eval [--benchmark xcopa|xnli] [--rounds R]
                                     [--languages it,sw] [--limit N] [--batch_size B] [--size small]
        lm-evaluation-harness 0.4.13 (HFLM, PyTorch) and linguamix (JAX) on the same random
        Llama-style causal LM (BOS-adding byte-level BPE tokenizer trained here), the same
        real XCOPA files (lm-eval's own yamls pointed at them) and the same batch size,
        or `--benchmark xnli`: XNLI's 15 languages in the release's layout (and lm-eval's
        JSON lines), premise and hypothesis taken from XCOPA's real sentences (three
        requests an example that share the premise; --limit examples a language, 500 by default),
        interleaved: lm-eval, linguamix, lm-eval, linguamix, ... for R rounds. Each call is
        timed whole (data, tokenization, model loading or compilation, scoring, metrics),
        in wall seconds and in CPU seconds (user + system of this process); per round and
        the medians, with the ratio lm-eval / linguamix. `--languages it` times a
        one-language task, where start-up weighs most. Needs the test extra (lm-eval,
        torch, transformers).

    Timings are only worth reporting from a quiet machine: the 1-minute load average is
    printed before and after every call; before each call the run waits up to 2 min for it
    to fall below --max_load (default 1.5, for a 2-core machine; scale with the cores:
    the previous call's own busy cores keep it up a while), and stops when it does not, unless
    --allow_load is given, in which case every figure is flagged as taken under load.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import flax.linen as nn
import jax

from linguamix.evals import runner
from linguamix.evals import xnli
from linguamix.models import encoder_decoder, mt5
from linguamix.t5x_tasks import vocab

BUNDLED = pathlib.Path(__file__).resolve().parents[1] / "linguamix" / "evals" / "bundled"
SIZES = {  # hidden, layers, heads, kv heads, mlp
    "tiny": (32, 2, 4, 2, 64),
    "small": (256, 4, 8, 4, 768),
}


def load() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


SETTLE_S = 120  # the most a call waits for the load left by the one before it


def load_1min() -> float:
  return os.getloadavg()[0]


class LoadGuard:
  """The 1-minute load average around each timed call: refuses a loaded machine, or with
  `allow` flags what was measured on one."""

  def __init__(self, max_load: float, allow: bool):
    self.max_load, self.allow, self.loaded = max_load, allow, False

  def check(self, when: str, settle_s: float = 0.0) -> float:
    """The load now; first waits up to `settle_s` for it to fall below the limit: the
    previous call's own busy cores keep the 1-minute average up for a while after it ends."""
    value, deadline = load_1min(), time.time() + settle_s
    while value > self.max_load and time.time() < deadline:
      time.sleep(5)
      value = load_1min()
    if value > self.max_load:
      self.loaded = True
      if not self.allow:
        sys.exit(f"error: 1-minute load average {value:.2f} {when} is above --max_load "
                 f"{self.max_load}: other work would distort the timings; rerun on a quiet "
                 "machine (or pass --allow_load to time anyway, flagged)")
      print(f"WARNING: 1-minute load average {value:.2f} {when} > {self.max_load}: "
            "figures below are flagged LOADED, not publishable")
    return value


def timed(fn, guard: LoadGuard, label: str):
  """(result, wall s, CPU s) of fn(); load printed before and after (only the load before
  is judged: after, it is mostly the call's own)."""
  before = guard.check(f"before {label}", settle_s=SETTLE_S)
  cpu0 = resource.getrusage(resource.RUSAGE_SELF)
  start = time.perf_counter()
  out = fn()
  wall = time.perf_counter() - start
  cpu1 = resource.getrusage(resource.RUSAGE_SELF)
  cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
  after = load_1min()
  print(f"  {label}: {wall:.1f} s wall, {cpu:.1f} s CPU; load (1 min) {before:.2f} -> {after:.2f}")
  return out, wall, cpu


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


def xnli_files(xcopa_rows: dict, per_lang: int, root: pathlib.Path, lm_dir: pathlib.Path) -> dict:
  """XNLI's 15 languages, `per_lang` examples each, premise and hypothesis taken from
  XCOPA's real sentences (all its languages in turn): the release's xnli.dev.tsv under
  `root` for linguamix, one JSON-lines file a language (the Hub dataset's fields) for
  lm-eval; returns lm-eval's {task: file}. The release's layout is the tests' writer's."""
  from evals_helpers import write_tsv  # tests/
  from test_evals_benchmarks import XNLI_HEADER, _xnli_row
  pairs = [(r["premise"], r[f"choice{1 + i % 2}"]) for i, r in
           enumerate(r for rows in zip(*xcopa_rows.values()) for r in rows)]
  lm_dir.mkdir(parents=True)
  files, tsv_rows, pair = {}, [], 0
  for lang in sorted(xnli.WORDS):
    lm_rows = []
    for _ in range(per_lang):
      premise, hypothesis = pairs[pair % len(pairs)]
      tsv_rows.append(_xnli_row(lang, xnli.LABELS[pair % 3], premise, hypothesis, pair))
      lm_rows.append(json.dumps({"premise": premise, "hypothesis": hypothesis, "label": pair % 3},
                                ensure_ascii=False))
      pair += 1
    path = lm_dir / f"xnli_{lang}.jsonl"
    path.write_text("\n".join(lm_rows) + "\n", encoding="utf-8")
    files[f"xnli_{lang}"] = str(path)
  write_tsv(root / "xnli" / "xnli.dev.tsv", XNLI_HEADER, tsv_rows)  # XCOPA's sentences hold no tab
  return files


def vs_lm_eval(args) -> None:
  guard = LoadGuard(args.max_load, args.allow_load)
  guard.check("at start")
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
  import gin
  import torch
  import transformers
  import lm_eval_helpers  # lm-eval on local files (tests/)
  from linguamix.models import decoder, hf_vocabulary
  from linguamix.models.hf import decoder_io

  xcopa_langs = sorted(p.name for p in (BUNDLED / "xcopa").iterdir() if p.is_dir())
  xcopa_rows = {lang: list(map(json.loads, (BUNDLED / "xcopa" / lang / f"test.{lang}.jsonl")
                               .read_text("utf-8").splitlines())) for lang in xcopa_langs}
  texts = [" ".join([r["premise"], r["choice1"], r["choice2"]]) for rows in xcopa_rows.values() for r in rows]
  bench = args.benchmark
  all_langs = xcopa_langs if bench == "xcopa" else sorted(xnli.WORDS)
  choices = 2 if bench == "xcopa" else 3
  langs = args.languages.split(",") if args.languages else all_langs
  unknown = sorted(set(langs) - set(all_langs))
  if unknown:
    sys.exit(f"error: --languages {','.join(unknown)}: {bench} has {','.join(all_langs)}")
  limit = args.limit if bench == "xcopa" else (args.limit or 500)
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
    if bench == "xcopa":
      data_root = BUNDLED
      files = {f"xcopa_{l}": str(BUNDLED / "xcopa" / l / f"test.{l}.jsonl") for l in all_langs}
      folders = (("xcopa", "_xcopa.yaml"),)
    else:
      data_root = tmp / "data"
      files = xnli_files(xcopa_rows, limit, data_root, tmp / "lm")
      folders = (("xnli", "_xnli.yaml"),)
    lm_eval_helpers.copy_tasks(tmp / "tasks", files, folders=folders)
    lm_tasks = [f"lmx_{bench}"] if langs == all_langs else [f"lmx_{bench}_{l}" for l in langs]
    ours_tasks = bench if langs == all_langs else [f"{bench}.{l}" for l in langs]
    per_lang = limit or 500
    requests = choices * len(langs) * per_lang
    print(f"model: random Llama-style d={hidden} layers={layers} vocab={n}; {bench} {len(langs)} "
          f"language(s) x {per_lang} examples x {choices} choices = {requests} requests; "
          f"batch {args.batch_size}; {args.rounds} interleaved rounds")
    print(f"threads: torch {torch.get_num_threads()} (intra-op), JAX CPU devices "
          f"{jax.device_count()}, os.cpu_count {os.cpu_count()}; max load {args.max_load}")
    print(f"load: {load()}")

    os.environ["LINGUAMIX_EVAL_DATA_ROOT"] = str(data_root)
    vocabulary = hf_vocabulary.HfTokenizerVocabulary(str(hf_dir))
    with gin.unlock_config():
      gin.bind_parameter("linguamix.t5x_tasks.task_vocabulary.vocabulary", vocabulary)
    _, cfg, params = decoder_io.load_hf(hf_dir)
    model = decoder.DecoderOnlyModel(cfg, vocabulary)

    def run_lm_eval():
      return lm_eval_helpers.run(hf_dir, lm_tasks, tmp / "tasks", limit, batch_size=args.batch_size)

    def run_ours():
      return runner.evaluate(model, params, ours_tasks, str(tmp / "ours"), batch_size=args.batch_size,
                             num_examples=choices * limit if limit else None)

    times = {"lm-eval": [], "linguamix": []}
    for r in range(1, args.rounds + 1):
      print(f"round {r}:")
      (lm_out, _, scoring), wall, cpu = timed(run_lm_eval, guard, "lm-eval")
      times["lm-eval"].append((wall, cpu))
      results, wall, cpu = timed(run_ours, guard, "linguamix")
      times["linguamix"].append((wall, cpu))
      print(f"  ratio lm-eval / linguamix: wall {times['lm-eval'][-1][0] / wall:.2f}x, "
            f"CPU {times['lm-eval'][-1][1] / cpu:.2f}x (lm-eval's scoring loop alone: {scoring:.1f} s)")
    flag = " [LOADED: not publishable]" if guard.loaded else ""
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    ratios = [a[0] / b[0] for a, b in zip(times["lm-eval"], times["linguamix"])]
    print(f"median of {args.rounds} rounds{flag}: lm-eval {med['lm-eval'][0]:.1f} s "
          f"({requests / med['lm-eval'][0]:.1f} requests/s, {med['lm-eval'][1]:.1f} s CPU), "
          f"linguamix {med['linguamix'][0]:.1f} s ({requests / med['linguamix'][0]:.1f} requests/s, "
          f"{med['linguamix'][1]:.1f} s CPU)")
    print(f"speed-up lm-eval / linguamix{flag}: wall {med['lm-eval'][0] / med['linguamix'][0]:.2f}x "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f}), CPU {med['lm-eval'][1] / med['linguamix'][1]:.2f}x")
    key = f"lmx_{bench}" if langs == all_langs else f"lmx_{bench}_{langs[0]}"
    if len(langs) == 1 or langs == all_langs:
      group = lm_out["results"][key]["acc,none"] * 100
      ours = sum(r["acc"] * r["num_examples"] for r in results.values()) / sum(
          r["num_examples"] for r in results.values())
      print(f"{bench} acc (size-weighted): lm-eval {group:.2f}, linguamix {ours:.2f}")
    print(f"load: {load()}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("task", nargs="?", default="xcopa", help="task or mixture (tiny mT5 mode)")
  parser.add_argument("--vs-lm-eval", action="store_true", help="both tools side by side")
  parser.add_argument("--benchmark", choices=("xcopa", "xnli"), default="xcopa",
                      help="--vs-lm-eval: real XCOPA, or XNLI-shaped rows of XCOPA's sentences")
  parser.add_argument("--limit", type=int, default=None,
                      help="examples per language (XCOPA: of 500; XNLI: default 500)")
  parser.add_argument("--languages", default=None,
                      help="comma-separated languages (default: all of the benchmark's); one language times start-up")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved lm-eval / linguamix rounds")
  parser.add_argument("--max_load", type=float, default=1.5,
                      help="refuse to time above this 1-minute load average (2 cores: 1.5)")
  parser.add_argument("--allow_load", action="store_true",
                      help="time on a loaded machine anyway; every figure is flagged")
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
