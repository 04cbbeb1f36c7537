"""A `seqio.Vocabulary` over a Hugging Face `tokenizer.json` (the `tokenizers` library).

Encoding adds no special tokens (SeqIO appends EOS through the task's output features;
`add_special_tokens=True` applies the tokenizer's own template, e.g. Llama's BOS).
Decoding stops at EOS (SeqIO's rule), drops trailing padding (SeqIO pads with 0) and
skips special tokens like `PreTrainedTokenizerFast.decode(ids, skip_special_tokens=True)`.

SeqIO and its feature converters treat id 0 as padding. Tokenizers whose id 0 is a
text token (GPT-2 and Qwen2 byte-level BPE: "!") lose that token's loss weight in
unpacked batches, and those whose EOS is id 0 (GPT-NeoX/Pythia) lose the EOS of every
trained target; the constructor logs both.
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
    config_file = file.parent / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    names = {"bos": bos_token, "eos": eos_token, "pad": pad_token, "unk": unk_token}
    self._ids = {}
    for kind, given in names.items():
      text = given if given is not None else _token_text(config.get(f"{kind}_token"))
      token_id = None if text is None else self._tokenizer.token_to_id(text)
      if text is not None and token_id is None:
        raise ValueError(f"{self._path}: {kind}_token {text!r} is not in the tokenizer's vocabulary")
      self._ids[kind] = token_id
    self._config = config
    self._add_special_tokens = add_special_tokens
    self._skip_special_tokens = skip_special_tokens
    zero = self._tokenizer.id_to_token(0)
    if zero is not None and 0 not in self._special_ids():
      logging.warning("%s: id 0 is the text token %r, which SeqIO treats as padding", self._path, zero)
    if self.eos_id == seqio.PAD_ID:  # GPT-NeoX/Pythia: <|endoftext|> is id 0
      logging.warning("%s: the EOS token %r is id 0, which SeqIO treats as padding: trained "
                      "targets lose their EOS (packing drops it, unpacked batches give it no "
                      "loss), so the model does not learn to stop", self._path, zero)

  def default_special_ids(self, add_bos_token: bool | None = None) -> tuple[list[int], list[int]]:
    """(leading, trailing) ids transformers' tokenizer for this file adds to a text by
    default (`tokenizer(text)`), as lm-evaluation-harness encodes; `add_bos_token` is
    lm-eval's override (given to `from_pretrained`, then as `add_special_tokens`)."""
    return _special_template(self._path, add_bos_token)

  def _special_ids(self) -> set[int]:
    return {i for i in self._ids.values() if i is not None} | {
        i for i, tok in self._tokenizer.get_added_tokens_decoder().items() if tok.special}

  @property
  def tokenizer(self) -> tokenizers.Tokenizer:
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
    return self._tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str) -> list[int]:
    return self._tokenizer.encode(s, add_special_tokens=self._add_special_tokens).ids

  def _decode(self, ids) -> str:
    ids = [int(i) for i in ids]
    while ids and ids[-1] == seqio.PAD_ID and seqio.PAD_ID != self.eos_id:
      ids.pop()
    return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special_tokens)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Scalar string -> [n] int32; a batch [B] of strings -> ragged [B, None]."""
    def encode_flat(strings):
      encodings = self._tokenizer.encode_batch(
          [x.decode("utf-8") for x in strings.numpy().reshape(-1)],
          add_special_tokens=self._add_special_tokens)
      values = [i for e in encodings for i in e.ids]
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
