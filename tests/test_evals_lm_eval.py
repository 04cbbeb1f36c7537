"""Benchmark requests and scores equal lm-evaluation-harness 0.4.13's, run side by side.

lm-eval's own task yamls and prompt functions (copied from the installed package, only
pointed at local files: `dataset_path: json`, `dataset_kwargs.data_files`) score tiny
random Hugging Face models through its `HFLM`; linguamix scores the same weights (imported)
with the same tokenizer through `runner.evaluate`. Compared per request: the token ids
lm-eval builds (captured from its `_loglikelihood_tokens`) with the ones linguamix feeds
(its start slot + inputs, targets), every per-choice log-likelihood (within 1e-3), every
acc / acc_norm prediction, each task's acc and acc_stderr and the group's weighted score.

Tokenizers (byte-level BPE trained here): Llama-style (prepends `<s>`), BLOOM-style (has
`<s>` but adds nothing: an empty context gets `<s>` as its prefix token) and T5-style for
a seq2seq model (appends `</s>`, no BOS: the empty-context prefix is `</s>`). A PAWS-X row
whose first sentence starts with `<s>` exercises lm-eval's rule that a continuation whose
first token is the prefix token lends it to the context. Data: the real XCOPA test files
(first LIMIT per language), small PAWS-X / XNLI files in their release layouts (TSV for
linguamix, the Hugging Face dataset fields as JSON lines for lm-eval, same rows).
The legacy PAWS-X template has no yaml in lm-eval 0.4.13: its v0.4.0–v0.4.5 one (choices
[Yes, No], delimiter " ", raw sentences; spec/evals.md) is written here on the same
template file.
"""

import json
import pathlib
import re
import shutil

import gin
import jax
import numpy as np
import pytest
import seqio
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import lm_eval
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

import linguamix.evals  # noqa: F401  (registers the tasks)
from linguamix.evals import paws_x, requests, runner, xnli
from linguamix.models import decoder, encoder_decoder, hf_decoder, hf_vocabulary, mt5
from linguamix.models.checkpoints import hf_mt5, layout
from evals_helpers import write_tsv
from test_evals_benchmarks import XNLI_HEADER, _xnli_row

LIMIT = 30  # XCOPA examples per language (of 500)
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
TASKS_DIR = pathlib.Path(lm_eval.__file__).parent / "tasks"

PAWS_ROWS = [  # (sentence1, sentence2, label), PTB-tokenised as in the release
    ("He left , then came back .", "He came back .", 1),
    ("The film was released in 1999 ; it won awards .", "It won awards , the film .", 0),
    ("`` Why '' , she asked ( twice ) .", "She did n't ask .", 0),
    ("<s>Tokens like this start a sentence .", "Nothing else .", 1),  # first token = prefix
    ("NS", "A placeholder row .", 1),
    ("Paris is in France .", "Paris is French .", 1),
]
XNLI_ROWS = [("entailment", "Es regnet.", "Es ist nass."),
             ("neutral", "Ein Mann geht.", "Er geht nach Hause."),
             ("contradiction", "Die Katze schläft.", "Die Katze rennt."),
             ("entailment", "Kinder spielen.", "Jemand spielt.")]


# ------------------------------------------------------------------ data, both layouts


@pytest.fixture(scope="module")
def data(tmp_path_factory, real_data):
  root = tmp_path_factory.mktemp("lm_eval_data")
  shutil.copytree(real_data / "xcopa", root / "xcopa")
  lm_files = {}
  for lang in paws_x.WORDS:
    rows = [[i + 1, s1, s2, label] for i, (s1, s2, label) in enumerate(PAWS_ROWS)]
    write_tsv(root / "paws_x" / lang / "test_2k.tsv", ["id", "sentence1", "sentence2", "label"], rows)
    lm_files[f"paws_{lang}"] = _jsonl(root / "lm" / f"paws_{lang}.jsonl", [
        {"id": i, "sentence1": s1, "sentence2": s2, "label": label} for i, s1, s2, label in rows])
  tsv_rows, pair = [], 0
  for lang in xnli.WORDS:
    rows = []
    for gold, premise, hypothesis in XNLI_ROWS:
      premise, hypothesis = f"{premise} ({lang})", f"{hypothesis} [{lang}]"
      tsv_rows.append(_xnli_row(lang, gold, premise, hypothesis, pair))
      rows.append({"premise": premise, "hypothesis": hypothesis, "label": xnli.LABELS.index(gold)})
      pair += 1
    lm_files[f"xnli_{lang}"] = _jsonl(root / "lm" / f"xnli_{lang}.jsonl", rows)
  write_tsv(root / "xnli" / "xnli.dev.tsv", XNLI_HEADER, tsv_rows)
  for lang in XCOPA_LANGS:
    lm_files[f"xcopa_{lang}"] = str(root / "xcopa" / lang / f"test.{lang}.jsonl")
  return root, lm_files


def _jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
  return str(path)


def _point_at(text: str, task: str, data_file: str) -> str:
  """An lm-eval yaml read from a local JSON-lines file: every split is that file. Also
  lists `acc_norm` among its metrics (lm-eval computes it per doc from the same
  log-likelihoods), so its predictions can be compared too."""
  text = text.replace("metric_list:\n", "metric_list:\n  - metric: acc_norm\n")
  text = re.sub(r"^dataset_path: .*$", "dataset_path: json", text, flags=re.M)
  text = re.sub(r"^dataset_name: .*$", "dataset_name: null", text, flags=re.M)
  text = re.sub(r"^task: (\w+)$", r"task: lmx_\1", text, flags=re.M)
  files = json.dumps({"train": data_file, "validation": data_file, "test": data_file})
  return text + f"dataset_kwargs:\n  data_files: {files}\n"


@pytest.fixture(scope="module")
def lm_tasks(tmp_path_factory, data):
  """lm-eval's xcopa, paws-x and xnli task folders, renamed `lmx_*`, on local files."""
  _, files = data
  out = tmp_path_factory.mktemp("lm_eval_tasks")
  for folder, group in (("xcopa", "_xcopa.yaml"), ("paws-x", "_pawsx.yaml"), ("xnli", "_xnli.yaml")):
    dest = out / folder
    shutil.copytree(TASKS_DIR / folder, dest, ignore=shutil.ignore_patterns("*.yaml", "__pycache__"))
    for template in dest.glob("*_yaml"):  # the files the task yamls include
      text = re.sub(r"^dataset_path: .*$", "dataset_path: json", template.read_text(encoding="utf-8"),
                    flags=re.M)
      template.write_text(text.replace("metric_list:\n", "metric_list:\n  - metric: acc_norm\n"),
                          encoding="utf-8")
    for path in (TASKS_DIR / folder).glob("*.yaml"):
      text = path.read_text(encoding="utf-8")
      if path.name == group:
        text = re.sub(r"^(\s+- )(\w+)$", r"\1lmx_\2", text, flags=re.M)
        (dest / path.name).write_text(re.sub(r"^group: (\w+)$", r"group: lmx_\1", text, flags=re.M))
      else:
        task = re.search(r"^task: (\w+)$", text, flags=re.M).group(1)
        (dest / path.name).write_text(_point_at(text, task, files[task]), encoding="utf-8")
  for lang, (question, yes, no) in paws_x.WORDS.items():  # the v0.4.0-v0.4.5 template
    (out / "paws-x" / f"legacy_{lang}.yaml").write_text(_point_at(
        f"include: pawsx_template_yaml\ntask: paws_legacy_{lang}\ndoc_to_text: ''\n"
        f"target_delimiter: ' '\n"
        f"doc_to_choice: '{{{{[sentence1+\", {question.replace(chr(39), chr(39) * 2)}? {yes}, \"+sentence2, "
        f"sentence1+\", {question.replace(chr(39), chr(39) * 2)}? {no}, \"+sentence2]}}}}'\n",
        "", files[f"paws_{lang}"]), encoding="utf-8")
  return str(out)


# ------------------------------------------------------------------ tokenizers, models


def _corpus(data):
  root, _ = data
  for path in sorted((root / "xcopa").glob("*/test.*.jsonl")):
    for line in path.read_text("utf-8").splitlines():
      row = json.loads(line)
      yield " ".join([row["premise"], row["choice1"], row["choice2"]])
  for s1, s2, _ in PAWS_ROWS:
    yield f"{s1} {s2}"
  for lang, words in {**xnli.WORDS}.items():
    yield " ".join(words) + " " + " ".join(" ".join(r[1:]) for r in XNLI_ROWS)
  for words in paws_x.WORDS.values():
    yield " ".join(words)


def _tokenizer(directory, data, template: str | None, specials, config):
  tok = Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(_corpus(data), trainers.BpeTrainer(
      vocab_size=700, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  if template:
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tok.token_to_id(t)) for t in specials if t in template])
  directory.mkdir(parents=True, exist_ok=True)
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "PreTrainedTokenizerFast", **config}))
  return tok.get_vocab_size()


def _randomize(model, scale=0.3):
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * scale)
  return model


def _causal(directory, data, kind):
  if kind == "llama_bos":
    n = _tokenizer(directory, data, "<s> $A", ["<unk>", "<s>", "</s>"],
                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    config = transformers.LlamaConfig(
        vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=1024, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config)
  else:  # BLOOM-style: <s> exists, is not added
    n = _tokenizer(directory, data, None, ["<unk>", "<s>", "</s>", "<pad>"],
                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    config = transformers.BloomConfig(vocab_size=n, hidden_size=32, n_layer=2, n_head=4,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = transformers.BloomForCausalLM(config)
  _randomize(model.eval()).save_pretrained(directory)
  _, cfg, params = hf_decoder.load_hf(directory)
  # Built as a user would, without choosing a start token: the eval derives it.
  return decoder.DecoderOnlyModel(cfg, hf_vocabulary.HfTokenizerVocabulary(str(directory))), params


def _seq2seq(directory, data):
  n = _tokenizer(directory, data, "$A </s>", ["<pad>", "</s>", "<unk>"],
                 {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
  config = transformers.MT5Config(
      vocab_size=n, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
      relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0,
      pad_token_id=0, eos_token_id=1)
  model = _randomize(transformers.MT5ForConditionalGeneration(config).eval(), scale=0.5)
  model.save_pretrained(directory)
  flat, cfg = hf_mt5.load(str(directory))
  cfg = mt5.MT5Config(**{**cfg.__dict__, "dtype": "float32"})
  ours = encoder_decoder.EncoderDecoderModel(cfg, hf_vocabulary.HfTokenizerVocabulary(str(directory)))
  return ours, layout.unflatten({k: jax.numpy.asarray(v) for k, v in flat.items()})


# ------------------------------------------------------------------ running both


def _run_lm_eval(directory, tasks, lm_tasks):
  lm = HFLM(pretrained=str(directory), batch_size=16, device="cpu", dtype="float32")
  captured = {}
  original = lm._loglikelihood_tokens

  def spy(reqs, **kwargs):
    for (context, continuation), context_enc, continuation_enc in reqs:
      captured[(context, continuation)] = (list(context_enc), list(continuation_enc))
    return original(reqs, **kwargs)
  lm._loglikelihood_tokens = spy
  out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=TaskManager(include_path=lm_tasks),
                                limit=LIMIT, log_samples=True)
  return out, captured


def _moved(context, continuation):
  spaces = len(context) - len(context.rstrip())
  return (context[:-spaces], context[-spaces:] + continuation) if spaces else (context, continuation)


def _compare(model, params, ours_tasks, lm_out, captured, out_dir, fmt, num_choices):
  """Per task: ids, per-choice log-likelihoods, predictions, acc and its stderr."""
  results = runner.evaluate(model, params, list(ours_tasks), str(out_dir),
                            num_examples=LIMIT * num_choices)
  slot = [model.vocabulary.bos_id] if fmt.start_is_bos else []
  for ours, theirs in ours_tasks.items():
    with requests.using(fmt):
      rows = list(seqio.get_mixture_or_task(ours).get_dataset(None, "default", shuffle=False)
                  .take(LIMIT * num_choices).as_numpy_iterator())
    fed = {(r["inputs_pretokenized"].decode(), r["targets_pretokenized"].decode()):
           (slot + r["inputs"].tolist(), r["targets"].tolist()) for r in rows}
    samples = sorted(lm_out["samples"][theirs], key=lambda s: s["doc_id"])
    lines = [json.loads(l) for l in (out_dir / "scores" / f"{ours}.jsonl").read_text().splitlines()]
    assert len(lines) == len(samples) > 0, ours
    for line, sample in zip(lines, samples):
      for choice, (args, resp) in zip(line["choices"], zip(sample["arguments"], sample["resps"])):
        key = _moved(*args)
        assert (choice["inputs"], choice["targets"]) == key, (ours, sample["doc_id"])
        assert fed[key] == captured[args], (ours, key)  # the very ids lm-eval scores
        np.testing.assert_allclose(choice["score"], float(resp[0][0]), atol=1e-3, rtol=0)
      assert line["correct"] == bool(sample["acc"]), (ours, sample["doc_id"])
      assert (line["pred_norm"] == line["label"]) == bool(sample["acc_norm"]), (ours, sample["doc_id"])
    want = lm_out["results"][theirs]
    np.testing.assert_allclose(results[ours]["acc"], 100 * want["acc,none"], atol=1e-9)
    np.testing.assert_allclose(results[ours]["acc_norm"], 100 * want["acc_norm,none"], atol=1e-9)
    np.testing.assert_allclose(results[ours]["acc_stderr"], 100 * want["acc_stderr,none"], atol=1e-9)
  return results


@pytest.fixture
def bound_vocabulary():
  """The tasks' vocabulary bound to the model's tokenizer, as a model gin binds it."""
  def bind(vocabulary):
    with gin.unlock_config():
      gin.bind_parameter("linguamix.t5x_tasks.task_vocabulary.vocabulary", vocabulary)
  yield bind
  bind(None)


def _tasks(languages_xcopa):
  xcopa_tasks = {f"xcopa.{l}": f"lmx_xcopa_{l}" for l in languages_xcopa}
  paws = {f"paws_x.{l}": f"lmx_paws_{l}" for l in paws_x.WORDS}
  legacy = {f"paws_x_legacy.{l}": f"lmx_paws_legacy_{l}" for l in paws_x.WORDS}
  xnli_tasks = {f"xnli.{l}": f"lmx_xnli_{l}" for l in xnli.WORDS}
  return xcopa_tasks, paws, legacy, xnli_tasks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama_bos", "bloom_nobos"])
def test_causal_lm_matches_lm_eval(kind, data, lm_tasks, tmp_path, monkeypatch, bound_vocabulary):
  root, _ = data
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  model, params = _causal(tmp_path / "hf", data, kind)
  bound_vocabulary(model.vocabulary)
  _, fmt = requests.for_model(model)
  assert fmt.start_is_bos == (kind == "llama_bos")  # derived from the tokenizer alone
  xcopa_tasks, paws, legacy, xnli_tasks = _tasks(XCOPA_LANGS)
  lm_out, captured = _run_lm_eval(tmp_path / "hf", ["lmx_xcopa", *paws.values(), *legacy.values(),
                                                    "lmx_xnli"], lm_tasks)
  prefixed = [k for k in captured if k[0] == "" and k[1].startswith("<s>")]
  assert prefixed and all(captured[k][0] == [1] and captured[k][1][:1] != [1] for k in prefixed)
  _compare(model, params, xcopa_tasks, lm_out, captured, tmp_path / "xcopa", fmt, 2)
  _compare(model, params, {**paws, **legacy}, lm_out, captured, tmp_path / "paws", fmt, 2)
  _compare(model, params, xnli_tasks, lm_out, captured, tmp_path / "xnli", fmt, 3)
  # The group score: lm-eval weights languages by size, its stderr pooled.
  summary = json.loads((tmp_path / "xcopa" / "summary.json").read_text())
  group = next(r for r in summary if r["language"] == "avg_weighted" and r["metric"] == "acc")
  np.testing.assert_allclose(group["value"], 100 * lm_out["results"]["lmx_xcopa"]["acc,none"], atol=1e-9)
  np.testing.assert_allclose(group["stderr"], 100 * lm_out["results"]["lmx_xcopa"]["acc_stderr,none"],
                             atol=1e-9)
  record = json.loads((tmp_path / "xcopa" / "metrics" / "xcopa.et.json").read_text())
  assert record["requests"]["lm_eval_version"] == lm_eval.__version__ == "0.4.13"


@pytest.mark.slow
def test_seq2seq_matches_lm_eval(data, lm_tasks, tmp_path, monkeypatch, bound_vocabulary):
  """mT5-style: the context with the tokenizer's EOS on the encoder, the continuation
  encoded alone on the decoder; an empty context is `</s>`."""
  root, _ = data
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  model, params = _seq2seq(tmp_path / "hf", data)
  bound_vocabulary(model.vocabulary)
  _, fmt = requests.for_model(model)
  assert fmt.backend == "seq2seq"
  xcopa_tasks, paws, _, xnli_tasks = _tasks(("et", "zh"))
  lm_out, captured = _run_lm_eval(tmp_path / "hf", [*xcopa_tasks.values(), *paws.values(),
                                                    *xnli_tasks.values()], lm_tasks)
  assert all(ctx_ids[-1] == 1 for ctx_ids, _ in captured.values())  # EOS ends every context
  _compare(model, params, xcopa_tasks, lm_out, captured, tmp_path / "xcopa", fmt, 2)
  _compare(model, params, paws, lm_out, captured, tmp_path / "paws", fmt, 2)
  _compare(model, params, xnli_tasks, lm_out, captured, tmp_path / "xnli", fmt, 3)
