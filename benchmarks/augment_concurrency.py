"""Throughput of `linguamix augment` against a loopback endpoint with fixed latency.

Prints items/s for several worker counts: with a 50 ms endpoint the pipeline should
scale close to linearly until the validator (py3langid) or the GIL becomes the limit.

  python benchmarks/augment_concurrency.py [--items 200] [--latency 0.05]
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from augment_endpoint import FakeChatEndpoint  # noqa: E402  (the tests' OpenAI-style server)

from linguamix.augment import ChatClient, augment  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--items", type=int, default=200)
  parser.add_argument("--latency", type=float, default=0.05)
  args = parser.parse_args()
  items = [{"id": f"item-{i}", "system_prompt": "", "response": f"It is {i} metres long.",
            "question": f"[item-{i}] How long is the bridge at https://example.com/{i}?"}
           for i in range(args.items)]
  os.environ["BENCH_KEY"] = "sk-bench"
  with FakeChatEndpoint("sk-bench", delay=args.latency) as endpoint:
    for workers in (1, 4, 16):
      client = ChatClient(endpoint.base_url, "bench", api_key_env="BENCH_KEY")
      with tempfile.TemporaryDirectory() as out:
        summary = augment(items, {"de": args.items}, client=client, out_dir=out,
                          workers=workers, progress=False)
      run = summary["this_run"]
      print(json.dumps({"workers": workers, "items": args.items, "latency_s": args.latency,
                        "seconds": run["seconds"],
                        "items_per_s": round(args.items / run["seconds"], 1),
                        "accepted": summary["totals"]["accepted"]}))


if __name__ == "__main__":
  main()
