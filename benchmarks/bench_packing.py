"""Examples/s of SeqIO's packer and linguamix's on the same in-memory examples.

  python benchmarks/bench_packing.py [--n 20000] [--rounds 3]

The examples follow the 40-shot recipe's lengths (inputs ~26 +- 6 tokens, targets
~5 +- 3), cached in memory so only packing is timed; each round runs SeqIO's
`trim_and_pack_dataset` and then ours over all of them (batched by 128 rows and read
as NumPy, as training reads them), interleaved so load changes hit both. Prints each
round, the median ratio and `uptime` before and after: on a shared machine, state it.
"""

import argparse
import os
import statistics
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LENGTHS = ({"inputs": 416, "targets": 80}, {"inputs": 128, "targets": 128})


def examples(n: int, seed: int = 0):
  import numpy as np
  import tensorflow as tf
  rng = np.random.default_rng(seed)
  sizes = {"inputs": np.clip(rng.normal(26, 6, n), 1, None).astype(int),
           "targets": np.clip(rng.normal(5, 3, n), 1, None).astype(int)}
  data = [{k: rng.integers(1, 32000, sizes[k][i]).astype(np.int32) for k in sizes}
          for i in range(n)]
  ds = tf.data.Dataset.from_generator(
      lambda: iter(data), output_signature={k: tf.TensorSpec([None], tf.int32) for k in sizes})
  ds = ds.cache()
  for _ in ds:  # fills the cache
    pass
  return ds


def examples_per_s(pack, ds, lengths, n: int) -> float:
  rows = pack(ds, lengths).batch(128)
  start = time.perf_counter()
  for _ in rows.as_numpy_iterator():
    pass
  return n / (time.perf_counter() - start)


def uptime() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=20000)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  import seqio
  from linguamix.models import feature_converters
  packers = {"seqio": seqio.utils.trim_and_pack_dataset,
             "linguamix": feature_converters.trim_and_pack_dataset}
  print(f"before: {uptime()}")
  ds = examples(args.n)
  for lengths in LENGTHS:
    rates = {name: [] for name in packers}
    for r in range(args.rounds):
      for name, pack in packers.items():
        rates[name].append(examples_per_s(pack, ds, lengths, args.n))
      print(f"{lengths} round {r + 1}: " +
            "  ".join(f"{name} {rates[name][-1]:9,.0f} ex/s" for name in packers))
    ratio = statistics.median(rates["linguamix"]) / statistics.median(rates["seqio"])
    print(f"{lengths} median: " + "  ".join(
        f"{name} {statistics.median(v):9,.0f} ex/s" for name, v in rates.items()) +
          f"  ratio {ratio:.1f}x")
  print(f"after: {uptime()}")


if __name__ == "__main__":
  main()
