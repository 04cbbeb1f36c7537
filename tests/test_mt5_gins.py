"""Model gins: the published mT5 sizes (T5X's mt5 gins), vocabularies, and the tiny default model."""

import pathlib

import flax.linen as nn
import gin
import jax
import numpy as np
import pytest
import seqio

from linguamix.models import mt5
from linguamix.models.encoder_decoder import EncoderDecoderModel

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "linguamix" / "gin" / "models"
# T5X's t5x/examples/t5/mt5/*.gin: emb_dim, num_heads, enc/dec layers, head_dim, mlp_dim
SIZES = {"small": (512, 6, 8, 64, 1024), "base": (768, 12, 12, 64, 2048), "large": (1024, 16, 24, 64, 2816),
         "xl": (2048, 32, 24, 64, 5120), "xxl": (4096, 64, 24, 64, 10240)}


@pytest.fixture
def parse():
  def _parse(name, dropout=0.1):
    gin.parse_config_files_and_bindings([str(GIN_DIR / f"{name}.gin")], [f"DROPOUT_RATE = {dropout}"])
    return gin.query_parameter("MODEL/macro.value").scoped_configurable_fn()
  yield _parse
  gin.clear_config()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_real_size_gins_have_the_published_shapes(parse, size):
  model = parse(f"mt5_{size}")
  cfg = model.config
  d, h, layers, kv, f = SIZES[size]
  assert (cfg.emb_dim, cfg.num_heads, cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.head_dim, cfg.mlp_dim) == (
      d, h, layers, layers, kv, f)
  assert (cfg.vocab_size, cfg.dtype, cfg.dropout_rate, model.z_loss) == (250112, "bfloat16", 0.1, 1e-4)
  assert model.vocabulary.sentencepiece_model_file == "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"
  from linguamix.t5x_tasks import vocab
  assert vocab.task_vocabulary() is not None  # the tasks follow the model gin's VOCABULARY
  assert vocab.task_vocabulary().sentencepiece_model_file == model.vocabulary.sentencepiece_model_file


def test_mt5_small_has_the_published_parameter_count(parse):
  cfg = parse("mt5_small").config
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(mt5.param_shapes(cfg)))
  assert count == 300_176_768  # google/mt5-small


@pytest.mark.slow
def test_tiny_gin_uses_the_bundled_vocabulary_and_trains(parse):
  model = parse("mt5_tiny", dropout=0.0)
  assert isinstance(model, EncoderDecoderModel)
  assert model.vocabulary.vocab_size <= model.config.vocab_size
  assert model.vocabulary.sentencepiece_model_file.endswith("t5x_tasks/sample/spm.model")
  import optax
  rng = np.random.default_rng(0)  # random params without an init compile (the trainer tests init)
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.3).astype(np.float32),
                        mt5.param_shapes(model.config))
  ids = model.vocabulary.encode("Hallo Welt, wie geht es dir?")[:7] + [1]
  tgt = model.vocabulary.encode("Hello world")[:5] + [1]
  batch = dict(encoder_input_tokens=np.array([ids, ids]), decoder_target_tokens=np.array([tgt, tgt]),
               decoder_input_tokens=np.array([[0] + tgt[:-1]] * 2), decoder_loss_weights=np.ones((2, 6)))
  opt = optax.adam(1e-2)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(12):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]
  predicted = np.asarray(jax.jit(model.predict_batch)(params, batch))[0].tolist()
  assert predicted == tgt  # memorised: decoding reproduces the target, EOS included


def test_params_carry_logical_axis_names_for_the_mesh_rules():
  cfg = mt5.MT5Config(vocab_size=32, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=16, num_encoder_layers=2,
                      num_decoder_layers=1, dtype="float32")
  names = lambda cfg: jax.tree.map(  # noqa: E731
      lambda x: x.names, jax.eval_shape(lambda: mt5.Transformer(cfg).init(
          jax.random.key(0), *[np.ones((1, 2), np.int32)] * 4))["params"],
      is_leaf=lambda x: isinstance(x, nn.Partitioned))
  plain = names(cfg)
  assert plain["token_embedder"]["embedding"] == ("vocab", "embed")
  assert plain["encoder"]["layers_0"]["attention"]["query"]["kernel"] == ("embed", "joined_kv")
  assert plain["decoder"]["layers_0"]["encoder_decoder_attention"]["out"]["kernel"] == ("joined_kv", "embed")
  assert plain["decoder"]["layers_0"]["mlp"]["wi_1"]["kernel"] == ("embed", "mlp")
  assert plain["encoder"]["relpos_bias"]["rel_embedding"] == ("heads", "relpos_buckets")
  assert plain["decoder"]["logits_dense"]["kernel"] == ("embed", "vocab")
  scanned = names(mt5.MT5Config(**{**cfg.__dict__, "scan_layers": True}))
  assert scanned["encoder"]["layers"]["mlp"]["wo"]["kernel"] == ("mlp", "layers", "embed")
