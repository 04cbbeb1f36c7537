"""Input-pipeline throughput of a tokenized instruction task with LANGIT n-shot prompts.

  python benchmarks/bench_tasks.py [--task sphinx_langit.de] [--inputs 512] [--n 2000]

Prints examples/s and tokens/s (non-padding inputs + targets tokens) of
`task.get_dataset(...)` on this machine, after one warm-up pass (file parsing cached),
the same task without LANGIT for comparison, and the LANGIT task packed by SeqIO's
EncDecFeatureConverter (packed rows/s, tokens/s and packing efficiency = share of
non-padding positions).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(task_name, lengths, n):
  import seqio
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(lengths, split="train", shuffle=False).repeat().take(n)
  next(iter(ds))  # warm-up: parse files, build the graph
  start, examples, tokens = time.perf_counter(), 0, 0
  for ex in ds.as_numpy_iterator():
    examples += 1
    tokens += len(ex["inputs"]) + len(ex["targets"])
  secs = time.perf_counter() - start
  return examples / secs, tokens / secs, tokens / examples


def measure_packed(task_name, lengths, n):
  import seqio
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(lengths, split="train", shuffle=False).repeat().take(n)
  packed = seqio.EncDecFeatureConverter(pack=True)(ds, lengths)
  next(iter(packed))
  start, rows, real, slots = time.perf_counter(), 0, 0, 0
  for ex in packed.as_numpy_iterator():
    rows += 1
    real += int((ex["encoder_input_tokens"] > 0).sum() + (ex["decoder_target_tokens"] > 0).sum())
    slots += ex["encoder_input_tokens"].size + ex["decoder_target_tokens"].size
  secs = time.perf_counter() - start
  return rows / secs, real / secs, real / slots


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--task", default="sphinx_langit.de")
  parser.add_argument("--inputs", type=int, default=512)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--n", type=int, default=2000)
  args = parser.parse_args()
  import linguamix.t5x_tasks  # noqa: F401  (registers the tasks)
  lengths = {"inputs": args.inputs, "targets": args.targets}
  plain = args.task.replace("_langit.", ".")
  for name in dict.fromkeys([args.task, plain]):
    eps, tps, avg = measure(name, lengths, args.n)
    print(f"{name:22s} lengths={lengths}  {eps:8.1f} examples/s  {tps:10.1f} tokens/s  "
          f"({avg:.1f} tokens/example)")
  rps, tps, eff = measure_packed(args.task, lengths, args.n)
  print(f"{args.task + ' packed':22s} lengths={lengths}  {rps:8.1f} packed rows/s  "
        f"{tps:10.1f} tokens/s  packing efficiency {eff:.1%}")


if __name__ == "__main__":
  main()
