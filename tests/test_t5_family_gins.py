"""UMT5 / T5 model gins: the published configs' shapes and parameter counts.

The published count is what transformers builds from the published config.json (on the
meta device, no weights): every tensor a checkpoint holds, the head once more when untied.
"""

import pathlib

import gin
import jax
import numpy as np
import pytest

from linguamix.models import mt5
from linguamix.models.checkpoint_formats import hf_mt5

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "linguamix" / "gin" / "models"
_UMT5 = dict(model_type="umt5", vocab_size=256384, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
# The published config.json fields that set shapes and switches (google/umt5-*, google-t5/t5-base,
# google/t5-v1_1-base).
PUBLISHED = {
    "umt5_small": dict(_UMT5, d_model=512, d_kv=64, d_ff=1024, num_heads=6, num_layers=8),
    "umt5_base": dict(_UMT5, d_model=768, d_kv=64, d_ff=2048, num_heads=12, num_layers=12),
    "umt5_xl": dict(_UMT5, d_model=2048, d_kv=64, d_ff=5120, num_heads=32, num_layers=24),
    "t5_base": dict(model_type="t5", vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_heads=12,
                    num_layers=12, feed_forward_proj="relu"),
    "t5_v1_1_base": dict(model_type="t5", vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_heads=12,
                         num_layers=12, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
_CLASSES = {"umt5": (transformers.UMT5Config, transformers.UMT5ForConditionalGeneration),
            "t5": (transformers.T5Config, transformers.T5ForConditionalGeneration)}


def _parse(name):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([str(GIN_DIR / f"{name}.gin")], ["DROPOUT_RATE = 0.1"])
    return gin.query_parameter("MODEL/macro.value").scoped_configurable_fn()
  finally:
    gin.clear_config()


def _transformers_count(published, tied):
  config_cls, model_cls = _CLASSES[published["model_type"]]
  config = config_cls(**{k: v for k, v in published.items() if k != "model_type"})
  with torch.device("meta"):
    model = model_cls(config)
  aliases = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"} | ({"lm_head.weight"} if tied else set())
  return sum(p.numel() for n, p in model.named_parameters(remove_duplicate=False) if n not in aliases)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_gin_has_the_published_config_and_parameter_count(name):
  published = PUBLISHED[name]
  model = _parse(name)
  # The gin's config is what our importer makes of the published config.json (shapes and
  # switches); the head is tied only when the checkpoint holds no separate lm_head.
  want = hf_mt5.config_from_hf(published)
  got = model.config
  tied = got.tie_embeddings
  assert tied == (published.get("tie_word_embeddings") is not False)
  keep = ("dropout_rate", "dtype", "scan_layers", "remat_policy", "attention", "tie_embeddings")
  assert {k: v for k, v in got.__dict__.items() if k not in keep} == {
      k: v for k, v in want.__dict__.items() if k not in keep}
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(mt5.param_shapes(got)))
  assert count == _transformers_count(published, tied)
  spm = {"umt5": "umt5.256000", "t5": "cc_all.32000.100extra" if name == "t5_v1_1_base" else "cc_all.32000"}
  assert model.vocabulary.sentencepiece_model_file == (
      f"gs://t5-data/vocabs/{spm[published['model_type']]}/sentencepiece.model")


def test_t5_base_count_is_the_published_223m():
  cfg = _parse("t5_base").config
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(mt5.param_shapes(cfg))) == 222_903_552
