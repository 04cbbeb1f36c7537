"""`linguamix prepare` against a loopback server playing the Hub (linguamix/testing/hub_server.py).

The served repositories are built here in the Hub's own layouts (parquet where the Hub
keeps parquet); what `prepare` writes is then read by the SeqIO tasks and benchmark
loaders themselves. Downloads are counted at the server.
"""

import gzip
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import seqio

from linguamix.testing.hub_server import FakeHub
from linguamix.cli import prepare as command

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TOKEN = "hf_secretTOKENvalue0123456789"


def parquet(rows) -> bytes:
  buf = io.BytesIO()
  pq.write_table(pa.Table.from_pylist(rows), buf)
  return buf.getvalue()


def jsonl(rows) -> bytes:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def bactrian_records(lang, n=40):
  return [{"id": f"alpaca-{i}", "instruction": f"{lang} instruction {i}",
           "input": "" if i % 2 else f"{lang} input {i}", "output": f"{lang} output {i}"}
          for i in range(n)]


def add_bactrian(hub, langs=("en", "de"), layout="data/{lang}.json.gz"):
  files = {layout.format(lang=l): gzip.compress(json.dumps(bactrian_records(l)).encode())
           for l in langs}
  files["README.md"] = b"---\nlicense: cc-by-nc-4.0\n---\n"
  hub.add("MBZUAI/Bactrian-X", files)
  return files


def run(argv, capsys):
  rc = command.main(argv)
  out = capsys.readouterr()
  return rc, out.out, out.err


# --- instruction data ---------------------------------------------------------------------

def test_data_end_to_end_into_the_tasks_and_a_second_run_fetches_nothing(hub, tmp_path, capsys,
                                                                         monkeypatch):
  files = add_bactrian(hub)
  root = tmp_path / "instruct"
  rc, out, err = run(["data", "bactrian_x", "--langs", "en", "de", "--root", str(root)], capsys)
  assert rc == 0, err
  assert (root / "bactrian_x/en.json.gz").read_bytes() == files["data/en.json.gz"]
  assert len(hub.downloads()) == 2
  assert "check (bactrian_x tasks' reader" in out
  # the registered SeqIO tasks read the root (held-out share by id hash, as documented)
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(root))
  import linguamix.t5x_tasks  # noqa: F401
  for lang in ("en", "de"):
    task = seqio.get_mixture_or_task(f"bactrian_x.{lang}")
    n = task.source.num_input_examples("train") + task.source.num_input_examples("validation")
    assert n == 40
    assert f"{lang} {task.source.num_input_examples('train')}/" in out

  before = list(hub.requests)
  rc, out, err = run(["data", "bactrian_x", "--langs", "en", "de", "--root", str(root)], capsys)
  assert rc == 0, err
  new = hub.requests[len(before):]
  assert "nothing downloaded: 2 of 2 outputs up to date" in out
  assert hub.downloads() == [p for m, p, _ in before if m == "GET" and ("/resolve/" in p or "/cdn/" in p)]
  assert [(m, p.split("/revision/")[0]) for m, p, _ in new] == [("GET", "/api/datasets/MBZUAI/Bactrian-X")]


def test_a_dropped_transfer_resumes_with_a_range_request(hub, tmp_path, capsys, monkeypatch):
  from huggingface_hub import constants
  # the client keeps what it received in whole chunks (10 MB by default; 64 B here)
  monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64)
  files = add_bactrian(hub, langs=("sw",))
  size = len(files["data/sw.json.gz"])
  hub.drop_once["data/sw.json.gz"] = size // 2
  root = tmp_path / "instruct"
  rc, out, err = run(["data", "bactrian_x", "--langs", "sw", "--root", str(root)], capsys)
  assert rc == 0, err
  assert (root / "bactrian_x/sw.json.gz").read_bytes() == files["data/sw.json.gz"]
  gets = [h for m, p, h in hub.requests if m == "GET" and p.startswith("/cdn/")]
  assert len(gets) == 2 and "range" not in gets[0]
  start = int(gets[1]["range"].removeprefix("bytes=").rstrip("-"))
  assert 0 < start <= size // 2  # only what was missing was asked for again


def test_a_killed_run_keeps_finished_outputs_and_the_cache(hub, tmp_path, capsys, monkeypatch):
  """A run that dies after the first output (here: the second file is cut off and never
  completes) keeps that output; the next run writes only the rest."""
  add_bactrian(hub)
  root = tmp_path / "instruct"
  hub.drop_once["data/en.json.gz"] = 10
  import huggingface_hub.file_download as fd
  real = fd.http_get

  def no_retry(*args, **kwargs):  # a process killed mid-file: no in-process retry
    kwargs["_nb_retries"] = 0
    return real(*args, **kwargs)

  monkeypatch.setattr(fd, "http_get", no_retry)
  rc, out, err = run(["data", "bactrian_x", "--langs", "de", "en", "--root", str(root)], capsys)
  monkeypatch.setattr(fd, "http_get", real)
  assert rc == 1 and "error: " in err and "data/en.json.gz" in err
  assert (root / "bactrian_x/de.json.gz").exists() and not (root / "bactrian_x/en.json.gz").exists()
  assert not list(root.rglob("*.partial"))
  n = len(hub.downloads())
  rc, out, err = run(["data", "bactrian_x", "--langs", "de", "en", "--root", str(root)], capsys)
  assert rc == 0, err
  assert len(hub.downloads()) == n + 1  # en only; de was neither fetched nor written again
  assert "wrote bactrian_x/en.json.gz" in out and "wrote bactrian_x/de.json.gz" not in out


def test_a_repository_missing_a_file_fails_naming_it_and_the_rest_is_written(hub, tmp_path, capsys):
  add_bactrian(hub, langs=("en",))
  root = tmp_path / "r"
  rc, out, err = run(["data", "bactrian_x", "--langs", "en", "de", "--root", str(root)], capsys)
  assert rc == 1
  assert err.startswith("error: data bactrian_x: 1 of 2 outputs: bactrian_x/de.json.gz: ")
  assert err.count("\n") == 1
  assert "has no file data/de.json.gz or de.json.gz" in err and "MBZUAI/Bactrian-X" in err
  assert "failed bactrian_x/de.json.gz: " in out and "wrote bactrian_x/en.json.gz" in out
  assert (root / "bactrian_x/en.json.gz").exists() and not (root / "bactrian_x/de.json.gz").exists()
  assert "check (bactrian_x tasks' reader" in out and "en 38/2" in out  # the rest is checked


def test_the_older_flat_layout_is_found_too(hub, tmp_path, capsys):
  add_bactrian(hub, langs=("fi",), layout="{lang}.json.gz")
  rc, out, err = run(["data", "bactrian_x", "--langs", "fi", "--root", str(tmp_path / "r")], capsys)
  assert rc == 0, err
  assert "fi " in out.split("check (")[1]


def test_dry_run_prints_files_and_sizes_and_fetches_nothing(hub, tmp_path, capsys):
  files = add_bactrian(hub)
  root = tmp_path / "r"
  rc, out, err = run(["data", "bactrian_x", "--langs", "en", "de", "--root", str(root), "--dry-run"],
                     capsys)
  assert rc == 0, err
  total = len(files["data/en.json.gz"]) + len(files["data/de.json.gz"])
  assert f"data/en.json.gz ({len(files['data/en.json.gz'])} B)" in out
  assert f"would download 2 file(s), {total} B" in out
  assert hub.downloads() == [] and not root.exists()


def test_aya_parquet_becomes_the_jsonl_the_task_reads(hub, tmp_path, capsys, monkeypatch):
  rows = ([{"inputs": f"q{i}", "targets": f"a{i}", "language": "English", "language_code": "eng",
            "annotation_type": "original-annotations", "user_id": "u"} for i in range(30)]
          + [{"inputs": f"f{i}", "targets": f"r{i}", "language": "French", "language_code": "fra",
              "annotation_type": "original-annotations", "user_id": "u"} for i in range(12)]
          + [{"inputs": "x", "targets": "y", "language": "Zaza", "language_code": "zza",
              "annotation_type": "original-annotations", "user_id": "u"}])
  hub.add("CohereLabs/aya_dataset", {"data/train-00000-of-00001.parquet": parquet(rows),
                                     "data/test-00000-of-00001.parquet": parquet(rows[:2])})
  root = tmp_path / "r"
  rc, out, err = run(["data", "aya", "--langs", "en", "fr", "de", "--root", str(root)], capsys)
  assert rc == 0, err
  assert "converted parquet -> JSONL" in out
  assert [json.loads(l) for l in (root / "aya/train.jsonl").read_text().splitlines()] == rows
  assert "no records for 1 of the family's languages: de" in out
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(root))
  import linguamix.t5x_tasks  # noqa: F401
  src = seqio.get_mixture_or_task("aya.fr").source
  assert len(src.source.records("all")) == 12


def test_lima_x_oasst1_and_alpaca_keep_the_hub_files(hub, tmp_path, capsys, monkeypatch):
  lima = {f"{s}_limax_DE.jsonl": jsonl([{"conversations": [f"{s} frage {i}", f"antwort {i}"]}
                                        for i in range(5)]) for s in ("train", "val")}
  hub.add("lamarr-org/Lima-X", {**lima, "train_limax_DE_FR_IT_ES.jsonl": b"{}\n"})
  msgs = []
  for t in range(6):
    msgs += [{"message_id": f"p{t}", "parent_id": None, "role": "prompter", "lang": "de",
              "text": f"frage {t}", "message_tree_id": f"t{t}", "rank": None},
             {"message_id": f"a{t}", "parent_id": f"p{t}", "role": "assistant", "lang": "de",
              "text": f"antwort {t}", "message_tree_id": f"t{t}", "rank": 0}]
  oasst = gzip.compress(jsonl(msgs))
  hub.add("OpenAssistant/oasst1", {"2023-04-12_oasst_ready.messages.jsonl.gz": oasst,
                                   "data/train-00000-of-00001.parquet": parquet([{"a": 1}])})
  alpaca = json.dumps([{"instruction": f"i{i}", "input": "", "output": f"o{i}"} for i in range(9)]).encode()
  hub.add("pinzhenchen/alpaca-cleaned-de", {"alpaca_data_cleaned.de.json": alpaca})
  hub.add("yahma/alpaca-cleaned", {"alpaca_data_cleaned.json": alpaca})
  root = tmp_path / "r"
  for argv in (["lima_x", "--langs", "de"], ["oasst1", "--langs", "de", "en"],
               ["alpaca_x", "--langs", "de", "en"]):
    rc, out, err = run(["data", *argv, "--root", str(root)], capsys)
    assert rc == 0, err
  assert (root / "lima_x/train_limax_DE.jsonl").read_bytes() == lima["train_limax_DE.jsonl"]
  assert (root / "oasst1/2023-04-12_oasst_ready.messages.jsonl.gz").read_bytes() == oasst
  assert (root / "alpaca_x/alpaca_data_cleaned.en.json").read_bytes() == alpaca
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(root))
  import linguamix.t5x_tasks  # noqa: F401
  source = lambda name: seqio.get_mixture_or_task(name).source.source
  assert len(source("alpaca_x.de").records("all")) == 9
  assert len(source("lima_x.de").records("train")) == 5 and len(source("lima_x.de").records("validation")) == 5
  assert len(source("oasst1.de").records("all")) == 6


# --- benchmarks ---------------------------------------------------------------------------

def test_benchmarks_end_to_end_into_the_loaders(hub, tmp_path, capsys, monkeypatch):
  xnli = {f"{l}/{s}-00000-of-00001.parquet": parquet(
      [{"premise": f"{l} premise {i}", "hypothesis": f"{l} hyp {i}", "label": i % 3} for i in range(n)])
      for l in ("de", "en") for s, n in (("validation", 6), ("test", 9))}
  hub.add("facebook/xnli", xnli)
  paws = {f"de/{s}-00000-of-00001.parquet": parquet(
      [{"id": i + 1, "sentence1": f"Satz {i} .", "sentence2": f"Satz {i} ,", "label": i % 2}
       for i in range(n)]) for s, n in (("validation", 4), ("test", 7))}
  hub.add("google-research-datasets/paws-x", paws)
  story = lambda n: parquet([{"story_id": f"s{i}", **{f"input_sentence_{k}": f"S{k} {i}." for k in range(1, 5)},
                              "sentence_quiz1": f"E1 {i}.", "sentence_quiz2": f"E2 {i}.",
                              "answer_right_ending": 1 + i % 2} for i in range(n)])
  # XStoryCloze's own repository holds a loading script: its parquet export is used
  hub.add("juletxara/xstory_cloze", {"xstory_cloze.py": b"# script\n", "README.md": b"card"})
  hub.add("juletxara/xstory_cloze", {"en/train/0000.parquet": story(3), "en/eval/0000.parquet": story(5)},
          revision="refs/convert/parquet")
  wino = jsonl([{"sentence": f"The cup fits _ bag {i}.", "option1": "a", "option2": "b", "answer": "1"}
                for i in range(4)])
  hub.add("Muennighoff/xwinograd", {"test/en.jsonl": wino, "test/jp.jsonl": wino})
  bele = jsonl([{"flores_passage": f"P{i}", "question": f"Q{i}", **{f"mc_answer{k}": f"A{k}" for k in range(1, 5)},
                 "correct_answer_num": str(1 + i % 4)} for i in range(8)])
  hub.add("facebook/belebele", {"data/eng_Latn.jsonl": bele})
  xquad_rows = [{"id": f"q{i}", "context": f"Kontext {i // 2}", "question": f"Frage {i}?",
                 "answers": {"text": [f"Antwort {i}"], "answer_start": [0]}} for i in range(6)]
  hub.add("google/xquad", {"xquad.de/validation-00000-of-00001.parquet": parquet(xquad_rows)})
  root = tmp_path / "eval"
  for argv in (["xnli", "--langs", "en", "de"], ["paws_x", "--langs", "de"],
               ["xstorycloze", "--langs", "en"], ["xwinograd", "--langs", "en", "ja"],
               ["belebele", "--langs", "eng_Latn"], ["xquad", "--langs", "de"],
               ["xcopa", "mt_bench_x", "--langs", "sw", "de"]):
    rc, out, err = run(["benchmarks", *argv, "--root", str(root)], capsys)
    assert rc == 0, (argv, err)
    assert "check (" in out
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  from linguamix.evals import registry
  import linguamix.evals  # noqa: F401
  load = lambda name, lang, split: registry.BENCHMARKS[name].load(lang, split)
  assert len(load("xnli", "de", "validation")) == 6 and len(load("xnli", "en", "test")) == 9
  assert (root / "xnli/xnli.dev.tsv").read_text().splitlines()[0] == \
      "language\tgold_label\tsentence1\tsentence2"
  assert len(load("paws_x", "de", "test")) == 7
  assert len(load("xstorycloze", "en", "validation")) == 5 and len(load("xstorycloze", "en", "train")) == 3
  assert len(load("xwinograd", "ja", "test")) == 4
  assert (root / "xwinograd/jp/test.jsonl").read_bytes() == wino
  assert len(load("belebele", "eng_Latn", "test")) == 8
  requests = load("xquad", "de", "test")
  assert [r.references for r in requests] == [(f"Antwort {i}",) for i in range(6)]
  assert "Kontext 2" in requests[5].inputs
  assert len(load("xcopa", "sw", "test")) == 500  # the bundled real release, copied
  assert (root / "mt_bench_x/data/mt_bench_DE/reference_answer/gpt-4.jsonl").exists()
  assert not (root / "mt_bench_x/data/mt_bench_EN").exists()
  assert len(load("mt_bench_x", "de", "test")) == 80


def flores_repo(hub, token):
  files = {}
  for code in ("eng_Latn", "deu_Latn"):
    for split, n in (("dev", 5), ("devtest", 7)):
      rows = [{"id": i + 1, "iso_639_3": code[:3], "text": f"{code} {split} sentence {i + 1}."}
              for i in range(n)]
      files[f"{split}/{code}.parquet"] = parquet(rows[::-1])  # stored out of order: sorted by id
  hub.add("openlanguagedata/flores_plus", files, gated_token=token)


def test_gated_flores_names_the_page_to_accept_and_the_token_is_written_nowhere(
    hub, tmp_path, capsys, monkeypatch):
  flores_repo(hub, TOKEN)
  root = tmp_path / "eval"
  argv = ["benchmarks", "flores", "--langs", "en_de", "de_en", "--root", str(root)]
  rc, out, err = run(argv + ["--dry-run"], capsys)  # the listing is public, as on the Hub
  assert rc == 0 and "would download 4 file(s)" in out
  rc, out, err = run(argv, capsys)  # no token: the files answer 401
  assert rc == 1
  page = f"{hub.url}/datasets/openlanguagedata/flores_plus"
  assert err.startswith("error: benchmarks flores: 4 of 4 outputs: ")
  assert f"{page} refused access (HTTP 401/403)" in err and "accept its terms" in err
  monkeypatch.setenv("HF_TOKEN", "hf_someoneElsesToken")  # a token without access: 403
  rc, out, err = run(argv, capsys)
  assert rc == 1 and page in err and "hf_someoneElsesToken" not in err
  assert any(h.get("authorization") == "Bearer hf_someoneElsesToken" for _, _, h in hub.requests)
  monkeypatch.setenv("HF_TOKEN", TOKEN)
  rc, out, err = run(argv, capsys)
  assert rc == 0, err
  assert TOKEN not in out + err
  assert (root / "flores200/devtest/deu_Latn.devtest").read_text().splitlines()[0] == \
      "deu_Latn devtest sentence 1."
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  from linguamix.evals import registry
  import linguamix.evals  # noqa: F401
  reqs = registry.BENCHMARKS["flores"].load("en_de", "test")
  assert len(reqs) == 7 and reqs[2].references == ("deu_Latn devtest sentence 3.",)
  for path in tmp_path.rglob("*"):  # root, the Hub cache and its metadata
    if path.is_file() and not path.is_symlink():
      assert TOKEN.encode() not in path.read_bytes(), path


# --- checkpoints --------------------------------------------------------------------------

def tiny_llama_repo(directory: pathlib.Path) -> dict:
  import tokenizers
  import torch
  import transformers
  torch.manual_seed(0)
  config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    intermediate_size=64, max_position_embeddings=64)
  transformers.LlamaForCausalLM(config).save_pretrained(directory, max_shard_size="20KB")
  vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(93)])}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
  return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_model_downloads_converts_and_a_second_run_does_nothing(hub, tmp_path, capsys):
  import orbax.checkpoint as ocp
  from linguamix.models import convert
  local = tmp_path / "llama_local"
  local.mkdir()
  files = tiny_llama_repo(local)
  assert sum(n.startswith("model-") for n in files) > 1  # sharded, with an index
  hub.add("org/tiny-llama", {**files, "README.md": b"card"}, kind="models")
  out = tmp_path / "ckpt"
  rc, stdout, err = run(["model", "org/tiny-llama", "--out", str(out), "--dry-run"], capsys)
  assert rc == 0, err
  shard = sorted(n for n in files if n.startswith("model-"))[0]
  from linguamix.prepare.hub import human
  assert f"org/tiny-llama/{shard} ({human(len(files[shard]))})" in stdout
  assert f"would download {len(files)} file(s)" in stdout
  assert hub.downloads() == [] and not out.exists()
  rc, stdout, err = run(["model", "org/tiny-llama", "--out", str(out)], capsys)
  assert rc == 0, err
  assert "converted LlamaForCausalLM" in stdout and "check: tokenizer 96 ids" in stdout
  assert (out / "tokenizer.json").read_bytes() == files["tokenizer.json"]
  ref = tmp_path / "ref"
  convert.import_hf(str(local), str(ref))
  got = ocp.PyTreeCheckpointer().restore(str(out))
  want = ocp.PyTreeCheckpointer().restore(str(ref))
  import jax
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  n = len(hub.downloads())
  assert n == len(files)  # README.md is not fetched
  rc, stdout, err = run(["model", "org/tiny-llama", "--out", str(out)], capsys)
  assert rc == 0 and "nothing downloaded" in stdout and len(hub.downloads()) == n


def test_model_without_safetensors_fails_naming_the_missing_files(hub, tmp_path, capsys):
  hub.add("org/old-model", {"config.json": b'{"architectures": ["LlamaForCausalLM"]}',
                            "pytorch_model.bin": b"\0" * 16}, kind="models")
  rc, out, err = run(["model", "org/old-model", "--out", str(tmp_path / "o")], capsys)
  assert rc == 1
  assert "has no model.safetensors or model.safetensors.index.json" in err
  assert "pytorch_model.bin" in err and not (tmp_path / "o").exists()


def test_t5x_from_a_local_mirror_of_the_bucket_resumes_and_converts(tmp_path, capsys):
  import orbax.checkpoint as ocp
  import test_mt5_checkpoints as t5x_tests
  from linguamix.t5x_tasks import vocab
  src = tmp_path / "t5-data"
  ckpt = src / "pretrained_models/t5x/mt5_small/checkpoint_1000000"
  flat = t5x_tests._random_params()
  t5x_tests.write_t5x_checkpoint(str(ckpt), flat)
  spm = src / "vocabs/mc4.250000.100extra/sentencepiece.model"
  spm.parent.mkdir(parents=True)
  shutil.copy(vocab.SAMPLE_SPM, spm)
  out = tmp_path / "mt5_small"
  # an earlier run stopped halfway through the msgpack file
  partial = tmp_path / "mt5_small.download/checkpoint_1000000/checkpoint.partial"
  partial.parent.mkdir(parents=True)
  whole = (ckpt / "checkpoint").read_bytes()
  partial.write_bytes(whole[:len(whole) // 2])
  argv = ["t5x", "mt5_small", "--out", str(out), "--source_root", str(src)]
  rc, stdout, err = run(argv + ["--dry-run"], capsys)
  assert rc == 0 and "would copy" in stdout and not out.exists()
  rc, stdout, err = run(argv, capsys)
  assert rc == 0, err
  assert f"resuming {ckpt}/checkpoint at byte {len(whole) // 2:,}" in stdout
  assert "check: vocabulary 1024 ids" in stdout
  assert (out / "sentencepiece.model").read_bytes() == spm.read_bytes()
  assert not (tmp_path / "mt5_small.download").exists()
  params = ocp.PyTreeCheckpointer().restore(str(out))
  from linguamix.models.checkpoint_formats import layout
  want = flat["encoder/layers_0/mlp/wi_0/kernel"]
  got = layout.flatten(params)
  match = [k for k, v in got.items() if np.asarray(v).shape == want.shape
           and np.allclose(np.asarray(v), want)]
  assert match, "the converted tree lacks the checkpoint's encoder/layers_0/mlp/wi_0/kernel"
  rc, stdout, err = run(argv, capsys)
  assert rc == 0 and "nothing downloaded" in stdout


def test_t5x_missing_checkpoint_and_unknown_size_fail_clearly(tmp_path, capsys):
  rc, out, err = run(["t5x", "mt5_huge", "--out", str(tmp_path / "o")], capsys)
  assert rc == 1 and "unknown mT5 size 'mt5_huge'" in err
  rc, out, err = run(["t5x", "mt5_base", "--out", str(tmp_path / "o"), "--source_root",
                      str(tmp_path / "nowhere")], capsys)
  assert rc == 1 and "mt5_base/checkpoint_1000000: not found" in err


# --- the command ----------------------------------------------------------------------------

def test_name_lists_match_the_tables():
  from linguamix.prepare import benchmark_data, instruction_data
  assert set(command.DATA_NAMES) == set(instruction_data.DATASETS)
  assert set(command.BENCHMARK_NAMES) == set(benchmark_data.BENCHMARKS)
  from linguamix.evals import registry
  import linguamix.evals  # noqa: F401
  assert set(command.BENCHMARK_NAMES) <= set(registry.BENCHMARKS)


def test_env_vars_are_honoured_end_to_end_and_help_is_instant(tmp_path):
  """A fresh process: HF_ENDPOINT, HF_HOME and HF_TOKEN read by huggingface_hub itself."""
  env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HOME": str(tmp_path / "hf_home"),
         "HF_TOKEN": TOKEN, "LINGUAMIX_DATA_ROOT": str(tmp_path / "root")}
  code = ("import sys\nfrom linguamix import cli\ntry:\n  cli.main(['prepare', 'data', '--help'])\n"
          "except SystemExit:\n  pass\n"
          "print('heavy:', [m for m in ('tensorflow', 'huggingface_hub', 'jax') if m in sys.modules])")
  help_ = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert "--langs" in help_.stdout and "heavy: []" in help_.stdout
  with FakeHub() as hub:
    files = {"data/en.json.gz": gzip.compress(json.dumps(bactrian_records("en")).encode())}
    hub.add("MBZUAI/Bactrian-X", files, gated_token=TOKEN)
    env["HF_ENDPOINT"] = hub.url
    proc = subprocess.run([sys.executable, "-m", "linguamix.cli", "prepare", "data", "bactrian_x",
                           "--langs", "en"], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "root/bactrian_x/en.json.gz").read_bytes() == files["data/en.json.gz"]
  assert list((tmp_path / "hf_home/hub").glob("datasets--MBZUAI--Bactrian-X/blobs/*"))
  assert TOKEN not in proc.stdout + proc.stderr
  for path in tmp_path.rglob("*"):
    if path.is_file() and not path.is_symlink():
      assert TOKEN.encode() not in path.read_bytes(), path


def test_a_non_local_root_is_written_and_checked_through_tf_io_gfile(hub, capsys):
  """gs:// roots take the same path: TensorFlow's in-memory `ram://` filesystem stands in."""
  import tensorflow as tf
  files = add_bactrian(hub, langs=("et",))
  rc, out, err = run(["data", "bactrian_x", "--langs", "et", "--root", "ram://instruct"], capsys)
  assert rc == 0, err
  with tf.io.gfile.GFile("ram://instruct/bactrian_x/et.json.gz", "rb") as f:
    assert f.read() == files["data/et.json.gz"]
  assert "check (bactrian_x tasks' reader, ram://instruct)" in out and "et 38/2" in out
  rc, out, err = run(["data", "bactrian_x", "--langs", "et", "--root", "ram://instruct"], capsys)
  assert rc == 0 and "nothing downloaded: 1 of 1 outputs up to date" in out
