"""mT5 against the reference `transformers.MT5ForConditionalGeneration` (PyTorch, CPU)."""

import os
import shutil

import numpy as np
import pytest
import seqio
from safetensors.numpy import save_file

import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from linguamix.models import mt5
from linguamix.models.checkpoint_formats import hf_mt5, layout
from linguamix.models.hf import tensors
from linguamix.models.encoder_decoder import EncoderDecoderModel

# Long enough inputs that distances reach the log-spaced buckets (8 buckets, max 20).
ENC = np.array([[5, 17, 33, 2, 9, 61, 40, 12, 7, 3, 88, 21, 1, 0, 0, 0],
                [44, 2, 19, 95, 7, 7, 30, 11, 64, 8, 29, 50, 13, 77, 6, 1]])
TGT = np.array([[14, 3, 56, 9, 22, 71, 4, 18, 1, 0, 0, 0],
                [8, 90, 2, 35, 61, 17, 42, 5, 73, 12, 66, 1]])
DEC_IN = np.concatenate([np.zeros((2, 1), int), TGT[:, :-1]], axis=1)
WEIGHTS = (TGT > 0).astype(np.float32)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  torch.manual_seed(0)
  config = transformers.MT5Config(
      vocab_size=100, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
      relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0)
  model = transformers.MT5ForConditionalGeneration(config).eval()
  with torch.no_grad():  # the default init leaves the relative bias tiny; make it matter
    for stack in (model.encoder, model.decoder):
      stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0, 2.0)
  # transformers 5 ties lm_head to the embedding at construction; real mT5 checkpoints hold
  # a separate lm_head.weight, so write one the way they are stored and load it back.
  state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  state["lm_head.weight"] = np.random.default_rng(0).normal(size=state["shared.weight"].shape).astype(np.float32)
  directory = tmp_path_factory.mktemp("hf_mt5")
  save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
  config.architectures = ["MT5ForConditionalGeneration"]  # as save_pretrained of a model writes
  config.save_pretrained(directory)
  model = transformers.MT5ForConditionalGeneration.from_pretrained(str(directory)).eval()
  assert not np.allclose(model.lm_head.weight.detach().numpy(), model.shared.weight.detach().numpy())
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ENC), attention_mask=torch.tensor(ENC > 0),
                decoder_input_ids=torch.tensor(DEC_IN))
  return dict(model=model, dir=str(directory), encoded=out.encoder_last_hidden_state.numpy(),
              logits=out.logits.numpy())


def _ours(directory):
  flat, cfg = hf_mt5.load(directory)
  cfg = mt5.MT5Config(**{**cfg.__dict__, "dtype": "float32"})
  model = EncoderDecoderModel(cfg, seqio.PassThroughVocabulary(100, eos_id=1))
  return model, layout.unflatten({k: jnp.asarray(v) for k, v in flat.items()})


def _batch():
  return dict(encoder_input_tokens=jnp.asarray(ENC), decoder_input_tokens=jnp.asarray(DEC_IN),
              decoder_target_tokens=jnp.asarray(TGT), decoder_loss_weights=jnp.asarray(WEIGHTS))


def _forward(model, params):
  @jax.jit
  def run(params):
    enc_seg = (ENC > 0).astype(np.int32)
    encoded = model.module.apply({"params": params}, ENC, enc_seg, method=mt5.Transformer.encode)
    hidden, kernel = model.module.apply({"params": params}, ENC, enc_seg, DEC_IN, (TGT > 0).astype(np.int32))
    return encoded, mt5.logits(hidden, kernel)
  return jax.tree.map(np.asarray, run(params))


def test_encoder_outputs_and_decoder_logits_match_transformers(reference):
  model, params = _ours(reference["dir"])
  encoded, logits = _forward(model, params)
  valid_enc, valid_dec = ENC > 0, TGT > 0  # padded query rows are undefined in both
  np.testing.assert_allclose(encoded[valid_enc], reference["encoded"][valid_enc], atol=1e-4, rtol=0)
  np.testing.assert_allclose(logits[valid_dec], reference["logits"][valid_dec], atol=1e-4, rtol=0)
  assert np.abs(reference["logits"][valid_dec]).max() > 0.1  # not a trivially small comparison


def test_relative_position_one_hot_built_in_the_program_matches_transformers(reference, monkeypatch):
  # Long rows' one-hots are compared in the program rather than stored as a constant (the
  # TPU compiler's passes copy constants); both ways give the reference's numbers.
  monkeypatch.setattr(mt5, "MAX_ONE_HOT_CONSTANT_BYTES", 0)
  model, params = _ours(reference["dir"])
  encoded, logits = _forward(model, params)
  valid_enc, valid_dec = ENC > 0, TGT > 0
  np.testing.assert_allclose(encoded[valid_enc], reference["encoded"][valid_enc], atol=1e-4, rtol=0)
  np.testing.assert_allclose(logits[valid_dec], reference["logits"][valid_dec], atol=1e-4, rtol=0)


def _reference_loss(reference):
  """Weighted mean cross-entropy plus T5X's z-loss (1e-4 * logsumexp^2) from the reference logits."""
  logits = reference["logits"].astype(np.float64)
  lse = np.log(np.exp(logits).sum(-1))
  nll = lse - np.take_along_axis(logits, TGT[..., None], -1)[..., 0]
  return ((nll + 1e-4 * np.square(lse)) * WEIGHTS).sum() / WEIGHTS.sum()


def test_score_batch_is_summed_reference_log_likelihood(reference):
  model, params = _ours(reference["dir"])
  logp = torch.log_softmax(torch.tensor(reference["logits"], dtype=torch.float64), -1).numpy()
  expected = (np.take_along_axis(logp, TGT[..., None], -1)[..., 0] * WEIGHTS).sum(-1)
  np.testing.assert_allclose(jax.jit(model.score_batch)(params, _batch()), expected, atol=1e-4, rtol=0)
  loss, metrics = jax.jit(model.loss_fn)(params, _batch(), None)
  np.testing.assert_allclose(loss, _reference_loss(reference), rtol=1e-5)
  assert metrics["num_target_tokens"] == WEIGHTS.sum()


def test_export_to_safetensors_reloads_in_transformers_with_same_logits(reference, tmp_path):
  model, params = _ours(reference["dir"])
  hf_mt5.save(str(tmp_path), layout.flatten(jax.tree.map(np.asarray, params)), model.config)
  reloaded = transformers.MT5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  with torch.no_grad():
    logits = reloaded(input_ids=torch.tensor(ENC), attention_mask=torch.tensor(ENC > 0),
                      decoder_input_ids=torch.tensor(DEC_IN)).logits.numpy()
  np.testing.assert_allclose(logits, reference["logits"], atol=1e-5, rtol=0)


def test_scanned_layers_and_remat_give_the_same_logits(reference):
  model, params = _ours(reference["dir"])
  cfg = mt5.MT5Config(**{**model.config.__dict__, "scan_layers": True, "remat_policy": "dots"})
  scanned_model = EncoderDecoderModel(cfg, model.vocabulary)
  scanned = layout.unflatten(layout.scan(layout.flatten(params)))
  want = jax.tree.map(lambda s: s.shape, mt5.param_shapes(cfg))
  assert jax.tree.map(np.shape, scanned) == want
  _, logits = _forward(scanned_model, scanned)
  valid = TGT > 0
  np.testing.assert_allclose(logits[valid], reference["logits"][valid], atol=1e-4, rtol=0)
  grads = jax.jit(jax.grad(lambda p: scanned_model.loss_fn(p, _batch(), None)[0]))(scanned)
  assert np.isfinite(np.asarray(grads["encoder"]["layers"]["mlp"]["wi_0"]["kernel"])).all()


def test_bad_hf_checkpoints_name_the_tensor(reference, tmp_path):
  state = tensors.read_safetensors(reference["dir"])
  cfg = hf_mt5.load(reference["dir"])[1]
  bad = dict(state)
  del bad["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
  with pytest.raises(layout.CheckpointMismatchError, match=r"decoder\.block\.1\.layer\.2\.DenseReluDense\.wo"):
    hf_mt5.params_from_hf(bad, cfg)
  bad = dict(state, **{"encoder.block.0.layer.1.DenseReluDense.wi_0.weight": np.zeros((40, 32), np.float32)})
  with pytest.raises(layout.CheckpointMismatchError,
                     match=r"encoder/layers_0/mlp/wi_0/kernel: checkpoint \(32, 40\), model \(32, 48\)"):
    hf_mt5.params_from_hf(bad, cfg)
  small_vocab = mt5.MT5Config(**{**cfg.__dict__, "vocab_size": 64})
  with pytest.raises(layout.CheckpointMismatchError, match=r"vocabulary size mismatch.*100 rows.*vocab_size=64"):
    hf_mt5.params_from_hf(state, small_vocab)


def test_bfloat16_compute_keeps_float32_params_and_stays_close(reference):
  model, params = _ours(reference["dir"])
  cfg = mt5.MT5Config(**{**model.config.__dict__, "dtype": "bfloat16"})
  bf16 = EncoderDecoderModel(cfg, model.vocabulary)
  loss16, grads = jax.jit(jax.value_and_grad(lambda p: bf16.loss_fn(p, _batch(), None)[0]))(params)
  np.testing.assert_allclose(loss16, _reference_loss(reference), rtol=2e-2)
  assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_sharded_hf_checkpoint_and_convert_import_hf(reference, tmp_path):
  import json
  import orbax.checkpoint as ocp
  from linguamix import cli

  state = tensors.read_safetensors(reference["dir"])
  names = sorted(state)
  shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
  sharded = tmp_path / "sharded"
  sharded.mkdir()
  shutil.copy(os.path.join(reference["dir"], "config.json"), sharded / "config.json")
  for shard, keys in shards.items():
    save_file({k: state[k] for k in keys}, str(sharded / shard))
  (sharded / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
  want, _ = hf_mt5.load(reference["dir"])

  assert cli.main(["convert", "import-hf", str(sharded), str(tmp_path / "orbax"), "--scan_layers"]) == 0
  restored = layout.flatten(ocp.PyTreeCheckpointer().restore(str(tmp_path / "orbax")))
  assert "encoder/layers/attention/query/kernel" in restored  # stacked for scan_layers=True
  for k, v in layout.unscan(restored).items():
    np.testing.assert_array_equal(v, want[k])

  os.remove(sharded / "model-00002-of-00002.safetensors")
  with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
    hf_mt5.load(str(sharded))
