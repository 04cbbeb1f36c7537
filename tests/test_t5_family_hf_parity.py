"""UMT5, T5 (original and v1.1) and tied-head mT5 against transformers itself (PyTorch, CPU).

Each case is a tiny model built by transformers from a config and written the way a user's
checkpoint is: `save_pretrained` (transformers 5 ties the head and writes no lm_head.weight)
or with a separate lm_head.weight (how published mT5 / T5 v1.1 / UMT5 checkpoints hold it).
"""

import json

import numpy as np
import pytest
import seqio
from safetensors.numpy import load_file, save_file

import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from linguamix.models import mt5
from linguamix.models.checkpoint_formats import hf_mt5, layout
from linguamix.models.hf import architectures
from linguamix.models.encoder_decoder import EncoderDecoderModel

ENC = np.array([[5, 17, 33, 2, 9, 61, 40, 12, 7, 3, 88, 21, 1, 0, 0, 0],
                [44, 2, 19, 95, 7, 7, 30, 11, 64, 8, 29, 50, 13, 77, 6, 1]])
TGT = np.array([[14, 3, 56, 9, 22, 71, 4, 18, 1, 0, 0, 0],
                [8, 90, 2, 35, 61, 17, 42, 5, 73, 12, 66, 1]])
DEC_IN = np.concatenate([np.zeros((2, 1), int), TGT[:, :-1]], axis=1)
WEIGHTS = (TGT > 0).astype(np.float32)
TINY = dict(vocab_size=100, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
            decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
CLASSES = {"umt5": ("UMT5Config", "UMT5ForConditionalGeneration"),
           "t5": ("T5Config", "T5ForConditionalGeneration"),
           "mt5": ("MT5Config", "MT5ForConditionalGeneration")}
# name: (model_type, config flags, separate lm_head written, expected MT5Config switches)
CASES = {
    "umt5_tied": ("umt5", dict(feed_forward_proj="gated-gelu"), False,
                  dict(relpos_per_layer=True, tie_embeddings=True, scale_decoder_outputs=True)),
    # dense_act_fn as published UMT5 configs spell it (it overrides feed_forward_proj's gelu_new).
    "umt5_untied": ("umt5", dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                 dense_act_fn="gelu_pytorch_tanh"), True,
                    dict(relpos_per_layer=True, tie_embeddings=False, scale_decoder_outputs=False)),
    "t5_original": ("t5", dict(feed_forward_proj="relu"), False,
                    dict(mlp_gated=False, activation="relu", tie_embeddings=True, scale_decoder_outputs=True)),
    "t5_v1_1": ("t5", dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False), True,
                dict(mlp_gated=True, tie_embeddings=False, scale_decoder_outputs=False)),
    "mt5_tied": ("mt5", dict(feed_forward_proj="gated-gelu"), False,
                 dict(tie_embeddings=True, scale_decoder_outputs=False)),
}


def _classes(model_type):
  config_cls, model_cls = CLASSES[model_type]
  return getattr(transformers, config_cls), getattr(transformers, model_cls)


def _hf_forward(model):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ENC), attention_mask=torch.tensor(ENC > 0),
                decoder_input_ids=torch.tensor(DEC_IN))
  return out.encoder_last_hidden_state.numpy(), out.logits.numpy()


def _build(name, directory):
  """Writes case `name` to `directory`; returns transformers' model loaded back from it."""
  model_type, flags, separate_head, _ = CASES[name]
  config_cls, model_cls = _classes(model_type)
  torch.manual_seed(0)
  model = model_cls(config_cls(**TINY, **flags)).eval()
  with torch.no_grad():  # the default init leaves relative biases tiny and decoding flat; make all matter
    for p_name, p in model.named_parameters():
      if "relative_attention_bias" in p_name:
        p.normal_(0, 2.0)
      elif "layer_norm" in p_name:
        p.uniform_(0.5, 1.5)
      elif p_name == "shared.weight":  # small next to the layers' outputs: a tied head then
        p.normal_(0, 0.3)  # does not just echo the input token
      else:
        p.normal_(0, p.shape[1] ** -0.5)
  if separate_head:
    directory.mkdir()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    state["lm_head.weight"] = np.random.default_rng(0).normal(size=state["shared.weight"].shape).astype(np.float32)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = [model_cls.__name__]
    model.config.save_pretrained(directory)
  else:
    model.save_pretrained(directory)
    assert "lm_head.weight" not in load_file(str(directory / "model.safetensors"))
  return model_cls.from_pretrained(str(directory)).eval()


def _ours(directory):
  flat, cfg = hf_mt5.load(str(directory))
  cfg = mt5.MT5Config(**{**cfg.__dict__, "dtype": "float32"})
  model = EncoderDecoderModel(cfg, seqio.PassThroughVocabulary(100, eos_id=1))
  return model, layout.unflatten({k: jnp.asarray(v) for k, v in flat.items()})


def _generate(reference):
  """transformers' greedy tokens as our decoding returns them: [B, target length], without the
  start token 0, padding 0 after EOS 1."""
  length = TGT.shape[1]
  with torch.no_grad():
    generated = reference.generate(input_ids=torch.tensor(ENC), attention_mask=torch.tensor(ENC > 0),
                                   max_new_tokens=length, do_sample=False, num_beams=1).numpy()[:, 1:]
  want = np.zeros((2, length), int)
  want[:, :generated.shape[1]] = generated
  return want


def _batch():
  return dict(encoder_input_tokens=jnp.asarray(ENC), decoder_input_tokens=jnp.asarray(DEC_IN),
              decoder_target_tokens=jnp.asarray(TGT), decoder_loss_weights=jnp.asarray(WEIGHTS))


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_scores_greedy_and_export_match_transformers(name, tmp_path):
  model_type, _, _, switches = CASES[name]
  reference = _build(name, tmp_path / "hf")
  ref_encoded, ref_logits = _hf_forward(reference)
  ours, params = _ours(tmp_path / "hf")
  assert {k: getattr(ours.config, k) for k in switches} == switches

  @jax.jit
  def forward(params):
    enc_seg = (ENC > 0).astype(np.int32)
    encoded = ours.module.apply({"params": params}, ENC, enc_seg, method=mt5.Transformer.encode)
    hidden, kernel = ours.module.apply({"params": params}, ENC, enc_seg, DEC_IN, (TGT > 0).astype(np.int32))
    return encoded, mt5.logits(hidden, kernel)

  encoded, logits = jax.tree.map(np.asarray, forward(params))
  valid_enc, valid_dec = ENC > 0, TGT > 0  # padded query rows are undefined in both
  np.testing.assert_allclose(encoded[valid_enc], ref_encoded[valid_enc], atol=1e-4, rtol=0)
  np.testing.assert_allclose(logits[valid_dec], ref_logits[valid_dec], atol=1e-4, rtol=0)
  assert np.abs(ref_logits[valid_dec]).max() > 0.1  # not a trivially small comparison

  # score_batch: transformers' per-example summed log-likelihood of the targets.
  with torch.no_grad():
    out = reference(input_ids=torch.tensor(ENC), attention_mask=torch.tensor(ENC > 0),
                    labels=torch.tensor(np.where(TGT > 0, TGT, -100)))
  logp = torch.log_softmax(out.logits.double(), -1)
  picked = torch.gather(logp, -1, torch.tensor(TGT)[..., None])[..., 0].numpy()
  expected = (picked * WEIGHTS).sum(-1)
  np.testing.assert_allclose(jax.jit(ours.score_batch)(params, _batch()), expected, atol=1e-4, rtol=0)
  np.testing.assert_allclose(-expected.sum() / WEIGHTS.sum(), out.loss.item(), rtol=1e-5)  # same targets

  # Greedy decoding equals transformers' generate.
  np.testing.assert_array_equal(jax.jit(ours.predict_batch)(params, _batch()), _generate(reference))

  # Export: transformers reloads the same model (tied head again without lm_head.weight).
  out_dir = tmp_path / "export"
  hf_mt5.save(str(out_dir), layout.flatten(jax.tree.map(np.asarray, params)), ours.config,
              arch=architectures.get(CLASSES[model_type][1]))
  assert ("lm_head.weight" in load_file(str(out_dir / "model.safetensors"))) != ours.config.tie_embeddings
  assert json.loads((out_dir / "config.json").read_text())["architectures"] == [type(reference).__name__]
  reloaded = type(reference).from_pretrained(str(out_dir)).eval()
  np.testing.assert_allclose(_hf_forward(reloaded)[1], ref_logits, atol=1e-4, rtol=0)


def test_mt5_head_tied_like_transformers(tmp_path):
  """An lm_head.weight equal to the embedding is tied (as transformers ties it); an absent
  shared.weight is taken from the stacks' embed_tokens (as transformers swaps the tie)."""
  reference = _build("mt5_tied", tmp_path / "hf")
  state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
  state["lm_head.weight"] = state["shared.weight"].copy()
  del state["shared.weight"]
  cfg = hf_mt5.config_from_hf(json.loads((tmp_path / "hf" / "config.json").read_text()))
  tied_state, tied_cfg = hf_mt5.tie_head_like_transformers(state, cfg)
  assert tied_cfg.tie_embeddings and "lm_head.weight" not in tied_state
  np.testing.assert_array_equal(tied_state["shared.weight"], state["encoder.embed_tokens.weight"])
  flat = hf_mt5.params_from_hf(tied_state, tied_cfg)
  assert "decoder/logits_dense/kernel" not in flat


def test_umt5_scanned_layers_stack_every_relative_table():
  cfg = mt5.MT5Config(vocab_size=32, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=16, num_encoder_layers=3,
                      num_decoder_layers=2, relative_attention_num_buckets=8, relpos_per_layer=True,
                      tie_embeddings=True, dtype="float32")
  plain = layout.flatten(mt5.param_shapes(cfg))
  assert "encoder/relpos_bias/rel_embedding" not in plain and "decoder/logits_dense/kernel" not in plain
  assert plain["encoder/layers_2/relpos_bias/rel_embedding"].shape == (2, 8)
  scanned = layout.flatten(mt5.param_shapes(mt5.MT5Config(**{**cfg.__dict__, "scan_layers": True})))
  assert scanned["encoder/layers/relpos_bias/rel_embedding"].shape == (2, 3, 8)
  assert scanned["decoder/layers/relpos_bias/rel_embedding"].shape == (2, 2, 8)


def _hf_json(model_type, **flags):
  config_cls, _ = _classes(model_type)
  return config_cls(**{**TINY, **flags}).to_dict()


@pytest.mark.parametrize("model_type, flags, message", [
    ("mt5", dict(feed_forward_proj="gated-silu"),
     r"^config\.json: feed_forward_proj='gated-silu' is not supported: linguamix implements 'relu' and 'gated-gelu'$"),
    ("t5", dict(feed_forward_proj="gelu"), r"^config\.json: feed_forward_proj='gelu' is not supported"),
    ("umt5", dict(feed_forward_proj="gated-relu"), r"^config\.json: feed_forward_proj='gated-relu' is not supported"),
    ("t5", dict(decoder_start_token_id=2), r"^config\.json: decoder_start_token_id=2 is not supported"),
    ("mt5", dict(pad_token_id=3), r"^config\.json: pad_token_id=3 is not supported"),
    ("umt5", dict(eos_token_id=2), r"^config\.json: eos_token_id=2 is not supported"),
    ("t5", dict(is_encoder_decoder=False), r"^config\.json: is_encoder_decoder=False is not supported"),
])
def test_unimplemented_flags_are_refused_by_name(model_type, flags, message):
  hf = _hf_json(model_type, **flags)
  with pytest.raises(ValueError, match=message):
    hf_mt5.config_from_hf(hf)


def test_derived_activation_fields_in_config_json_win_as_in_transformers():
  hf = _hf_json("t5", feed_forward_proj="relu")
  hf["dense_act_fn"] = "gelu_new"  # transformers reads this over feed_forward_proj
  with pytest.raises(ValueError, match=r"^config\.json: dense_act_fn='gelu_new' is not supported"):
    hf_mt5.config_from_hf(hf)
  hf["is_gated_act"] = True
  assert transformers.T5Config(**hf).is_gated_act  # the combination transformers then runs
  assert hf_mt5.config_from_hf(hf).mlp_gated


@pytest.mark.parametrize("switches", [
    dict(relpos_per_layer=True),
    dict(mlp_gated=False, activation="relu", tie_embeddings=True, scale_decoder_outputs=True),
])
def test_parameter_trees_of_umt5_and_original_t5_give_back_their_config(switches):
  """T5X checkpoints carry no config: the layout says per-layer tables, a plain `mlp/wi`, or a
  missing `logits_dense` (T5X's logits_via_embedding, which divides by sqrt(emb_dim))."""
  cfg = mt5.MT5Config(vocab_size=32, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=16, num_encoder_layers=3,
                      num_decoder_layers=2, relative_attention_num_buckets=8, **switches)
  for scanned in (False, True):
    shapes = mt5.param_shapes(mt5.MT5Config(**{**cfg.__dict__, "scan_layers": scanned}))
    flat = {k: np.zeros(v.shape, np.float32) for k, v in layout.flatten(shapes).items()}
    assert layout.infer_config(flat) == cfg


def test_scanned_umt5_gives_transformers_logits_and_decodes(tmp_path):
  reference = _build("umt5_tied", tmp_path / "hf")
  _, ref_logits = _hf_forward(reference)
  ours, params = _ours(tmp_path / "hf")
  cfg = mt5.MT5Config(**{**ours.config.__dict__, "scan_layers": True, "remat_policy": "dots"})
  scanned_model = EncoderDecoderModel(cfg, ours.vocabulary)
  scanned = layout.unflatten(layout.scan(layout.flatten(params)))
  assert scanned["decoder"]["layers"]["relpos_bias"]["rel_embedding"].shape == (4, 2, 8)
  hidden, kernel = jax.jit(scanned_model.module.apply)(
      {"params": scanned}, ENC, (ENC > 0).astype(np.int32), DEC_IN, (TGT > 0).astype(np.int32))
  valid = TGT > 0
  np.testing.assert_allclose(np.asarray(mt5.logits(hidden, kernel))[valid], ref_logits[valid], atol=1e-4, rtol=0)
  np.testing.assert_array_equal(jax.jit(scanned_model.predict_batch)(scanned, _batch()), _generate(reference))


@pytest.mark.parametrize("name", ["t5_original", "umt5_untied"])
def test_convert_import_and_export_hf_round_trip(name, tmp_path):
  """`linguamix convert` through the registry: a tied original T5 and an untied UMT5 come back
  as the same transformers model (scanned in between)."""
  from linguamix import cli

  reference = _build(name, tmp_path / "hf")
  _, ref_logits = _hf_forward(reference)
  assert cli.main(["convert", "import-hf", str(tmp_path / "hf"), str(tmp_path / "orbax"), "--scan_layers"]) == 0
  assert cli.main(["convert", "export-hf", str(tmp_path / "orbax"), str(tmp_path / "back")]) == 0
  reloaded = type(reference).from_pretrained(str(tmp_path / "back")).eval()
  # 1e-4: the export writes gated-gelu (gelu_new), the same formula as gelu_pytorch_tanh.
  np.testing.assert_allclose(_hf_forward(reloaded)[1], ref_logits, atol=1e-4, rtol=0)
