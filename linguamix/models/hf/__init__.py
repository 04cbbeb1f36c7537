"""Hugging Face checkpoints: the architecture registry, its family tables, and their readers.

  architectures   one `Architecture` record per HF architecture (names, config, tensor table)
  families/       the tables, one module per family
  tensors         `Entry` and the array transforms the tables are written in; safetensors I/O
  decoder_io      config.json + safetensors <-> DecoderConfig + params, for every decoder record
  peft            LoRA adapters -> a PEFT adapter directory
"""
