"""A `seqio.Vocabulary` over a Hugging Face `tokenizer.json` (the `tokenizers` library).

Encoding adds no special tokens (SeqIO appends EOS through the task's output features;
`add_special_tokens=True` applies the tokenizer's own template, e.g. Llama's BOS).
Decoding stops at EOS (SeqIO's rule), drops trailing padding (SeqIO pads with 0) and
skips special tokens like `PreTrainedTokenizerFast.decode(ids, skip_special_tokens=True)`.

Token id 0. SeqIO, its feature converters and T5X-style models read id 0 as padding
(no loss weight, masked out of attention, dropped when packing). Where the tokenizer's id
0 is a real token — a text token (`!` in GPT-2, Llama 3, Qwen2/3 byte-level BPE) or the
BOS/EOS (`<|endoftext|>` in GPT-NeoX/Pythia) — the vocabulary moves it to a fresh id,
the tokenizer's size (`moved_zero_id`), so SeqIO's padding never collides with a token.
The mapping is reversible (`hf_ids`, `from_hf_ids`): the checkpoint converter moves the
embedding and output rows the same way on import and back on export. An id 0 that is
padding, `<unk>` or another special token text never produces stays padding.
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib

import seqio
import tensorflow as tf
import tokenizers


@functools.lru_cache(maxsize=8)
def _load(path: str) -> tokenizers.Tokenizer:
  # gin builds a vocabulary per reference; big tokenizer.json files load once
  return tokenizers.Tokenizer.from_file(path)


def _token_text(value) -> str | None:
  if isinstance(value, dict):  # {"content": "<s>", ...} in tokenizer_config.json
    return value.get("content")
  return value


_PROBE = "a"


def _config(file: pathlib.Path) -> dict:
  config_file = file.parent / "tokenizer_config.json"
  return json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}


def _zero_is_token(tok: tokenizers.Tokenizer, config: dict) -> bool:
  """Whether id 0 is a real token: the BOS/EOS, or a text token — not the padding or
  unknown token, nor another special token (none of which a text is encoded to)."""
  zero = tok.id_to_token(0)
  if zero is None:
    return False
  named = {kind: _token_text(config.get(f"{kind}_token")) for kind in ("bos", "eos", "pad", "unk")}
  if zero in (named["bos"], named["eos"]):
    return True
  decoder = tok.get_added_tokens_decoder()
  special = 0 in decoder and decoder[0].special
  return not (special or zero in (named["pad"], named["unk"], getattr(tok.model, "unk_token", None)))


def moved_zero_id(path: str | pathlib.Path) -> int | None:
  """The id the tokenizer at `path` (tokenizer.json or its directory) gets in place of 0
  when its id 0 is a real token: one past its largest id. None when id 0 may stay
  padding (no tokenizer there, or id 0 is a padding/unknown/unused special token)."""
  path = pathlib.Path(path)
  file = path / "tokenizer.json" if path.is_dir() else path
  return _moved_zero_id(str(file)) if file.exists() else None


@functools.lru_cache(maxsize=16)
def _moved_zero_id(file: str) -> int | None:
  tok = _load(file)
  if not _zero_is_token(tok, _config(pathlib.Path(file))):
    return None
  return max(tok.get_vocab(with_added_tokens=True).values()) + 1


def _split_template(plain: list[int], full: list[int]) -> tuple[list[int], list[int]]:
  for start in range(len(full) - len(plain) + 1):
    if full[start:start + len(plain)] == plain:
      return full[:start], full[start + len(plain):]
  raise ValueError(f"tokenizer template {full} does not contain the text's ids {plain}")


@functools.lru_cache(maxsize=16)
def _special_template(file: str, add_bos_token: bool | None) -> tuple[list[int], list[int]]:
  if add_bos_token is False:
    return [], []
  directory = pathlib.Path(file).parent
  try:  # transformers decides per tokenizer class (Llama's adds BOS whatever the file says)
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    transformers = None
  if transformers is not None and (directory / "tokenizer_config.json").exists():
    kwargs = {} if add_bos_token is None else {"add_bos_token": add_bos_token}
    tok = transformers.AutoTokenizer.from_pretrained(str(directory), **kwargs)
    return _split_template(tok(_PROBE, add_special_tokens=False)["input_ids"],
                           tok(_PROBE, add_special_tokens=True)["input_ids"])
  # Without transformers: its generic rule, the file's post-processor unless the config
  # (or the override) names add_bos_token / add_eos_token.
  tok = _load(file)
  config_file = directory / "tokenizer_config.json"
  config = json.loads(config_file.read_text()) if config_file.exists() else {}
  if add_bos_token is not None:
    config = {**config, "add_bos_token": add_bos_token}
  if "add_bos_token" in config or "add_eos_token" in config or tok.post_processor is None:
    ids = {k: tok.token_to_id(_token_text(config.get(f"{k}_token")) or "") for k in ("bos", "eos")}
    return ([ids["bos"]] if config.get("add_bos_token") and ids["bos"] is not None else [],
            [ids["eos"]] if config.get("add_eos_token") and ids["eos"] is not None else [])
  return _split_template(tok.encode(_PROBE, add_special_tokens=False).ids,
                         tok.encode(_PROBE, add_special_tokens=True).ids)


class HfTokenizerVocabulary(seqio.Vocabulary):
  """`path`: a tokenizer.json, or a directory with tokenizer.json (and, if present,
  tokenizer_config.json naming bos/eos/pad/unk tokens). Token arguments override it."""

  def __init__(self, path: str, *, bos_token: str | None = None, eos_token: str | None = None,
               pad_token: str | None = None, unk_token: str | None = None,
               add_special_tokens: bool = False, skip_special_tokens: bool = True,
               extra_ids: int = 0):
    super().__init__(extra_ids=extra_ids)
    path = pathlib.Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
      raise FileNotFoundError(f"{file} does not exist (a Hugging Face tokenizer.json)")
    self._path = str(file)
    self._tokenizer = _load(self._path)
    config = _config(file)
    # SeqIO id = the tokenizer's id, except that a real token at 0 moves to `_moved`
    self._moved = moved_zero_id(file)
    names = {"bos": bos_token, "eos": eos_token, "pad": pad_token, "unk": unk_token}
    self._ids = {}
    for kind, given in names.items():
      text = given if given is not None else _token_text(config.get(f"{kind}_token"))
      token_id = None if text is None else self._tokenizer.token_to_id(text)
      if text is not None and token_id is None:
        raise ValueError(f"{self._path}: {kind}_token {text!r} is not in the tokenizer's vocabulary")
      if token_id == 0 and kind in ("bos", "eos") and self._moved is None:
        raise ValueError(f"{self._path}: {kind}_token {text!r} is id 0, SeqIO's padding, but the "
                         "tokenizer's files do not make it BOS/EOS (checkpoints are converted by "
                         "them): name it in tokenizer_config.json instead")
      self._ids[kind] = None if token_id is None else self._from_hf(token_id)
    self._add_special_tokens = add_special_tokens
    self._skip_special_tokens = skip_special_tokens
    if self._moved is not None:
      logging.info("%s: id 0 (%r) is a token: SeqIO sees it as id %d (0 stays padding)",
                   self._path, self._tokenizer.id_to_token(0), self._moved)

  @property
  def moved_zero_id(self) -> int | None:
    """The SeqIO id of the tokenizer's id 0 when that is a real token, else None."""
    return self._moved

  def _from_hf(self, i: int) -> int:
    return self._moved if i == 0 and self._moved is not None else i

  def from_hf_ids(self, ids) -> list[int]:
    """The tokenizer's ids -> SeqIO ids."""
    ids = list(ids) if isinstance(ids, list) else [int(i) for i in ids]  # `tokenizers` gives ints
    if self._moved is None:
      return ids
    return [self._moved if i == 0 else i for i in ids]

  def hf_ids(self, ids) -> list[int]:
    """SeqIO ids -> the tokenizer's ids; SeqIO padding (0) is dropped when 0 was moved."""
    if self._moved is None:
      return [int(i) for i in ids]
    return [0 if i == self._moved else int(i) for i in ids if i != seqio.PAD_ID]

  def default_special_ids(self, add_bos_token: bool | None = None) -> tuple[list[int], list[int]]:
    """(leading, trailing) ids transformers' tokenizer for this file adds to a text by
    default (`tokenizer(text)`), as lm-evaluation-harness encodes; `add_bos_token` is
    lm-eval's override (given to `from_pretrained`, then as `add_special_tokens`)."""
    lead, trail = _special_template(self._path, add_bos_token)
    return self.from_hf_ids(lead), self.from_hf_ids(trail)

  @property
  def tokenizer(self) -> tokenizers.Tokenizer:
    """The `tokenizers` object; its ids are the tokenizer's (`hf_ids` maps SeqIO's to them)."""
    return self._tokenizer

  @property
  def bos_id(self) -> int | None:
    return self._ids["bos"]

  @property
  def eos_id(self) -> int | None:
    return self._ids["eos"]

  @property
  def unk_id(self) -> int | None:
    return self._ids["unk"]

  @property
  def pad_id(self) -> int:
    return self._ids["pad"] if self._ids["pad"] is not None else seqio.PAD_ID

  @property
  def _base_vocab_size(self) -> int:
    if self._moved is not None:
      return self._moved + 1
    return self._tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str) -> list[int]:
    return self.from_hf_ids(self._tokenizer.encode(s, add_special_tokens=self._add_special_tokens).ids)

  def _decode(self, ids) -> str:
    ids = [int(i) for i in ids]
    while ids and ids[-1] == seqio.PAD_ID:
      ids.pop()
    return self._tokenizer.decode(self.hf_ids(ids), skip_special_tokens=self._skip_special_tokens)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Scalar string -> [n] int32; a batch [B] of strings -> ragged [B, None]."""
    def encode_flat(strings):
      encodings = self._tokenizer.encode_batch(
          [x.decode("utf-8") for x in strings.numpy().reshape(-1)],
          add_special_tokens=self._add_special_tokens)
      values = self.from_hf_ids(i for e in encodings for i in e.ids)
      return tf.constant(values, tf.int32), tf.constant([len(e.ids) for e in encodings], tf.int64)

    s = tf.convert_to_tensor(s, tf.string)
    values, lengths = tf.py_function(encode_flat, [tf.reshape(s, [-1])], [tf.int32, tf.int64])
    values.set_shape([None])
    lengths.set_shape([None])
    if s.shape.rank == 0:
      return values
    return tf.RaggedTensor.from_row_lengths(values, lengths)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """[..., L] ids -> [...] strings."""
    def decode_rows(rows):
      texts = [self._decode(row) for row in rows.numpy().reshape(-1, rows.shape[-1]).tolist()]
      return tf.constant(texts, tf.string)

    ids = tf.convert_to_tensor(ids)
    flat = tf.reshape(ids, [-1, tf.shape(ids)[-1]])
    texts = tf.py_function(decode_rows, [flat], tf.string)
    return tf.reshape(texts, tf.shape(ids)[:-1])

  def __eq__(self, other) -> bool:
    return (isinstance(other, HfTokenizerVocabulary) and self._path == other._path
            and self._ids == other._ids and self._add_special_tokens == other._add_special_tokens)

  def __hash__(self) -> int:
    return hash((self._path, tuple(sorted(self._ids.items()))))
