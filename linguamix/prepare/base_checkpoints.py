"""`prepare model` (a Hub checkpoint) and `prepare t5x` (a public T5X mT5 checkpoint).

Both end in a folder that `INITIAL_CHECKPOINT_PATH` (Orbax params, written by the
existing `linguamix convert` code) and `TOKENIZER_PATH` (the tokenizer files; for mT5
`sentencepiece.model`, for `t5x_tasks.mt5_vocabulary.path`) point at, with a record
`.linguamix_prepare.json` of the source: a second run against the same commit or
checkpoint does nothing. A new source converts into `OUT.partial` and then replaces OUT.

From the Hub: `config.json`, the safetensors weights (`model.safetensors`, or the
shards named by `model.safetensors.index.json`) and the tokenizer files present;
a repository without safetensors weights fails naming the files it lacks.
From `gs://` (or a local mirror with the same layout, `--source_root`), through
`tf.io.gfile`: every file of `pretrained_models/t5x/mt5_{size}/checkpoint_1000000`
and `vocabs/mc4.250000.100extra/sentencepiece.model` (docs/models.md), copied first into
`OUT.download/` (a file already there at its full size is skipped; a `.partial` one is
continued from where it stopped), then converted from there.
"""

from __future__ import annotations

import json
import os
import shutil

from linguamix.prepare import hub

RECORD = ".linguamix_prepare.json"
MT5_SIZES = ("small", "base", "large", "xl", "xxl")
T5X_CHECKPOINT = "pretrained_models/t5x/mt5_{size}/checkpoint_1000000"
MT5_SPM = "vocabs/mc4.250000.100extra/sentencepiece.model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "spiece.model", "generation_config.json")


def _current(out: str, source: dict) -> bool:
  path = os.path.join(out, RECORD)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return json.load(f) == source


def _refuse_foreign(out: str) -> None:
  if os.path.exists(out) and os.listdir(out) and not os.path.exists(os.path.join(out, RECORD)):
    raise hub.PrepareError(f"{out} exists and was not written by linguamix prepare; "
                           "choose another --out (nothing was changed)")


def _install(partial: str, out: str, source: dict) -> None:
  with open(os.path.join(partial, RECORD), "w") as f:
    json.dump(source, f, indent=1, sort_keys=True)
  if os.path.exists(out):
    shutil.rmtree(out)
  os.rename(partial, out)


def check_checkpoint(out: str, log=print) -> int:
  """The params tree as the trainer's loader sees it (Orbax metadata), counted."""
  import numpy as np
  import orbax.checkpoint as ocp
  meta = ocp.PyTreeCheckpointer().metadata(out)
  tree = getattr(meta, "item_metadata", meta)
  tree = getattr(tree, "tree", tree)
  import jax
  leaves = jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, "shape"))
  n = int(sum(np.prod(l.shape) for l in leaves))
  log(f"check: {out} holds {len(leaves)} parameter arrays, {n:,} parameters "
      f"(INITIAL_CHECKPOINT_PATH)")
  return n


# --- Hugging Face Hub ---------------------------------------------------------------------

def _weight_files(snap: hub.Snapshot, dry_run: bool = False) -> list[str]:
  if "model.safetensors.index.json" in snap.sizes:
    if dry_run and not hub.is_cached(snap, "model.safetensors.index.json"):
      # fetch nothing: the shards are taken to be the top-level safetensors files
      return ["model.safetensors.index.json"] + sorted(
          p for p in snap.sizes if "/" not in p and p.endswith(".safetensors"))
    with open(hub.fetch(snap, "model.safetensors.index.json")) as f:
      shards = sorted(set(json.load(f).get("weight_map", {}).values()))
    missing = [s for s in shards if s not in snap.sizes]
    if missing:
      raise hub.PrepareError(f"{hub.page(snap.repo_id, 'model')}: model.safetensors.index.json "
                             f"names {', '.join(missing)}, which the repository lacks")
    return ["model.safetensors.index.json"] + shards
  if "model.safetensors" in snap.sizes:
    return ["model.safetensors"]
  others = sorted(p for p in snap.sizes if p.endswith((".bin", ".pt", ".h5", ".msgpack")))
  raise hub.PrepareError(f"{hub.page(snap.repo_id, 'model')} (commit {snap.commit[:12]}) has no "
                         "model.safetensors or model.safetensors.index.json"
                         + (f" (it has {', '.join(others)}: not read, convert them to "
                            "safetensors first)" if others else ""))


def prepare_model(hub_id: str, out: str, revision: str | None, scan_layers: bool,
                  dry_run: bool, log=print) -> None:
  out = os.path.abspath(out)
  snap = hub.snapshot(hub_id, "model", revision)
  if "config.json" not in snap.sizes:
    raise hub.PrepareError(f"{hub.page(hub_id, 'model')} (commit {snap.commit[:12]}) has no config.json")
  files = (["config.json"] + _weight_files(snap, dry_run)
           + [f for f in TOKENIZER_FILES if f in snap.sizes])
  source = {"repo": hub_id, "commit": snap.commit, "files": files, "scan_layers": scan_layers}
  if dry_run:
    todo = [f for f in files if not hub.is_cached(snap, f)]
    for f in files:
      log(f"  {hub_id}/{f} ({hub.human(snap.sizes.get(f))}{'' if f in todo else ', cached'})")
    state = "up to date" if _current(out, source) else f"would convert into {out}"
    log(f"dry run: {state}; would download {len(todo)} file(s), "
        f"{hub.human(sum(snap.sizes.get(f) or 0 for f in todo))}")
    return
  if _current(out, source):
    log(f"nothing downloaded: {out} is up to date ({hub_id}@{snap.commit[:12]})")
    check_checkpoint(out, log)
    return
  _refuse_foreign(out)
  if "tokenizer.json" not in files:
    log(f"warning: {hub_id} has no tokenizer.json: TOKENIZER_PATH (HfTokenizerVocabulary) "
        "cannot read this folder")
  local, n, size = hub.fetch_all(snap, files, log)
  log(f"downloaded {n} file(s), {hub.human(size)}" if n else "nothing downloaded: all files in the cache")
  from linguamix.models import convert
  partial = out + ".partial"
  if os.path.exists(partial):
    shutil.rmtree(partial)
  hf_dir = os.path.dirname(local["config.json"])  # the snapshot folder: shards sit beside it
  hf_config = convert.import_hf(hf_dir, partial, scan_layers=scan_layers)
  _install(partial, out, source)
  log(f"converted {hf_config['architectures'][0]} ({hub_id}@{snap.commit[:12]}) -> {out}")
  check_checkpoint(out, log)
  if os.path.exists(os.path.join(out, "tokenizer.json")):
    from linguamix.models import hf_vocabulary
    vocab = hf_vocabulary.HfTokenizerVocabulary(out)
    log(f"check: tokenizer {vocab.vocab_size} ids (TOKENIZER_PATH={out})")


# --- T5X mT5 from gs:// ---------------------------------------------------------------------

def _gfile():
  import tensorflow as tf
  return tf.io.gfile


def _listing(src: str) -> dict:
  """Relative path -> size of every file under a gs:// (or local) directory."""
  gfile = _gfile()
  if not gfile.isdir(src):
    raise hub.PrepareError(f"{src}: not found (expected a T5X checkpoint_<step> directory)")
  sizes = {}
  for dirpath, _, names in gfile.walk(src):
    for name in names:
      path = dirpath.rstrip("/") + "/" + name
      sizes[path[len(src.rstrip("/")) + 1:]] = gfile.stat(path).length
  return sizes


def copy_resumable(src: str, dst: str, size: int, log=print, chunk: int = 1 << 24) -> int:
  """Copies src (gs:// or local) to local dst with a progress bar; returns bytes copied.
  A complete dst is kept; a `dst.partial` continues from its length."""
  from tqdm.auto import tqdm
  if os.path.exists(dst) and os.path.getsize(dst) == size:
    return 0
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  partial = dst + ".partial"
  done = os.path.getsize(partial) if os.path.exists(partial) else 0
  if done > size:
    done = 0
    os.remove(partial)
  if done:
    log(f"  resuming {src} at byte {done:,} of {size:,}")
  with _gfile().GFile(src, "rb") as f, open(partial, "ab") as g, \
       tqdm(total=size, initial=done, unit="B", unit_scale=True,
            desc=os.path.basename(src)[-40:], leave=False) as bar:
    f.seek(done)
    while True:
      block = f.read(chunk)
      if not block:
        break
      g.write(block)
      bar.update(len(block))
  if os.path.getsize(partial) != size:
    raise hub.PrepareError(f"{src}: copied {os.path.getsize(partial):,} bytes, expected "
                           f"{size:,} (run again to continue)")
  os.rename(partial, dst)
  return size - done


def prepare_t5x(name: str, out: str, source_root: str, scan_layers: bool, dry_run: bool,
                keep_download: bool = False, log=print) -> None:
  size = name.removeprefix("mt5_")
  if size not in MT5_SIZES:
    raise hub.PrepareError(f"unknown mT5 size {name!r}; known: "
                           + ", ".join(f"mt5_{s}" for s in MT5_SIZES))
  out = os.path.abspath(out)
  root = source_root.rstrip("/")
  ckpt = f"{root}/{T5X_CHECKPOINT.format(size=size)}"
  spm = f"{root}/{MT5_SPM}"
  files = _listing(ckpt)
  gfile = _gfile()
  if not gfile.exists(spm):
    raise hub.PrepareError(f"{spm}: not found (the mT5 SentencePiece model)")
  spm_size = gfile.stat(spm).length
  total = sum(files.values()) + spm_size
  source = {"checkpoint": ckpt, "files": len(files), "bytes": total, "vocabulary": spm,
            "scan_layers": scan_layers}
  if dry_run:
    log(f"  {ckpt}: {len(files)} files, {hub.human(sum(files.values()))}")
    log(f"  {spm}: {hub.human(spm_size)}")
    state = "up to date" if _current(out, source) else f"would convert into {out}"
    log(f"dry run: {state}; would copy {hub.human(total)} into {out}.download/")
    return
  if _current(out, source):
    log(f"nothing downloaded: {out} is up to date ({ckpt})")
    check_checkpoint(out, log)
    return
  _refuse_foreign(out)
  staging = out + ".download"
  local_ckpt = os.path.join(staging, os.path.basename(ckpt))
  copied = 0
  for rel, n in sorted(files.items()):
    copied += copy_resumable(f"{ckpt}/{rel}", os.path.join(local_ckpt, rel), n, log)
  copied += copy_resumable(spm, os.path.join(staging, "sentencepiece.model"), spm_size, log)
  log(f"copied {hub.human(copied)} from {root}" if copied else
      f"nothing downloaded: {staging} already holds every file")
  from linguamix.models import convert
  partial = out + ".partial"
  if os.path.exists(partial):
    shutil.rmtree(partial)
  hf_config = convert.import_t5x(local_ckpt, partial, scan_layers=scan_layers)
  shutil.copy(os.path.join(staging, "sentencepiece.model"), os.path.join(partial, "sentencepiece.model"))
  _install(partial, out, source)
  if not keep_download:
    shutil.rmtree(staging)
  log(f"converted mT5 {size} ({hf_config['num_layers']}+{hf_config['num_decoder_layers']} layers, "
      f"d_model {hf_config['d_model']}) -> {out}")
  check_checkpoint(out, log)
  from linguamix.t5x_tasks import vocab
  v = vocab.mt5_vocabulary(os.path.join(out, "sentencepiece.model"))
  log(f"check: vocabulary {v.vocab_size} ids (t5x_tasks.mt5_vocabulary.path="
      f"{os.path.join(out, 'sentencepiece.model')})")
