"""Request token ids equal the ones lm-evaluation-harness 0.4.13's HFLM builds, for every
tokenizer template and `add_bos_token` setting (captured from HFLM itself, no scoring)."""

import json

import pytest
import torch
import transformers
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from linguamix.evals import requests
from linguamix.models import decoder, hf_vocabulary
import lm_eval_helpers

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs springt.",
         "<s>Tokens like this.", "Mbweha mwepesi wa kahawia anaruka.", "敏捷的棕色狐狸跳过了懒狗。"] * 4
PAIRS = [("The quick brown", " fox jumps."), ("Der schnelle  ", "braune Fuchs"), ("", " Mbweha mwepesi"),
         ("", "<s>Tokens like this."), ("<s>Tokens", " like this."), ("   ", "x"), ("敏捷的", "棕色狐狸")]
# name -> (post-processor template, special tokens, tokenizer_config, seq2seq)
TOKENIZERS = {
    "llama_template": ("<s> $A", ["<unk>", "<s>", "</s>"], {"bos_token": "<s>", "eos_token": "</s>"}, False),
    "bloom_plain": (None, ["<unk>", "<s>", "</s>", "<pad>"],
                    {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}, False),
    "gpt2_no_bos": (None, ["<|endoftext|>"], {"eos_token": "<|endoftext|>"}, False),
    "config_add_bos": (None, ["<unk>", "<s>", "</s>"],
                       {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}, False),
    "t5_eos": ("$A </s>", ["<pad>", "</s>", "<unk>"], {"eos_token": "</s>", "pad_token": "<pad>"}, True),
}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def model_dir(request, tmp_path_factory):
  template, specials, config, seq2seq = TOKENIZERS[request.param]
  directory = tmp_path_factory.mktemp(request.param)
  n = lm_eval_helpers.train_tokenizer(directory, TEXTS, template, specials, config, vocab_size=300)
  torch.manual_seed(0)
  if seq2seq:
    transformers.MT5ForConditionalGeneration(transformers.MT5Config(
        vocab_size=n, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).save_pretrained(directory)
  else:
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=n, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16)).save_pretrained(directory)
  return request.param, directory, seq2seq


def _lm_eval_ids(directory, add_bos_token):
  lm = HFLM(pretrained=str(directory), batch_size=1, device="cpu", add_bos_token=add_bos_token)
  captured = {}

  def capture(reqs, **kwargs):
    for args, context_enc, continuation_enc in reqs:
      captured[args] = (list(context_enc), list(continuation_enc))
    return [(0.0, False)] * len(reqs)
  lm._loglikelihood_tokens = capture
  lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(PAIRS)],
                   disable_tqdm=True)
  return captured, lm.backend


@pytest.mark.parametrize("add_bos_token", [None, True, False])
def test_request_ids_equal_lm_eval(model_dir, add_bos_token):
  name, directory, seq2seq = model_dir
  want, backend = _lm_eval_ids(directory, add_bos_token)
  assert backend == ("seq2seq" if seq2seq else "causal")
  vocab = hf_vocabulary.HfTokenizerVocabulary(str(directory))
  fmt = requests.Format(backend, add_bos_token, start_is_bos=False)  # every id in the request
  encode = requests.pair_encoder(vocab, fmt)
  # lm-eval's ids are the tokenizer's; the vocabulary's differ where id 0 is a token it moved
  # (here GPT-2-style: `<|endoftext|>` is id 0)
  hf = vocab.hf_ids
  assert (vocab.moved_zero_id is not None) == (name == "gpt2_no_bos")
  for pair in PAIRS:
    assert tuple(map(hf, encode(*pair))) == want[pair], (name, add_bos_token, pair)
  # The model's start slot: BOS exactly when lm-eval's non-empty contexts begin with BOS.
  bos = vocab.bos_id
  starts_bos = all(want[p][0][:1] == (hf([bos]) if bos is not None else [None]) for p in PAIRS if p[0].strip() and not p[0].startswith("<s>"))
  assert (requests.start_token(vocab, fmt) == "bos") == (starts_bos and bos is not None), name
  if not seq2seq:
    slot = requests.Format(backend, add_bos_token)  # the slot takes the BOS off the request
    stripped = requests.pair_encoder(vocab, slot)
    for pair in PAIRS:
      ctx, cont = stripped(*pair)
      prefix = [bos] if requests.start_token(vocab, slot) == "bos" else []
      assert (hf(prefix + ctx), hf(cont)) == want[pair], (name, add_bos_token, pair)


def test_eval_derives_the_start_token_the_gin_would_set(model_dir):
  """A decoder built without a start token scores with the one its tokenizer implies."""
  name, directory, seq2seq = model_dir
  if seq2seq:
    pytest.skip("encoder-decoder models have no start slot")
  vocab = hf_vocabulary.HfTokenizerVocabulary(str(directory))
  cfg = decoder.DecoderConfig(vocab_size=vocab.vocab_size, d_model=16, num_layers=1, num_heads=2,
                              mlp_dim=16)
  model, fmt = requests.for_model(decoder.DecoderOnlyModel(cfg, vocab))
  adds_bos = transformers.AutoTokenizer.from_pretrained(str(directory))("a")["input_ids"][0] == vocab.bos_id
  assert model.start_token == ("bos" if adds_bos else "none") and fmt.start_is_bos == adds_bos
  assert json.loads(json.dumps(fmt.record()))["lm_eval_version"] == "0.4.13"


def test_rank_task_builds_the_requests_of_the_format_it_is_given(monkeypatch):
  """The format is the task's argument: XCOPA's bundled rows as a seq2seq model gets them
  (mT5's template: the context ends with EOS) and as a causal one (the registered task)."""
  import seqio
  import linguamix.evals  # noqa: F401  (registers the benchmark tasks)
  from linguamix.evals import registry
  from linguamix.t5x_tasks import vocab
  monkeypatch.delenv("LINGUAMIX_EVAL_DATA_ROOT", raising=False)  # the bundled copy
  spm = vocab.VOCABULARY.resolved  # the sample SentencePiece model: no BOS, EOS = 1

  def rows(task):
    ds = task.get_dataset(None, "default", shuffle=False)
    return [(r["inputs"].tolist(), r["targets"].tolist(), r["inputs_pretokenized"].decode(),
             r["targets_pretokenized"].decode()) for r in ds.take(6).as_numpy_iterator()]

  causal = rows(registry.rank_task("xcopa.et", requests.Format("causal")))
  seq2seq = rows(registry.rank_task("xcopa.et", requests.Format("seq2seq")))
  assert rows(seqio.get_mixture_or_task("xcopa.et")) == causal
  for (c_in, c_tgt, context, choice), (s_in, s_tgt, _, _) in zip(causal, seq2seq):
    assert s_in == c_in + [spm.eos_id] and c_in[-1:] != [spm.eos_id]
    assert s_tgt == list(spm.encode(choice))  # the choice alone
    assert (c_in, c_tgt) == tuple(requests.pair_encoder(spm, requests.Format("causal"))(context, choice))
