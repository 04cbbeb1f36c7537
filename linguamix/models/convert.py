"""Hugging Face safetensors <-> Orbax parameter checkpoints (`linguamix convert`).

  linguamix convert import-hf HF_DIR ORBAX_DIR [--scan_layers]
  linguamix convert export-hf ORBAX_DIR HF_DIR [--config config.json] [--dtype bfloat16] [--lora_alpha A]
  linguamix convert export-peft MODEL_DIR/checkpoint_N PEFT_DIR --config config.json --lora_alpha A
  linguamix convert import-t5x T5X_CHECKPOINT_DIR ORBAX_DIR [--scan_layers]   (legacy mT5)

The architecture is read from config.json `architectures`; its record in
`linguamix.models.hf.architectures` converts it (`import_hf`, `export_hf`, `export_peft`).
The Orbax directory holds the bare params tree (what `INITIAL_CHECKPOINT_PATH` loads)
plus `hf_config.json`, so export needs no other input. Export also reads a training
checkpoint (`MODEL_DIR/checkpoint_<step>`): its `state/params` subtree.

Every output is written under a temporary sibling name and renamed into place when
complete (`linguamix.atomic.atomic_dir`): a failed or killed conversion leaves no
directory that `INITIAL_CHECKPOINT_PATH` or `from_pretrained` would half-read.
"""

from __future__ import annotations

import json
import pathlib
import shutil

from linguamix import atomic
from linguamix import errors
from linguamix.models.checkpoint_formats import integrity
from linguamix.models.hf import architectures

HF_CONFIG_FILE = "hf_config.json"
# Tokenizer files copied along so a converted directory is complete.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "tokenizer.model", "generation_config.json")


def import_hf(hf_dir: str, out_dir: str, **options) -> dict:
  """HF directory -> Orbax params at out_dir; returns the HF config."""
  config_path = pathlib.Path(hf_dir) / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} does not exist")
  hf_config = _read_json(config_path)
  arch = architectures.lookup(hf_config, str(config_path))
  _check_new(out_dir)
  params, hf_config = arch.import_hf(hf_dir, **options)
  _save_orbax(out_dir, params, hf_config, copy_from=hf_dir)
  return hf_config


def _read_json(path: pathlib.Path) -> dict:
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.UserError(f"{path}: not a JSON config: {e}") from None


def _check_new(out_dir: str) -> None:
  out = pathlib.Path(out_dir).absolute()
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise errors.UserError(f"ORBAX_DIR {out} already exists; give a new directory "
                           "(nothing was written)")


def _save_orbax(out_dir: str, params, hf_config: dict, copy_from: str | None = None) -> None:
  """Params + hf_config.json (+ tokenizer files) at out_dir, all at once."""
  import orbax.checkpoint as ocp  # heavy; only when converting
  with atomic.atomic_dir(out_dir) as tmp:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(tmp, params)
    (pathlib.Path(tmp) / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    for name in _TOKENIZER_FILES if copy_from else ():
      if (pathlib.Path(copy_from) / name).exists():
        shutil.copy(pathlib.Path(copy_from) / name, pathlib.Path(tmp) / name)


def import_t5x(t5x_dir: str, out_dir: str, scan_layers: bool = False) -> dict:
  """Legacy T5X mT5 checkpoint (msgpack + zarr, local or gs://) -> Orbax params at out_dir."""
  from linguamix.models.checkpoint_formats import t5x_legacy
  _check_new(out_dir)
  params, hf_config = t5x_legacy.import_t5x(t5x_dir, scan_layers=scan_layers)
  _save_orbax(out_dir, params, hf_config)
  return hf_config


def _read_checkpoint(checkpoint_dir: str, config_path: str | None):
  """(hf_config, architecture record, params) of a converted dir or a training checkpoint."""
  import orbax.checkpoint as ocp

  src = pathlib.Path(checkpoint_dir).absolute()
  config_file = pathlib.Path(config_path) if config_path else src / HF_CONFIG_FILE
  if not config_file.exists():
    raise FileNotFoundError(f"{config_file} does not exist: pass --config with the model's config.json")
  hf_config = _read_json(config_file)
  arch = architectures.lookup(hf_config, str(config_file))
  item = src / "state" if (src / "state").is_dir() else src
  try:  # every file there and whole before Orbax reads (its errors name no file)
    integrity.check_item(str(item))
  except integrity.DamagedCheckpoint as e:
    raise errors.UserError(f"CHECKPOINT_DIR {src}: {e}") from None
  try:
    tree = ocp.PyTreeCheckpointer().restore(item)
  except Exception as e:  # noqa: BLE001 - Orbax wraps TensorStore's errors in Exception
    cause = e.__cause__ if e.__cause__ is not None else e
    if not isinstance(cause, (ValueError, OSError)):  # TensorStore's are ValueErrors
      raise
    raise errors.UserError(f"{item}: not a readable Orbax checkpoint: "
                           f"{str(cause).split(' [tensorstore_spec=')[0]}") from e
  params = tree["params"] if "params" in tree else tree
  meta = src / "meta" / "metadata"  # a training checkpoint: its checksums
  if meta.exists():
    from linguamix.models.checkpoint_formats import checksums  # pylint: disable=g-import-not-at-top
    problem = checksums.mismatch(params, integrity.read_json(str(meta)).get("checksums"),
                                 prefix="['params']" if "params" in tree else "")
    if problem is not None:
      raise errors.UserError(f"CHECKPOINT_DIR {src}: {problem}")
  return hf_config, arch, params


def export_hf(checkpoint_dir: str, out_dir: str, config_path: str | None = None,
              dtype: str = "float32", lora_alpha: float | None = None) -> dict:
  """Orbax params (converted or a training checkpoint) -> HF directory; LoRA adapters
  (decoder families) are merged into the weights with `lora_alpha`."""
  from linguamix.models.checkpoint_formats import layout  # imports JAX: not for --help
  hf_config, arch, params = _read_checkpoint(checkpoint_dir, config_path)
  src = pathlib.Path(checkpoint_dir).absolute()
  # The tokenizer files of the checkpoint, else of the config's folder (a training
  # checkpoint has none; --config names the converted folder's hf_config.json). They go
  # first: the tensors are written in their ids.
  sources = [src] + ([pathlib.Path(config_path).absolute().parent] if config_path else [])
  tokenizer_dir = next((d for d in sources if (d / "tokenizer.json").exists()), src)
  with atomic.atomic_dir(out_dir) as tmp:
    pathlib.Path(tmp).mkdir(parents=True)
    for name in _TOKENIZER_FILES:
      if (tokenizer_dir / name).exists():
        shutil.copy(tokenizer_dir / name, pathlib.Path(tmp) / name)
    try:
      arch.export_hf(params, hf_config, tmp, dtype, lora_alpha)
    except layout.CheckpointMismatchError as e:  # say which checkpoint and config disagree
      raise errors.UserError(f"CHECKPOINT_DIR {src} does not fit the model of "
                             f"{config_path or src / HF_CONFIG_FILE}: {e}") from None
  return hf_config


def export_peft(checkpoint_dir: str, out_dir: str, config_path: str | None, lora_alpha: float,
                lora_dropout: float = 0.0) -> dict:
  """LoRA adapters of a training checkpoint -> PEFT adapter directory."""
  hf_config, arch, params = _read_checkpoint(checkpoint_dir, config_path)
  with atomic.atomic_dir(out_dir) as tmp:
    arch.export_peft(params, hf_config, tmp, lora_alpha, lora_dropout)
  return hf_config
