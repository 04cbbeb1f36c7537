"""`linguamix convert`: Hugging Face safetensors <-> Orbax parameter checkpoints, and legacy
T5X mT5 checkpoints to Orbax, with `linguamix.models.convert`.

  linguamix convert import-hf HF_DIR ORBAX_DIR [--scan_layers]
  linguamix convert export-hf ORBAX_DIR HF_DIR [--config config.json] [--dtype bfloat16] [--lora_alpha A]
  linguamix convert export-peft MODEL_DIR/checkpoint_N PEFT_DIR --config config.json --lora_alpha A
  linguamix convert import-t5x T5X_CHECKPOINT_DIR ORBAX_DIR [--scan_layers]   (legacy mT5)
"""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
  # Both import no JAX or TensorFlow (the conversions import them when they run).
  from linguamix.models import convert
  from linguamix.models.hf import architectures
  parser = argparse.ArgumentParser(
      prog="linguamix convert",
      description="Convert Hugging Face checkpoints (config.json + model.safetensors, sharded "
                  "or not) to Orbax params for INITIAL_CHECKPOINT_PATH, and back. Families: "
                  + ", ".join(architectures.names()))
  sub = parser.add_subparsers(dest="command", required=True)
  imp = sub.add_parser("import-hf", help="HF model directory -> Orbax params directory")
  imp.add_argument("hf_dir", help="directory with config.json and model.safetensors[.index.json]")
  imp.add_argument("out_dir", help="Orbax directory to create")
  imp.add_argument("--scan_layers", action="store_true",
                   help="stack layers for a model gin with scan_layers=True")
  exp = sub.add_parser("export-hf", help="Orbax params (or MODEL_DIR/checkpoint_N) -> HF directory")
  exp.add_argument("checkpoint_dir", help="directory written by import-hf, or a training checkpoint")
  exp.add_argument("out_dir", help="HF directory to write (config.json, model.safetensors)")
  exp.add_argument("--config", help=f"config.json of the model (default: CHECKPOINT_DIR/{convert.HF_CONFIG_FILE})")
  exp.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="dtype of the written tensors")
  exp.add_argument("--lora_alpha", type=float,
                   help="merge the checkpoint's LoRA adapters (scale alpha / rank) into the weights")
  peft_ = sub.add_parser("export-peft", help="LoRA adapters of a checkpoint -> PEFT adapter directory")
  peft_.add_argument("checkpoint_dir", help="training checkpoint (MODEL_DIR/checkpoint_N) of a LoRA run")
  peft_.add_argument("out_dir", help="directory to write adapter_config.json + adapter_model.safetensors")
  peft_.add_argument("--config", help="config.json of the base model")
  peft_.add_argument("--lora_alpha", type=float, required=True, help="the run's LoraConfig alpha")
  peft_.add_argument("--lora_dropout", type=float, default=0.0, help="recorded in adapter_config.json")
  t5x = sub.add_parser("import-t5x", help="legacy T5X mT5 checkpoint_<step> dir (local or gs://) -> Orbax params")
  t5x.add_argument("t5x_dir", help="T5X checkpoint_<step> directory (msgpack `checkpoint` + zarr arrays)")
  t5x.add_argument("out_dir", help="Orbax directory to create")
  t5x.add_argument("--scan_layers", action="store_true",
                   help="stack layers for a model gin with scan_layers=True")
  return parser


def main(argv: list[str]) -> int:
  args = parser().parse_args(argv)
  from linguamix.models import convert
  if args.command == "import-t5x":
    hf_config = convert.import_t5x(args.t5x_dir, args.out_dir, scan_layers=args.scan_layers)
    print(f"imported T5X mT5 ({hf_config['num_layers']}+{hf_config['num_decoder_layers']} layers, "
          f"d_model {hf_config['d_model']}, vocab {hf_config['vocab_size']}) from {args.t5x_dir} -> {args.out_dir}")
  elif args.command == "import-hf":
    hf_config = convert.import_hf(args.hf_dir, args.out_dir, scan_layers=args.scan_layers)
    print(f"imported {hf_config['architectures'][0]} from {args.hf_dir} -> {args.out_dir}")
  elif args.command == "export-peft":
    hf_config = convert.export_peft(args.checkpoint_dir, args.out_dir, args.config,
                                    args.lora_alpha, args.lora_dropout)
    print(f"exported LoRA adapters of {hf_config['architectures'][0]} from {args.checkpoint_dir} "
          f"-> {args.out_dir}")
  else:
    hf_config = convert.export_hf(args.checkpoint_dir, args.out_dir, args.config, args.dtype,
                                  args.lora_alpha)
    print(f"exported {hf_config['architectures'][0]} from {args.checkpoint_dir} -> {args.out_dir}")
  return 0
