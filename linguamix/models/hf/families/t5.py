"""mT5 / T5 v1.1 encoder-decoders; `checkpoints.hf_mt5` holds their tensor table and I/O."""

from __future__ import annotations

from linguamix.models.hf import registry


def _fields(hf):
  from linguamix.models.checkpoints import hf_mt5  # JAX-free, but only needed when converting
  return hf_mt5.config_from_hf(hf).__dict__


MT5 = registry.register(registry.EncoderDecoderArchitecture(
    "MT5ForConditionalGeneration", "mt5", "MT5Config", _fields,
    converter="linguamix.models.checkpoints.hf_mt5",
    refused={"decoder_start_token_id": 0}))  # decoding starts from id 0
