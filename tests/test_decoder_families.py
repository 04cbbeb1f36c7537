"""Decoder family presets: each is what transformers builds for the family's published
config.json, and each published model gin is its family's preset at the gin's size."""

import dataclasses
import pathlib

import gin
import pytest
import transformers

from linguamix.models import decoder, decoder_config, decoder_families
from linguamix.models.hf import architectures, decoder_io

GIN_DIR = pathlib.Path(decoder.__file__).parents[1] / "gin" / "models"
TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=48, max_position_embeddings=128, head_dim=8)
# The keys of the published checkpoints' config.json that differ from the defaults of
# transformers' config class (Llama-2-7b-hf, Meta-Llama-3-8B, Llama-3.1-8B,
# Mistral-7B-v0.1, Qwen2-7B, Qwen3-8B, gemma-3-4b-pt's text config,
# Phi-3-mini-4k-instruct); the other families' checkpoints keep transformers' defaults on
# every key a trait reads.
PUBLISHED = {
    "llama": dict(rms_norm_eps=1e-5),
    "llama3": dict(rms_norm_eps=1e-5, rope_theta=500000.0),
    "llama3_1": dict(rms_norm_eps=1e-5, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192)),
    "mistral": dict(rms_norm_eps=1e-5),
    "qwen2": dict(rope_theta=1e6),
    "qwen3": dict(rope_theta=1e6),
    "gemma3": dict(sliding_window=1024),
    "phi3": dict(rms_norm_eps=1e-5, sliding_window=2047),
}
# model gin -> (family, the fields its size sets over the family's traits)
GINS = {
    "llama2_7b": ("llama", {}), "llama3_8b": ("llama3", {}), "llama3_1_8b": ("llama3_1", {}),
    "mistral_7b": ("mistral", {}), "mixtral_8x7b": ("mixtral", {}),
    "qwen2_0_5b": ("qwen2", {"tie_embeddings": True}), "qwen2_1_5b": ("qwen2", {"tie_embeddings": True}),
    "qwen2_7b": ("qwen2", {}), "qwen3_0_6b": ("qwen3", {"tie_embeddings": True}), "qwen3_8b": ("qwen3", {}),
    "gemma_2b": ("gemma", {}), "gemma2_2b": ("gemma2", {}), "gemma2_9b": ("gemma2", {}),
    "gemma3_1b": ("gemma3", {"local_window": 512}), "phi3_mini": ("phi3", {}),
    "bloom_560m": ("bloom", {}), "bloom_1b7": ("bloom", {}), "bloom_7b1": ("bloom", {}), "mgpt": ("gpt2", {}),
    "pythia_1b": ("gpt_neox", {}), "pythia_6_9b": ("gpt_neox", {}), "pythia_12b": ("gpt_neox", {}),
}


# the HF decoder records by model_type
_DECODERS = {a.model_type: a for a in map(architectures.get, architectures.names()) if a.kind == "decoder"}


def _fields(cfg) -> dict:
  """Every field, with `layer_types` as the per-layer kinds it implies (a pattern repeats)."""
  out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
  out["layer_types"] = None if cfg.local_layers is None else tuple(cfg.local_layers)
  return out


def _size_and_run(cfg) -> dict:
  return {name: getattr(cfg, name) for name in decoder_config.SHAPE_FIELDS + decoder_config.RUN_FIELDS}


@pytest.mark.parametrize("family", sorted(decoder_families.FAMILIES))
def test_preset_is_what_transformers_builds(family):
  arch = _DECODERS[decoder_families.FAMILIES[family].hf_model_type]
  hf = getattr(transformers, arch.config_class)(**TINY, **PUBLISHED.get(family, {})).to_dict()
  hf["architectures"] = [arch.name]
  _, imported = decoder_io.config_from_hf(hf)
  preset = getattr(decoder.DecoderConfig, family)(**_size_and_run(imported))
  assert _fields(preset) == _fields(imported)


def test_every_decoder_architecture_has_a_family():
  assert {fam.hf_model_type for fam in decoder_families.FAMILIES.values()} == set(_DECODERS)


def _gin_config(name):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([str(GIN_DIR / f"{name}.gin")], ["DROPOUT_RATE = 0.0", "VOCABULARY = None"])
    return gin.query_parameter("%MODEL").scoped_configurable_fn().config
  finally:
    gin.clear_config()


def test_every_decoder_gin_names_its_family():
  gins = {p.stem for p in GIN_DIR.glob("*.gin") if "decoder.DecoderConfig:" in p.read_text()}
  assert gins - {"decoder_tiny"} == set(GINS)


@pytest.mark.parametrize("name", sorted(GINS))
def test_gin_is_its_family_preset(name):
  family, size_fields = GINS[name]
  cfg = _gin_config(name)
  assert getattr(decoder.DecoderConfig, family)(**_size_and_run(cfg), **size_fields) == cfg


def test_preset_fields_override_traits_and_unknown_family_is_refused():
  cfg = decoder.DecoderConfig.gemma2(num_layers=4, local_window=128)
  assert cfg.local_window == 128 and cfg.post_norms and list(cfg.local_layers) == [True, False, True, False]
  with pytest.raises(ValueError, match="unknown decoder family 'gemma9'.*'gemma2'"):
    decoder.DecoderConfig.preset("gemma9")


def test_a_trait_must_be_an_architecture_field(monkeypatch):
  bad = decoder_families.Family("bad", "Bad", "bad", "sets a run field", {"dtype": "bfloat16"})
  monkeypatch.setattr(decoder_families, "FAMILIES", {"bad": bad})
  with pytest.raises(ValueError, match=r"decoder family 'bad': \['dtype'\] are not architecture fields"):
    decoder_config._install_presets()
  assert not hasattr(decoder.DecoderConfig, "bad")


def test_docs_adding_quotes_the_table():
  """docs/adding.md quotes Gemma 2's entry as the example of a family: it must be the code's."""
  page = (pathlib.Path(__file__).parents[1] / "docs" / "adding.md").read_text(encoding="utf-8")
  section = page[page.index("## A model family"):]
  quoted = section[section.index("```python\n") + len("```python\n"):section.index("```\n", section.index("```python"))]
  assert 'Family("gemma2"' in quoted and quoted in pathlib.Path(decoder_families.__file__).read_text(encoding="utf-8")
