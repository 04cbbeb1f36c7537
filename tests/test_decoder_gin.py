"""Decoder model gins: each builds its MODEL with the published parameter count."""

import pathlib

import gin
import jax
import numpy as np
import pytest

from linguamix.models import decoder, lora

GIN_DIR = pathlib.Path(decoder.__file__).parents[1] / "gin" / "models"
PUBLISHED = {  # parameters of the Hugging Face checkpoints
    "llama2_7b": 6_738_415_616, "llama3_8b": 8_030_261_248, "llama3_1_8b": 8_030_261_248,
    "mistral_7b": 7_241_732_096, "qwen2_0_5b": 494_032_768, "qwen2_1_5b": 1_543_714_304,
    "qwen2_7b": 7_615_616_512, "gemma_2b": 2_506_172_416, "bloom_560m": 559_214_592,
    "phi3_mini": 3_821_079_552, "bloom_1b7": 1_722_408_960, "bloom_7b1": 7_069_016_064, "mgpt": 1_417_596_928,
    # Gemma 2 / 3: the "params" KerasHub publishes for its gemma2_2b_en, gemma2_9b_en and gemma3_1b
    # presets (keras_hub/src/models/gemma*/gemma*_presets.py), which are these checkpoints
    "gemma2_2b": 2_614_341_888, "gemma2_9b": 9_241_705_984, "gemma3_1b": 999_885_952,
    # Pythia: total parameters in the EleutherAI/pythia-* model cards' table (non-embedding ones:
    # Biderman et al. 2023, Table 1); Qwen3: keras-hub's qwen3 preset metadata (model cards: 0.6B, 8.2B)
    "pythia_1b": 1_011_781_632, "pythia_6_9b": 6_857_302_016, "pythia_12b": 11_846_072_320,
    "qwen3_0_6b": 596_049_920, "qwen3_8b": 8_190_735_360,
}


# Llama 3's tokenizer has a real token at id 0 (`!`), moved to an appended row (one per
# embedding matrix, untied) so that SeqIO's padding id stays free.
MOVED_ROW = {"llama3_8b": 2 * 4096, "llama3_1_8b": 2 * 4096}


def _model(*files, bindings=()):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        [str(GIN_DIR / f"{f}.gin") for f in files],
        ["DROPOUT_RATE = 0.0", "VOCABULARY = None", *bindings])
    return gin.query_parameter("%MODEL").scoped_configurable_fn()
  finally:
    gin.clear_config()


def _num_params(model):
  shapes = jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 8)}))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_sizes(name):
  model = _model(name)
  assert isinstance(model, decoder.DecoderOnlyModel) and model.config.scan_layers
  assert _num_params(model) == PUBLISHED[name] + MOVED_ROW.get(name, 0)


def test_tiny_gin_with_lora_trains_only_adapters():
  model = _model("decoder_tiny", "lora")
  assert model.config.vocab_size == 1024 and model.config.lora == lora.LoraConfig(
      targets="attention/(query|key|value|out)|mlp/", rank=16, alpha=32.0, dropout=0.05)
  params = jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 8)}))
  mask = model.trainable_mask(params["params"])
  flat = jax.tree_util.tree_leaves_with_path(mask)
  assert any(v for _, v in flat) and not all(v for _, v in flat)
  assert all(("lora" in jax.tree_util.keystr(p)) == v for p, v in flat)
