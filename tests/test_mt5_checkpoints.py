"""Legacy T5X checkpoints written from the format's description, `linguamix convert`, errors."""

import os
import shutil

import jax
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization

from linguamix import cli
from linguamix.models import mt5
from linguamix.models.checkpoint_formats import layout, t5x_legacy

CFG = mt5.MT5Config(vocab_size=96, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=24,
                    num_encoder_layers=2, num_decoder_layers=2, relative_attention_num_buckets=8,
                    dtype="float32")


def _random_params(cfg=CFG, seed=0):
  rng = np.random.default_rng(seed)
  shapes = layout.flatten(mt5.param_shapes(cfg))
  return {k: rng.normal(size=s.shape).astype(np.float32) for k, s in shapes.items()}


def write_t5x_checkpoint(directory, flat, inline=("encoder/encoder_norm/scale",)):
  """A VERSION 3 legacy T5X checkpoint, as T5X's legacy checkpointer writes it (t5x/checkpoints.py): msgpack
  `checkpoint` with {'version', 'optimizer': {'target', 'state'}}, arrays as gzip zarr
  TensorStore arrays in dotted-path dirs, their spec (dummy GCS bucket) in the msgpack."""
  os.makedirs(directory)
  target = {}
  for path, value in flat.items():
    dotted = "target." + path.replace("/", ".")
    node = target
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    if path in inline:  # small arrays may sit in the msgpack itself
      node[leaf] = value
      continue
    spec = {"driver": "zarr", "dtype": "float32",
            "kvstore": {"driver": "gcs", "bucket": "t5x-dummy-bucket", "path": dotted},
            "metadata": {"chunks": list(value.shape), "compressor": {"id": "gzip", "level": 1},
                         "shape": list(value.shape)}}
    local = dict(spec, kvstore={"driver": "file", "path": os.path.join(directory, dotted)})
    store = ts.open(local, create=True, dtype=ts.float32).result()
    store.write(value).result()
    node[leaf] = spec
  state = {"version": 3, "optimizer": {"target": target, "state": {"step": np.int32(1000), "param_states": {}}}}
  with open(os.path.join(directory, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(state))


def test_legacy_t5x_checkpoint_loads_by_name_unscanned_and_scanned(tmp_path):
  flat = _random_params()
  ckpt = str(tmp_path / "checkpoint_1000")
  write_t5x_checkpoint(ckpt, flat)
  assert os.path.isfile(os.path.join(ckpt, "target.encoder.layers_0.attention.query.kernel", ".zarray"))
  loaded, cfg = t5x_legacy.load(ckpt)
  assert (cfg.vocab_size, cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, cfg.num_encoder_layers,
          cfg.relative_attention_num_buckets) == (96, 16, 2, 8, 24, 2, 8)
  assert set(loaded) == set(flat)
  for k in flat:
    np.testing.assert_array_equal(loaded[k], flat[k])

  scanned_cfg = mt5.MT5Config(**{**CFG.__dict__, "scan_layers": True})
  scanned, _ = t5x_legacy.load(ckpt, scanned_cfg)
  kernel = scanned["decoder/layers/encoder_decoder_attention/query/kernel"]
  assert kernel.shape == (16, 2, 16)  # [embed, layers, heads*kv]
  np.testing.assert_array_equal(kernel[:, 1], flat["decoder/layers_1/encoder_decoder_attention/query/kernel"])

  # A scanned checkpoint on disk loads into the unscanned model too.
  scanned_ckpt = str(tmp_path / "scanned")
  write_t5x_checkpoint(scanned_ckpt, scanned, inline=())
  unscanned, _ = t5x_legacy.load(scanned_ckpt, CFG)
  for k in flat:
    np.testing.assert_array_equal(unscanned[k], flat[k])


def test_convert_t5x_to_orbax_restores_in_trainer_and_exports_to_transformers(tmp_path, capsys):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from linguamix.train import checkpoints as train_ckpt

  flat = _random_params()
  ckpt = str(tmp_path / "checkpoint_1000")
  write_t5x_checkpoint(ckpt, flat)
  orbax_dir = str(tmp_path / "orbax")
  assert cli.main(["convert", "import-t5x", ckpt, orbax_dir]) == 0
  assert "d_model 16, vocab 96" in capsys.readouterr().out

  abstract = mt5.param_shapes(CFG)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = train_ckpt.load_params(orbax_dir, abstract, jax.tree.map(lambda _: sharding, abstract))
  for k, v in layout.flatten(restored).items():
    np.testing.assert_array_equal(np.asarray(v), flat[k])

  hf_dir = str(tmp_path / "hf")
  assert cli.main(["convert", "export-hf", orbax_dir, hf_dir]) == 0
  model = transformers.MT5ForConditionalGeneration.from_pretrained(hf_dir).eval()
  enc, dec = np.array([[5, 9, 33, 1]]), np.array([[0, 7, 12, 40]])
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(enc), decoder_input_ids=torch.tensor(dec)).logits.numpy()
  hidden, kernel = mt5.Transformer(CFG).apply({"params": restored}, enc, np.ones_like(enc), dec, np.ones_like(dec))
  np.testing.assert_allclose(mt5.logits(hidden, kernel), ref, atol=1e-4, rtol=0)


def test_bad_t5x_checkpoints_fail_naming_the_parameter_and_write_nothing(tmp_path, capsys):
  flat = _random_params()
  ckpt = str(tmp_path / "checkpoint_1000")
  write_t5x_checkpoint(ckpt, flat)

  wrong_mlp = mt5.MT5Config(**{**CFG.__dict__, "mlp_dim": 32})
  with pytest.raises(layout.CheckpointMismatchError,
                     match=r"shape mismatch for decoder/layers_0/mlp/wi_0/kernel: checkpoint \(16, 24\), model \(16, 32\)"):
    t5x_legacy.load(ckpt, wrong_mlp)
  wrong_vocab = mt5.MT5Config(**{**CFG.__dict__, "vocab_size": 128})
  with pytest.raises(layout.CheckpointMismatchError,
                     match=r"vocabulary size mismatch: token_embedder/embedding has 96 rows.*vocab_size=128"):
    t5x_legacy.load(ckpt, wrong_vocab)
  three_layers = mt5.MT5Config(**{**CFG.__dict__, "num_encoder_layers": 3})
  with pytest.raises(layout.CheckpointMismatchError, match=r"missing parameter encoder/layers_2/mlp/wo/kernel"):
    t5x_legacy.load(ckpt, three_layers)

  shutil.rmtree(os.path.join(ckpt, "target.decoder.layers_1.mlp.wo.kernel"))
  out = str(tmp_path / "orbax")
  assert cli.main(["convert", "import-t5x", ckpt, out]) == 2
  err = capsys.readouterr().err
  assert "linguamix convert: error: " in err and "cannot read array decoder/layers_1/mlp/wo/kernel" in err
  assert "Traceback" not in err
  assert not os.path.exists(out)  # nothing half-written

  with open(os.path.join(ckpt, "checkpoint"), "wb") as f:
    f.write(b"\x93not msgpack at all")
  with pytest.raises(layout.CheckpointMismatchError, match=r"checkpoint_1000/checkpoint"):
    t5x_legacy.load(ckpt)
  with pytest.raises(FileNotFoundError, match=r"legacy T5X"):
    t5x_legacy.load(str(tmp_path / "nowhere"))


def test_array_locations_resolve_under_the_real_checkpoint_dir_local_or_gcs():
  # The msgpack's kvstore path is relative to the checkpoint; its GCS bucket is a dummy.
  assert t5x_legacy._kvstore("gs://t5-data/pretrained_models/t5x/mt5_small/checkpoint_1000000",
                             "target.encoder.encoder_norm.scale") == {
      "driver": "gcs", "bucket": "t5-data",
      "path": "pretrained_models/t5x/mt5_small/checkpoint_1000000/target.encoder.encoder_norm.scale"}
  assert t5x_legacy._kvstore("/ckpt/checkpoint_5", "target.x") == {"driver": "file", "path": "/ckpt/checkpoint_5/target.x"}
  # T5X's scalable layout names a scanned stack after itself; it unscans like ours.
  flat = {"encoder/encoder/mlp/wo/kernel": np.arange(12.0).reshape(3, 2, 2), "encoder/encoder_norm/scale": np.ones(3)}
  out = layout.unscan(flat)
  assert sorted(out) == ["encoder/encoder_norm/scale", "encoder/layers_0/mlp/wo/kernel", "encoder/layers_1/mlp/wo/kernel"]
  np.testing.assert_array_equal(out["encoder/layers_1/mlp/wo/kernel"], flat["encoder/encoder/mlp/wo/kernel"][:, 1])
