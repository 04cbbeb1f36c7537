"""linguamix.mixtures.packing: efficiency as SeqIO's own packer achieves it, suggested
lengths that reach the target without truncating the p99 example."""

import numpy as np

from linguamix.mixtures import packing


def _examples(lengths):
  return [{"inputs": np.arange(1, i + 1, dtype=np.int32), "targets": np.arange(1, t + 1, dtype=np.int32)}
          for i, t in lengths]


def test_efficiency_is_what_seqio_packing_leaves_unpadded():
  ex = _examples([(10, 5)] * 60)
  # two examples fill a 20/10 row exactly; a 15/10 row takes one (10 + 5 of 25 slots)
  assert packing.efficiency(ex, {"inputs": 20, "targets": 10})["efficiency"] == 1.0
  assert packing.efficiency(ex, {"inputs": 15, "targets": 10})["efficiency"] == 0.6
  unpacked = packing.efficiency(ex, {"inputs": 20, "targets": 10}, pack=False)
  assert unpacked["efficiency"] == 0.5
  cut = packing.efficiency(ex, {"inputs": 8, "targets": 10})
  assert abs(cut["truncated"] - 2 / 15) < 1e-9  # 2 of each example's 15 tokens
  # a decoder packs inputs + targets into one row of 10 + 5: one example fills it
  assert packing.efficiency(ex, {"inputs": 10, "targets": 5}, model="decoder")["efficiency"] == 1.0


def test_suggested_lengths_pack_to_the_target_and_keep_examples_whole():
  rng = np.random.default_rng(0)
  ex = _examples(zip(rng.integers(15, 40, 800), rng.integers(2, 12, 800)))
  stats = packing.length_stats(ex)
  s = packing.suggest_lengths(ex, target=0.9)
  assert s["efficiency"] >= 0.9
  assert s["lengths"]["inputs"] >= stats["inputs"]["p99"] and s["lengths"]["targets"] >= stats["targets"]["p99"]
  assert all(v % 16 == 0 for v in s["lengths"].values())
  # equal lengths waste most target slots on this inputs-heavy data
  assert packing.efficiency(ex, {"inputs": 128, "targets": 128})["efficiency"] < 0.7
