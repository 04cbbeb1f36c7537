"""config.json + safetensors <-> `DecoderConfig` + parameters, for every decoder `Architecture`.

Import checks every tensor's shape against the one the config implies and refuses
unused tensors, so a wrong config or checkpoint fails naming the tensor. Nothing here
depends on the architecture beyond what its record says.

Where the checkpoint's tokenizer has a real token at id 0 (`!` in GPT-2, Llama 3 and
Qwen2/3; Pythia's `<|endoftext|>`), `HfTokenizerVocabulary` gives that token the id one
past the tokenizer's largest (`moved_zero_id`), as SeqIO reads id 0 as padding. Import
moves the embedding and output rows to match (`move_token_zero`): the token's row goes
to that id, and the row there — an embedding row no token uses — comes to row 0, so the
softmax runs over the checkpoint's own rows; where the checkpoint has no row to spare
(GPT-2, Llama 3), one is appended and row 0's logit is masked (`mask_row_zero`). Export
moves them back (`restore_token_zero`), so a round trip gives the checkpoint's tensors.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import flax
import jax
import numpy as np
from safetensors import numpy as st_numpy

from linguamix.models import decoder, hf_vocabulary, lora
from linguamix.models.hf import architectures, tensors
from linguamix.models.hf.architectures import Architecture

Path = tuple[str, ...]


def _record(arch: Architecture | str) -> Architecture:
  return architectures.get(arch) if isinstance(arch, str) else arch


def entries(arch: Architecture | str, cfg: decoder.DecoderConfig) -> list[tensors.Entry]:
  """All tensors of the architecture's checkpoint, with full HF names and full parameter paths."""
  arch = _record(arch)
  prefix = arch.base_prefix
  out = [dataclasses.replace(e, hf_name=prefix + e.hf_name) for e in arch.top_entries(cfg)]
  for i in range(cfg.num_layers):
    out += [dataclasses.replace(e, hf_name=f"{prefix}{arch.layer_prefix}.{i}.{e.hf_name}",
                                paths=tuple((f"layers_{i}",) + p for p in e.paths))
            for e in arch.layer_entries(cfg)]
  if not cfg.tie_embeddings:
    out.append(tensors.lm_head(arch.lm_head))
  return out


def config_from_hf(hf: dict, where: str = "config.json", **overrides) -> tuple[Architecture, decoder.DecoderConfig]:
  """(architecture record, DecoderConfig) from a parsed config.json; `overrides` set dtype, scan, ...."""
  arch = architectures.lookup(hf, where)
  if arch.kind != "decoder":
    raise ValueError(f"{where}: {arch.name} is an encoder-decoder, not a decoder-only model")
  return arch, decoder.DecoderConfig(**{**arch.fields(hf, where), **overrides})


def config_to_hf(arch: Architecture | str, cfg: decoder.DecoderConfig, extra: dict | None = None) -> dict:
  """config.json for `arch` from a DecoderConfig (`extra`: token ids and other keys to keep)."""
  arch = _record(arch)
  return {"architectures": [arch.name], "model_type": arch.model_type, "torch_dtype": "float32",
          **(extra or {}), **arch.config_to_hf(cfg)}


def _expected_shapes(cfg: decoder.DecoderConfig) -> dict[Path, tuple[int, ...]]:
  unscanned = dataclasses.replace(cfg, scan_layers=False)
  shapes = jax.eval_shape(lambda: decoder.DecoderOnlyModel(unscanned, None).init_variables(
      jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 1)}))
  shapes = flax.linen.meta.unbox(shapes)["params"]
  return {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(shapes).items()}


def params_from_hf(arch: Architecture | str, cfg: decoder.DecoderConfig, hf_tensors: dict[str, np.ndarray],
                   where: str = "checkpoint") -> dict:
  """Our parameter tree (numpy, cfg.param_dtype) from HF tensors, checking every shape."""
  arch = _record(arch)
  hf_tensors = dict(hf_tensors)
  # base-model checkpoints (LlamaModel, GPT2Model) store names without the prefix
  for name in list(hf_tensors):
    if not name.startswith(arch.base_prefix) and name != arch.lm_head:
      hf_tensors[arch.base_prefix + name] = hf_tensors.pop(name)
  if cfg.tie_embeddings:
    hf_tensors.pop(arch.lm_head, None)  # some tied checkpoints store the shared matrix twice
  expected = _expected_shapes(cfg)
  flat = {}
  for e in entries(arch, cfg):
    want = tuple(e.to_hf([np.zeros(expected[p], np.float32) for p in e.paths]).shape)
    for name in e.hf_names():
      if name not in hf_tensors:
        raise KeyError(f"{where}: tensor {name} is missing (needed for {'/'.join(e.paths[0])})")
      shape = tuple(hf_tensors[name].shape)
      if shape != (want[1:] if e.stacked else want):
        raise ValueError(f"{where}: tensor {name} has shape {shape} but the config implies "
                         f"{want[1:] if e.stacked else want} (parameter {'/'.join(e.paths[0])})")
    ws = [hf_tensors.pop(name) for name in e.hf_names()]
    w = np.stack(ws) if e.stacked else ws[0]
    for path, value in zip(e.paths, e.to_ours(np.asarray(w, np.float32))):
      flat[path] = value.astype(cfg.param_dtype)
  unused = sorted(n for n in hf_tensors if not arch.is_ignored(n))
  if unused:
    raise ValueError(f"{where}: {len(unused)} tensors do not belong to a {arch.name} with this config: "
                     f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
  if cfg.scan_layers:
    flat = tensors.stack_layers(flat, cfg.num_layers)
  return flax.traverse_util.unflatten_dict(flat)


def params_to_hf(arch: Architecture | str, cfg: decoder.DecoderConfig, params: dict) -> dict[str, np.ndarray]:
  """HF tensors from our params, after checking every parameter against the config
  (reshapes alone would accept any config of the same total size)."""
  flat = flax.traverse_util.flatten_dict(flax.linen.meta.unbox(params))
  flat = {k: np.asarray(v, np.float32) for k, v in tensors.unstack_layers(flat).items()}
  expected = _expected_shapes(cfg)
  problems = [f"{'/'.join(p)}: missing" if p not in flat else
              f"{'/'.join(p)}: params {tuple(flat[p].shape)}, config implies {shape}"
              for p, shape in sorted(expected.items())
              if p not in flat or tuple(flat[p].shape) != shape]
  if problems:
    raise ValueError(f"the params do not fit this {_record(arch).name} config ({len(problems)} problems): "
                     + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
  out = {}
  for e in entries(arch, cfg):
    w = e.to_hf([flat[p] for p in e.paths])
    out.update(zip(e.hf_names(), map(np.ascontiguousarray, w if e.stacked else [w])))
  return out


# Our parameters indexed by token id, and the axis the id runs along.
_VOCAB_AXES = {("token_embedder", "embedding"): 0, ("logits_dense",): 1}
# hf_config.json (written by import-hf) records the id the tokenizer's id 0 moved to.
MOVED_KEY = "linguamix_moved_zero_id"


def _hf_order(moved: int, hf_rows: int) -> np.ndarray:
  """order[i] = our row that holds the checkpoint's row i: row 0 at `moved`, and the
  row at `moved` (if the checkpoint has one: a row no token uses) at 0."""
  order = np.arange(hf_rows)
  order[0] = moved
  if moved < hf_rows:
    order[moved] = 0
  return order


def move_token_zero(params: dict, cfg: decoder.DecoderConfig, moved: int | None
                    ) -> tuple[dict, decoder.DecoderConfig]:
  """Params and config in the checkpoint's ids -> in the vocabulary's (its id 0 at `moved`)."""
  if moved is None:
    return params, cfg
  if moved > cfg.vocab_size:
    raise ValueError(f"the tokenizer has {moved} ids but the checkpoint's embedding only "
                     f"{cfg.vocab_size} rows: they do not belong together")
  rows = max(cfg.vocab_size, moved + 1)
  order = _hf_order(moved, cfg.vocab_size)
  flat = flax.traverse_util.flatten_dict(params)
  for path, axis in _VOCAB_AXES.items():
    if path in flat:
      w = np.moveaxis(np.asarray(flat[path]), axis, 0)
      out = np.zeros((rows,) + w.shape[1:], w.dtype)
      out[order] = w
      flat[path] = np.moveaxis(out, 0, axis)
  return flax.traverse_util.unflatten_dict(flat), dataclasses.replace(
      cfg, vocab_size=rows, mask_row_zero=moved >= cfg.vocab_size)


def restore_token_zero(params: dict, hf_cfg: decoder.DecoderConfig, moved: int | None) -> dict:
  """`move_token_zero` undone: params in the checkpoint's ids, `hf_cfg.vocab_size` rows."""
  if moved is None:
    return params
  want = max(hf_cfg.vocab_size, moved + 1)
  order = _hf_order(moved, hf_cfg.vocab_size)
  flat = flax.traverse_util.flatten_dict(params)
  for path, axis in _VOCAB_AXES.items():
    if path in flat:
      w = np.asarray(flat[path])
      if w.shape[axis] != want:
        raise ValueError(f"{'/'.join(path)} has {w.shape[axis]} rows; a checkpoint of "
                         f"vocab_size {hf_cfg.vocab_size} whose id 0 moved to {moved} has {want}")
      flat[path] = np.take(w, order, axis=axis)
  return flax.traverse_util.unflatten_dict(flat)


def load_hf(directory: str | pathlib.Path, **overrides) -> tuple[Architecture, decoder.DecoderConfig, dict]:
  """(architecture, config, params) from a Hugging Face model directory, in the ids of
  its tokenizer's `HfTokenizerVocabulary` (`move_token_zero`)."""
  directory = pathlib.Path(directory)
  config_path = directory / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} does not exist")
  arch, cfg = config_from_hf(json.loads(config_path.read_text()), str(config_path), **overrides)
  params = params_from_hf(arch, cfg, tensors.read_safetensors(directory), str(directory))
  params, cfg = move_token_zero(params, cfg, hf_vocabulary.moved_zero_id(directory))
  return arch, cfg, params


def save_hf(directory: str | pathlib.Path, arch: Architecture | str, cfg: decoder.DecoderConfig, params: dict,
            extra_config: dict | None = None, dtype: Any = np.float32, moved: int | None = None) -> None:
  """Writes config.json and model.safetensors that `AutoModelForCausalLM.from_pretrained` reads.
  `cfg` is the checkpoint's; `moved`: the id the tokenizer's id 0 has in `params`, if any."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  params = restore_token_zero(params, cfg, moved)
  hf_tensors = {k: v.astype(jax.numpy.dtype(dtype)) for k, v in params_to_hf(arch, cfg, params).items()}
  st_numpy.save_file(hf_tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
  hf_config = config_to_hf(arch, cfg, extra_config)
  hf_config["torch_dtype"] = jax.numpy.dtype(dtype).name
  (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")


def is_scanned(params: dict) -> bool:
  return any(k[0] == "layers" for k in flax.traverse_util.flatten_dict(params))


def adapter_config(params: dict, alpha: float | None, dropout: float = 0.0) -> lora.LoraConfig | None:
  """The LoraConfig of the adapters in `params` (rank read off their shapes), or None."""
  adapters, _ = lora.split_params(params)
  ranks = {a.shape[-1] for k, a in flax.traverse_util.flatten_dict(adapters).items() if k[-1] == "a"}
  if not ranks:
    return None
  if alpha is None:
    raise ValueError("the checkpoint holds LoRA adapters: pass --lora_alpha (the run's LoraConfig "
                     "alpha) to merge them into the exported weights, or use export-peft")
  if len(ranks) > 1:
    raise ValueError(f"the checkpoint's LoRA adapters have different ranks {sorted(ranks)}; "
                     "merging needs one rank")
  return lora.LoraConfig(rank=ranks.pop(), alpha=alpha, dropout=dropout)


# `linguamix convert` hooks (through `Architecture.import_hf` / `export_hf`)


def import_hf(arch: Architecture, hf_dir: str, scan_layers: bool = False) -> tuple[dict, dict]:
  """(params, config.json dict) of a Hugging Face directory; the dict records where the
  tokenizer's id 0 moved (`MOVED_KEY`), which export reads."""
  _, _, params = load_hf(hf_dir, scan_layers=scan_layers)
  hf_config = json.loads((pathlib.Path(hf_dir) / "config.json").read_text())
  moved = hf_vocabulary.moved_zero_id(hf_dir)
  return params, {**hf_config, **({MOVED_KEY: moved} if moved is not None else {})}


def moved_zero_id(hf_config: dict, *tokenizer_dirs) -> int | None:
  """Where the params' token id 0 sits: as import-hf recorded it, else as the first of
  `tokenizer_dirs` holding a tokenizer.json says."""
  if MOVED_KEY in hf_config:
    return hf_config[MOVED_KEY]
  for directory in tokenizer_dirs:
    if (pathlib.Path(directory) / "tokenizer.json").exists():
      return hf_vocabulary.moved_zero_id(directory)
  return None


def export_hf(arch: Architecture, params: dict, hf_config: dict, out_dir: str, dtype: str = "float32",
              lora_alpha: float | None = None) -> None:
  """Writes `params` (LoRA adapters merged) as `hf_config` describes."""
  adapters = adapter_config(params, lora_alpha)
  if adapters is not None:
    params = jax.tree.map(np.asarray, lora.merge(params, adapters))
  arch, cfg = config_from_hf(hf_config, "config.json", scan_layers=is_scanned(params))
  keep = {k: v for k, v in hf_config.items()
          if (k.endswith("token_id") or k == "torch_dtype") and k != MOVED_KEY}
  save_hf(out_dir, arch, cfg, params, extra_config=keep, dtype=jax.numpy.dtype(dtype),
          moved=moved_zero_id(hf_config, out_dir))
