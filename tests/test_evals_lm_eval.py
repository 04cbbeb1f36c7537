"""Benchmark requests and scores equal lm-evaluation-harness 0.4.13's, run side by side.

lm-eval's own task yamls and prompt functions (copied from the installed package, only
pointed at local files: `dataset_path: json`, `dataset_kwargs.data_files`) score tiny
random Hugging Face models through its `HFLM`; linguamix scores the same weights (imported)
with the same tokenizer through `runner.evaluate`. Compared per request: the token ids
lm-eval builds (captured from its `_loglikelihood_tokens`) with the ones linguamix feeds
(its start slot + inputs, targets), every per-choice log-likelihood (within 1e-3), every
acc / acc_norm prediction, each task's acc and acc_stderr and the group's weighted score.

Tokenizers (byte-level BPE trained here): Llama-style (prepends `<s>`), BLOOM-style (has
`<s>` but adds nothing: an empty context gets `<s>` as its prefix token), Qwen2-style (id 0
is the text token `!`, no BOS, `<|endoftext|>` last: the empty-context prefix is that EOS;
its model has no spare embedding row, so the moved `!` takes an appended one) and T5-style
for a seq2seq model (appends `</s>`, no BOS: the empty-context prefix is `</s>`). PAWS-X
rows whose first sentence starts with `<s>` / `<|endoftext|>` exercise lm-eval's rule that a
continuation whose first token is the prefix token lends it to the context. Data: the
real XCOPA test files (first LIMIT per language), small PAWS-X / XNLI / XStoryCloze /
XWinograd / Belebele files in their release layouts (TSV or JSON lines for linguamix, the
Hugging Face dataset fields as JSON lines for lm-eval, same rows) holding the edge cases:
`!` (id 0 of the Qwen2-style tokenizer) in contexts and continuations, spaces around
fields (moved between context and continuation; Belebele's question stripped), non-Latin
scripts, U+2028 inside a field, and XNLI / PAWS-X's empty contexts.
The legacy PAWS-X template has no yaml in lm-eval 0.4.13: its v0.4.0–v0.4.5 one (choices
[Yes, No], delimiter " ", raw sentences) is written here on the same
template file.
"""

import json
import shutil

import gin
import jax
import numpy as np
import pytest
from safetensors.numpy import save_file
import torch
import transformers

import lm_eval

import linguamix.evals  # noqa: F401  (registers the tasks)
from linguamix.evals import paws_x, registry, requests, runner, xnli, xwinograd
from linguamix.models import decoder, encoder_decoder, hf_vocabulary, mt5
from linguamix.models.hf import decoder_io
from linguamix.models.checkpoint_formats import hf_mt5, layout
from evals_helpers import write_tsv
import lm_eval_helpers
from test_evals_benchmarks import XNLI_HEADER, _xnli_row

LIMIT = 20  # XCOPA examples per language (of 500)
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")

PAWS_ROWS = [  # (sentence1, sentence2, label), PTB-tokenised as in the release
    ("He left , then came back .", "He came back .", 1),
    ("The film was released in 1999 ; it won awards .", "It won awards , the film .", 0),
    ("`` Why '' , she asked ( twice ) .", "She did n't ask .", 0),
    ("<s>Tokens like this start a sentence .", "Nothing else .", 1),  # first token = prefix
    ("NS", "A placeholder row .", 1),
    ("Paris is in France .", "Paris is French .", 1),
    ("<|endoftext|>Starts with the EOS !", "Ends with it !", 0),  # Qwen2-style prefix token
    ("Stop ! Who goes there ?", "! Nobody .", 1),
]
XNLI_ROWS = [("entailment", "Es regnet!", "Es ist nass!"),
             ("neutral", "Ein Mann geht.", "Er geht nach Hause!"),
             ("contradiction", "Die Katze schläft.", "Die Katze rennt."),
             ("entailment", "Kinder spielen.", "Jemand spielt.")]

# XStoryCloze / XWinograd / Belebele rows, each benchmark in two languages (one non-Latin).
STORIES = {  # (four sentences, two endings, right ending 1 | 2)
    "sw": [(("Ali alienda sokoni.", "Alinunua ndizi!", "Mama yake alifurahi.", "Niliita jina lake! "),
            (" Alikula ndizi zote!", "Alilala."), 1),
           (("  Mvua ilinyesha.", "Tulikaa ndani.", "Tulicheza michezo!", "Ilikuwa siku nzuri."),
            ("Tulihuzunika!", "Tulifurahi sana!"), 2),
           (("Juma alipika chakula.", "Chakula kilikuwa kitamu.", "Wageni walikuja!", "Walikula."),
            ("Walishukuru!", "Waliondoka na njaa."), 1)],
    "ru": [(("Иван пошёл в магазин.", "Он купил хлеб!", "Дома его ждала мама.", "Она обрадовалась."),
            ("Они пообедали!", "Хлеб улетел в космос."), 1),
           (("Шёл дождь.", "Мы остались дома! ", "Мы играли в игры.", "Было весело!"),
            (" Мы грустили.", "Мы смеялись!"), 2)],
}
WINOGRAD = {  # release code -> (sentence with `_`, option1, option2, answer)
    "en": [("The trophy doesn't fit into the suitcase because _ is too small!", "the trophy",
            "the suitcase", "2"),
           ("_ won the race, so Tom was happy!", "Tom", "Mary", "1"),
           ("Anna thanked Lisa because _ had helped her a lot .", "Anna", "Lisa", "2")],
    "jp": [("花子は太郎にお礼を言った、なぜなら_が手伝ってくれたから!", "花子", "太郎", "2"),
           ("机の上の本が落ちた、_が傾いていたから。", "机", "本", "1")],
}
BELEBELE = {  # variant -> (passage, question, four answers, correct 1..4)
    "eng_Latn": [("The dog barked all night! Nobody slept.", " Who barked? ",
                  ("The cat", "The dog", "Nobody", "A bird"), "2"),
                 ("Rain fell\u2028on Monday. On Tuesday the sun shone!", "When did the sun shine?",
                  ("Monday", " Tuesday", "Never!", "Sunday"), "2")],
    "hin_Deva": [("कुत्ता पूरी रात भौंका! कोई नहीं सोया।", "कौन भौंका? ",
                  ("बिल्ली", "कुत्ता", "कोई नहीं", "चिड़िया"), "2"),
                 ("सोमवार को बारिश हुई। मंगलवार को धूप निकली!", " धूप कब निकली?",
                  ("सोमवार", "मंगलवार", "कभी नहीं!", "रविवार"), "2")],
}
STORY_HEADER = ["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
                "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding"]


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
  for lang, stories in STORIES.items():
    rows = [[f"story{i}", *sentences, *endings, right] for i, (sentences, endings, right) in enumerate(stories)]
    write_tsv(root / "xstory_cloze" / lang / f"spring2016.val.{lang}.tsv.split_20_80_eval.tsv", STORY_HEADER, rows)
    lm_files[f"xstorycloze_{lang}"] = _jsonl(root / "lm" / f"xstorycloze_{lang}.jsonl", [  # HF fields
        {"story_id": r[0], **{f"input_sentence_{i}": r[i] for i in range(1, 5)},
         "sentence_quiz1": r[5], "sentence_quiz2": r[6], "answer_right_ending": r[7]} for r in rows])
  for code, items in WINOGRAD.items():  # the release's fields are the HF dataset's
    lm_files[f"xwinograd_{code}"] = _jsonl(root / "xwinograd" / code / "test.jsonl", [
        {"sentence": t, "option1": a, "option2": b, "answer": answer} for t, a, b, answer in items])
  for variant, items in BELEBELE.items():
    lm_files[f"belebele_{variant}"] = _jsonl(root / "belebele" / f"{variant}.jsonl", [
        {"flores_passage": passage, "question": question, "correct_answer_num": correct,
         **{f"mc_answer{i + 1}": a for i, a in enumerate(answers)}}
        for passage, question, answers, correct in items])
  return root, lm_files


def _jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def lm_tasks(tmp_path_factory, data):
  """lm-eval's xcopa, paws-x and xnli task folders, renamed `lmx_*`, on local files."""
  _, files = data
  out = tmp_path_factory.mktemp("lm_eval_tasks")
  lm_eval_helpers.copy_tasks(out, files, lm_eval_helpers.FOLDERS + lm_eval_helpers.MORE_FOLDERS)
  for lang, (question, yes, no) in paws_x.WORDS.items():  # the v0.4.0-v0.4.5 template
    (out / "paws-x" / f"legacy_{lang}.yaml").write_text(lm_eval_helpers.point_at(
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
  for stories in STORIES.values():
    for sentences, endings, _ in stories:
      yield " ".join(sentences + endings)
  for items in WINOGRAD.values():
    for item in items:
      yield " ".join(item)
  for items in BELEBELE.values():
    for passage, question, answers, _ in items:
      yield " ".join([passage, question, *answers, "Answer: A B C D"])


def _randomize(model, scale=0.3):
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * scale)
  return model


def _causal(directory, data, kind):
  if kind == "llama_bos":
    n = lm_eval_helpers.train_tokenizer(directory, _corpus(data), "<s> $A", ["<unk>", "<s>", "</s>"],
                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    config = transformers.LlamaConfig(
        vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=1024, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config)
  elif kind == "qwen_zero":  # Qwen2-style: `!` is id 0, `<|endoftext|>` (EOS) the last id
    n = lm_eval_helpers.train_tokenizer(directory, _corpus(data), None, [],
                                        {"bos_token": None, "eos_token": "<|endoftext|>",
                                         "pad_token": "<|endoftext|>"}, added=["<|endoftext|>"])
    config = transformers.Qwen2Config(
        vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=1024, bos_token_id=None, eos_token_id=n - 1,
        tie_word_embeddings=True)
    model = transformers.Qwen2ForCausalLM(config)
  else:  # BLOOM-style: <s> exists, is not added
    n = lm_eval_helpers.train_tokenizer(directory, _corpus(data), None, ["<unk>", "<s>", "</s>", "<pad>"],
                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    config = transformers.BloomConfig(vocab_size=n, hidden_size=32, n_layer=2, n_head=4,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = transformers.BloomForCausalLM(config)
  _randomize(model.eval()).save_pretrained(directory)
  _, cfg, params = decoder_io.load_hf(directory)
  # Built as a user would, without choosing a start token: the eval derives it.
  return decoder.DecoderOnlyModel(cfg, hf_vocabulary.HfTokenizerVocabulary(str(directory))), params


def _seq2seq(directory, data):
  n = lm_eval_helpers.train_tokenizer(directory, _corpus(data), "$A </s>", ["<pad>", "</s>", "<unk>"],
                 {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
  config = transformers.MT5Config(
      vocab_size=n, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
      relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0,
      pad_token_id=0, eos_token_id=1)
  model = _randomize(transformers.MT5ForConditionalGeneration(config).eval(), scale=0.5)
  # lm-eval's HFLM calls `model.tie_weights()`, which in transformers 5 ties mT5's lm_head
  # to the embedding whatever the config says (a real mT5 checkpoint's own lm_head would be
  # replaced there). So the checkpoint holds an lm_head equal to the embedding: the model
  # both tools then score.
  state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  state["lm_head.weight"] = state["shared.weight"].copy()
  save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
  config.architectures = ["MT5ForConditionalGeneration"]
  config.save_pretrained(directory)
  flat, cfg = hf_mt5.load(str(directory))
  cfg = mt5.MT5Config(**{**cfg.__dict__, "dtype": "float32"})
  ours = encoder_decoder.EncoderDecoderModel(cfg, hf_vocabulary.HfTokenizerVocabulary(str(directory)))
  return ours, layout.unflatten({k: jax.numpy.asarray(v) for k, v in flat.items()})


# ------------------------------------------------------------------ running both


def _moved(context, continuation):
  spaces = len(context) - len(context.rstrip())
  return (context[:-spaces], context[-spaces:] + continuation) if spaces else (context, continuation)


def _compare(model, params, ours_tasks, lm_out, captured, out_dir, fmt, num_choices):
  """Per task: ids, per-choice log-likelihoods, predictions, acc and its stderr."""
  results = runner.evaluate(model, params, list(ours_tasks), str(out_dir),
                            num_examples=LIMIT * num_choices)
  slot = [model.vocabulary.bos_id] if fmt.start_is_bos else []
  hf_ids = getattr(model.vocabulary, "hf_ids", list)  # lm-eval's ids are the tokenizer's
  for ours, theirs in ours_tasks.items():
    rows = list(registry.rank_task(ours, fmt).get_dataset(None, "default", shuffle=False)
                .take(LIMIT * num_choices).as_numpy_iterator())
    fed = {(r["inputs_pretokenized"].decode(), r["targets_pretokenized"].decode()):
           (hf_ids(slot + r["inputs"].tolist()), hf_ids(r["targets"].tolist())) for r in rows}
    samples = sorted(lm_out["samples"][theirs], key=lambda s: s["doc_id"])
    lines = [json.loads(l) for l in (out_dir / "scores" / f"{ours}.jsonl").read_text().split("\n") if l]
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


def _more_tasks():
  """XStoryCloze, XWinograd and Belebele: ours -> lm-eval's (renamed) task, choices."""
  stories = {f"xstorycloze.{l}": f"lmx_xstorycloze_{l}" for l in STORIES}
  codes = {code: lang for lang, code in xwinograd.RELEASE_CODES.items()}
  winograd = {f"xwinograd.{codes[c]}": f"lmx_xwinograd_{c}" for c in WINOGRAD}
  bele = {f"belebele.{v}": f"lmx_belebele_{v}" for v in BELEBELE}
  return (stories, 2), (winograd, 2), (bele, 4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama_bos", "bloom_nobos", "qwen_zero"])
def test_causal_lm_matches_lm_eval(kind, data, lm_tasks, tmp_path, monkeypatch, bound_vocabulary):
  """All six benchmarks, each tokenizer kind: one lm-eval run, linguamix's per benchmark."""
  root, _ = data
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  model, params = _causal(tmp_path / "hf", data, kind)
  bound_vocabulary(model.vocabulary)
  _, fmt = requests.for_model(model)
  assert fmt.start_is_bos == (kind == "llama_bos")  # derived from the tokenizer alone
  # the Qwen2-style tokenizer's `!` (id 0) moved, to a row appended to the full embedding
  assert (model.vocabulary.moved_zero_id is not None) == model.config.mask_row_zero == (kind == "qwen_zero")
  xcopa_tasks, paws, legacy, xnli_tasks = _tasks(XCOPA_LANGS)
  more = _more_tasks()
  lm_out, captured, _ = lm_eval_helpers.run(
      tmp_path / "hf", ["lmx_xcopa", *paws.values(), *legacy.values(), "lmx_xnli",
                        *[t for tasks, _ in more for t in tasks.values()]], lm_tasks, LIMIT)
  # lm-eval's rule: a continuation starting with the prefix token lends it to the context
  prefix_text = "<|endoftext|>" if kind == "qwen_zero" else "<s>"
  prefix = [model.vocabulary.tokenizer.token_to_id(prefix_text)]
  prefixed = [k for k in captured if k[0] == "" and k[1].startswith(prefix_text)]
  assert prefixed and all(captured[k][0] == prefix and captured[k][1][:1] != prefix for k in prefixed)
  if kind == "qwen_zero":  # `!` is scored in contexts and in continuations
    assert sum(0 in ctx for ctx, _ in captured.values()) > 10
    assert sum(0 in cont for _, cont in captured.values()) > 10
  _compare(model, params, xcopa_tasks, lm_out, captured, tmp_path / "xcopa", fmt, 2)
  _compare(model, params, {**paws, **legacy}, lm_out, captured, tmp_path / "paws", fmt, 2)
  _compare(model, params, xnli_tasks, lm_out, captured, tmp_path / "xnli", fmt, 3)
  for i, (tasks, num_choices) in enumerate(more):
    _compare(model, params, tasks, lm_out, captured, tmp_path / f"more{i}", fmt, num_choices)
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
  lm_out, captured, _ = lm_eval_helpers.run(tmp_path / "hf", [*xcopa_tasks.values(), *paws.values(),
                                                    *xnli_tasks.values()], lm_tasks, LIMIT)
  assert all(ctx_ids[-1] == 1 for ctx_ids, _ in captured.values())  # EOS ends every context
  _compare(model, params, xcopa_tasks, lm_out, captured, tmp_path / "xcopa", fmt, 2)
  _compare(model, params, paws, lm_out, captured, tmp_path / "paws", fmt, 2)
  _compare(model, params, xnli_tasks, lm_out, captured, tmp_path / "xnli", fmt, 3)
