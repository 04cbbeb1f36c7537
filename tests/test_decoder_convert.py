"""`linguamix convert` for decoder families: sharded import, export, and bad input."""

import json
import pathlib

import numpy as np
import pytest
import seqio
import torch
import transformers

from linguamix import cli
from linguamix.models import decoder
from linguamix.models.hf import architectures, decoder_io

CONFIG = transformers.LlamaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(CONFIG).eval()
  directory = tmp_path_factory.mktemp("llama_sharded")
  model.save_pretrained(directory, max_shard_size="20KB")
  assert (directory / "model.safetensors.index.json").exists()
  return model, directory


def _logits(model, ids):
  with torch.no_grad():
    return model(torch.as_tensor(ids)).logits.numpy()


def test_cli_imports_sharded_checkpoint_and_exports_it_back(sharded, tmp_path, capsys):
  model, hf_dir = sharded
  orbax_dir, out_dir = tmp_path / "orbax", tmp_path / "hf"
  assert cli.main(["convert", "import-hf", str(hf_dir), str(orbax_dir), "--scan_layers"]) == 0
  assert cli.main(["convert", "export-hf", str(orbax_dir), str(out_dir)]) == 0
  assert "exported LlamaForCausalLM" in capsys.readouterr().out
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out_dir).eval()
  ids = np.random.default_rng(0).integers(0, 96, size=(2, 9))
  np.testing.assert_allclose(_logits(reloaded, ids), _logits(model, ids), atol=1e-6)


def test_missing_shard_is_named(sharded, tmp_path):
  _, hf_dir = sharded
  broken = tmp_path / "broken"
  broken.mkdir()
  shards = sorted(hf_dir.glob("model-*.safetensors"))
  for f in [hf_dir / "config.json", hf_dir / "model.safetensors.index.json", *shards[1:]]:
    (broken / f.name).write_bytes(f.read_bytes())
  with pytest.raises(FileNotFoundError, match=shards[0].name):
    decoder_io.load_hf(broken)


def _copy_with_config(hf_dir: pathlib.Path, dest: pathlib.Path, **changes) -> pathlib.Path:
  dest.mkdir()
  for f in hf_dir.iterdir():
    (dest / f.name).write_bytes(f.read_bytes())
  config = json.loads((hf_dir / "config.json").read_text())
  (dest / "config.json").write_text(json.dumps({**config, **changes}))
  return dest


def test_unsupported_architecture_is_named(sharded, tmp_path, capsys):
  bad = _copy_with_config(sharded[1], tmp_path / "bad", architectures=["FalconForCausalLM"])
  with pytest.raises(ValueError, match=r"config\.json: architectures=\['FalconForCausalLM'\] is not supported"):
    decoder_io.load_hf(bad)
  assert cli.main(["convert", "import-hf", str(bad), str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("linguamix convert: error: ") and "FalconForCausalLM" in err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "out").exists()


def test_mismatched_shape_names_tensor_and_both_shapes(sharded, tmp_path):
  bad = _copy_with_config(sharded[1], tmp_path / "bad", intermediate_size=48)
  with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight has shape \(64, 32\) "
                                       r"but the config implies \(48, 32\)"):
    decoder_io.load_hf(bad)


def test_tokenizer_larger_than_embedding_is_refused():
  cfg = decoder.DecoderConfig(vocab_size=96, d_model=32, num_layers=1, num_heads=4, mlp_dim=64)
  with pytest.raises(ValueError, match="vocabulary has 120 ids but .* vocab_size=96"):
    decoder.DecoderOnlyModel(cfg, seqio.PassThroughVocabulary(120))


def test_export_refuses_a_config_the_params_do_not_fit(sharded, tmp_path):
  """Reshapes would accept 2 heads x 16 for a 4-head x 8 model: the export must not."""
  _, _, params = decoder_io.load_hf(sharded[1])
  wrong = {**CONFIG.to_dict(), "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
  with pytest.raises(ValueError, match=r"layers_0/attention/query/kernel: params \(32, 4, 8\), "
                                       r"config implies \(32, 2, 16\)"):
    architectures.lookup(wrong).export_hf(params, wrong, str(tmp_path / "out"))
  assert not (tmp_path / "out" / "model.safetensors").exists()
