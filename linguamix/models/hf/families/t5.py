"""T5-family encoder-decoders: mT5, T5 (original and v1.1), UMT5. `checkpoints.hf_mt5` holds
their shared tensor table and I/O; a record here says what its family computes."""

from __future__ import annotations

from linguamix.models.hf import architectures

_CONVERTER = "linguamix.models.checkpoint_formats.hf_mt5"
# Decoding starts from id 0 and pads finished rows with 0 (as transformers' generate does
# with these ids).
_REFUSED = {"decoder_start_token_id": 0, "pad_token_id": 0}


def _family(*, relpos_per_layer: bool, reads_output_scale: bool, default_feed_forward_proj: str):
  """(config_from_hf, config_to_hf) of one family; hf_mt5 (it imports JAX) only when converting."""
  family = dict(relpos_per_layer=relpos_per_layer, reads_output_scale=reads_output_scale)

  def from_hf(hf):
    from linguamix.models.checkpoint_formats import hf_mt5
    return hf_mt5.fields_from_hf(hf, **family, default_feed_forward_proj=default_feed_forward_proj)

  def to_hf(cfg):
    from linguamix.models.checkpoint_formats import hf_mt5
    return hf_mt5.fields_to_hf(cfg, **family)

  return from_hf, to_hf


# Registered in this order: export picks the first family that computes a config.
MT5 = architectures.register(architectures.EncoderDecoderArchitecture(
    "MT5ForConditionalGeneration", "mt5", "MT5Config",
    *_family(relpos_per_layer=False, reads_output_scale=False, default_feed_forward_proj="gated-gelu"),
    converter=_CONVERTER, refused=_REFUSED,
    # transformers 5 forces it true and MT5 never rescales; the tensors decide the tying.
    inert=frozenset({"tie_word_embeddings"})))

T5 = architectures.register(architectures.EncoderDecoderArchitecture(
    "T5ForConditionalGeneration", "t5", "T5Config",
    *_family(relpos_per_layer=False, reads_output_scale=True, default_feed_forward_proj="relu"),
    converter=_CONVERTER, refused=_REFUSED))

# UMT5: every layer's self-attention has its own relative-position table.
UMT5 = architectures.register(architectures.EncoderDecoderArchitecture(
    "UMT5ForConditionalGeneration", "umt5", "UMT5Config",
    *_family(relpos_per_layer=True, reads_output_scale=True, default_feed_forward_proj="gated-gelu"),
    converter=_CONVERTER, refused=_REFUSED))
