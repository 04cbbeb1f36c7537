"""Rank-classification throughput of `linguamix.evals.runner.evaluate` (requests/s).

Scores the real XCOPA test sets (../shared/data, or $LINGUAMIX_EVAL_DATA_ROOT) with a
tiny randomly initialised mT5 on the bundled vocabulary and prints requests/s and the
(chance-level) accuracies. Usage: python benchmarks/bench_evals.py [task_or_mixture]
"""

import os
import sys
import tempfile
import time

import flax.linen as nn
import jax

from linguamix.evals import runner
from linguamix.models import encoder_decoder, mt5
from linguamix.t5x_tasks import vocab


def main():
  name = sys.argv[1] if len(sys.argv) > 1 else "xcopa"
  os.environ.setdefault("LINGUAMIX_EVAL_DATA_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
  model = encoder_decoder.EncoderDecoderModel(mt5.MT5Config(
      vocab_size=vocab.VOCABULARY.vocab_size, emb_dim=64, num_heads=2, num_encoder_layers=2,
      num_decoder_layers=2, head_dim=32, mlp_dim=128, dtype="float32"), vocab.VOCABULARY)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = nn.meta.unbox(jax.jit(lambda r: model.init_variables(r, shapes))(jax.random.PRNGKey(0)))["params"]
  lengths = None  # measured: the longest request of each task
  with tempfile.TemporaryDirectory() as out:
    start = time.time()
    results = runner.evaluate(model, params, name, out, batch_size=64, sequence_length=lengths)
    seconds = time.time() - start
  requests = sum(2 * r["num_examples"] for r in results.values())  # two choices per example
  print(f"{name}: {int(requests)} requests in {seconds:.1f} s = {requests / seconds:.0f} requests/s "
        f"(tiny mT5, batch 64, lengths {lengths}, {jax.devices()[0].platform})")
  for task, m in sorted(results.items()):
    print(f"  {task}: acc {m['acc']:.1f} acc_norm {m['acc_norm']:.1f} n {int(m['num_examples'])}")


if __name__ == "__main__":
  main()
