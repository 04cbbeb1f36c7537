"""Bad input from issue 16, walked through the real entry points: one `error:` line that
names the file, line, field, value or path, a non-zero exit, no traceback (unless
--verbose); a bug keeps its traceback and says it is one."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from linguamix.testing import train_helpers
from linguamix import errors
from linguamix.cli import flags
from linguamix.cli import train as train_main

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "LINGUAMIX_TEST_KEY": "sk-test",
       "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}


def _error_lines(err: str) -> list[str]:
  return [l for l in err.splitlines() if ": error: " in l]


def test_bad_inputs_in_subprocesses(tmp_path):
  bad_arch = tmp_path / "falcon"
  bad_arch.mkdir()
  (bad_arch / "config.json").write_text(json.dumps({"architectures": ["FalconForCausalLM"]}))
  no_shard = tmp_path / "llama"
  no_shard.mkdir()
  (no_shard / "config.json").write_text(json.dumps({
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96,
      "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "rms_norm_eps": 1e-6, "tie_word_embeddings": False}))
  (no_shard / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00001.safetensors"}}))
  latin1 = tmp_path / "orca.jsonl"
  good = json.dumps({"id": "a", "system_prompt": "", "question": "Why?", "response": "Because."})
  latin1.write_bytes(good.encode() + b"\n" + good.replace('"a"', '"b"').replace("Why", "Caf\xe9").encode("latin-1") + b"\n")
  a_file = tmp_path / "a_file"
  a_file.write_text("not a directory")
  gin_file = train_helpers.write_gin(tmp_path)
  cases = [  # (argv, exit status, the error line holds all of these)
      (["-m", "linguamix.cli", "convert", "import-hf", str(bad_arch), str(tmp_path / "o1")], 2,
       ["linguamix convert: error: ", f"{bad_arch}/config.json: architectures=['FalconForCausalLM'] is not supported"]),
      (["-m", "linguamix.cli", "convert", "import-hf", str(no_shard), str(tmp_path / "o2")], 2,
       ["linguamix convert: error: ", "model.safetensors.index.json", "model-00001-of-00001.safetensors"]),
      (["-m", "linguamix.cli", "augment", "--input", str(latin1), "--out", str(tmp_path / "o3"),
        "--base-url", "http://127.0.0.1:9", "--model", "m", "--api-key-env", "LINGUAMIX_TEST_KEY",
        "--budgets", "de=1"], 2,
       ["linguamix augment: error: ", f"{latin1}:2: not UTF-8 text (byte 0xe9 at column "]),
      (["-m", "linguamix.train", f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{a_file}"'], 2,
       ["python -m linguamix.train: error: ", f"MODEL_DIR {a_file} is a file, not a directory"]),
  ]
  procs = [subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv, _, _ in cases]
  for (argv, code, parts), proc in zip(cases, procs):
    _, err = proc.communicate(timeout=300)
    lines = _error_lines(err)
    assert proc.returncode == code, (argv, err[-3000:])
    assert len(lines) == 1 and "Traceback" not in err, (argv, err[-3000:])
    assert all(p in lines[0] for p in parts), (argv, lines[0])
  assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
  assert a_file.read_text() == "not a directory"


def _train_error(capsys, *argv) -> str:
  assert train_main.main(list(argv)) == 2
  err = capsys.readouterr().err
  lines = _error_lines(err)
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


def test_train_bad_values_before_compilation(tmp_path, capsys):
  gin_file = train_helpers.write_gin(tmp_path)
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  line = _train_error(capsys, f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{a_file}/sub/run"')
  assert f"MODEL_DIR {a_file}/sub/run lies under {a_file}, which is a file" in line
  line = _train_error(capsys, f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{tmp_path}/run"',
                      "--gin.MIXTURE_OR_TASK_NAME='pinch_p150'")
  assert "'pinch_p150'" in line and "P (percent multilingual) must be in 0..100" in line and "got 150" in line
  # a model gin that leaves the tasks' vocabulary unbound: the recipe would tokenize with
  # the bundled SentencePiece model, not the model's byte vocabulary
  line = _train_error(capsys, f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{tmp_path}/run2"',
                      "--gin.MIXTURE_OR_TASK_NAME='pinch_p10'")
  assert "MIXTURE_OR_TASK_NAME='pinch_p10'" in line and "1024 ids" in line, line
  assert "t5x_tasks.task_vocabulary.vocabulary = %VOCABULARY" in line, line
  assert not (tmp_path / "run2" / "checkpoint_0").exists()


def test_readme_binding_of_the_default_model_parses_without_a_model_gin():
  """docs/models.md: --gin.mt5.MT5Config.scan_layers=True with only a mixture gin."""
  import gin
  flags.parse_and_configure(
      ["--gin_file=mixture_40shot.gin", '--gin.MODEL_DIR="/tmp/x"', "--gin.mt5.MT5Config.scan_layers=True"],
      prog="t", description="", run_gin="runs/finetune.gin", required_macros=train_main.TRAIN_REQUIRED)
  assert gin.query_parameter("mt5.MT5Config.scan_layers") is True
  # A binding that is wrong for every model gin is still an error, naming it.
  with pytest.raises(flags.UsageError, match="MT5Confg"):
    flags.parse_and_configure(
        ["--gin_file=mixture_40shot.gin", '--gin.MODEL_DIR="/tmp/x"', "--gin.mt5.MT5Confg.scan_layers=True"],
        prog="t", description="", run_gin="runs/finetune.gin", required_macros=train_main.TRAIN_REQUIRED)
  gin.clear_config()


def _boom(kind):
  def main(argv):
    del argv
    if kind == "user":
      raise FileNotFoundError(2, "No such file or directory", "/data/x.jsonl")
    raise KeyError("a bug")
  return main


def test_run_main_prints_one_line_traceback_only_for_bugs_or_verbose(capsys, monkeypatch):
  monkeypatch.delenv("LINGUAMIX_VERBOSE", raising=False)
  assert errors.run_main(_boom("user"), [], prog="p") == errors.EXIT_USAGE
  err = capsys.readouterr().err
  assert err == "p: error: No such file or directory: /data/x.jsonl\n"
  assert errors.run_main(_boom("user"), ["--verbose"], prog="p") == errors.EXIT_USAGE
  err = capsys.readouterr().err
  assert "Traceback" in err and err.endswith("p: error: No such file or directory: /data/x.jsonl\n")
  monkeypatch.setenv("LINGUAMIX_VERBOSE", "1")
  assert errors.run_main(_boom("user"), [], prog="p") == errors.EXIT_USAGE
  assert "Traceback" in capsys.readouterr().err
  monkeypatch.delenv("LINGUAMIX_VERBOSE")
  assert errors.run_main(_boom("bug"), [], prog="p") == errors.EXIT_BUG
  err = capsys.readouterr().err
  assert "Traceback" in err and "p: internal error (a bug" in err and "KeyError" in err


def test_infer_refuses_tasks_of_another_vocabulary_before_reading_the_checkpoint(tmp_path):
  import seqio
  from linguamix.models import decoder
  from linguamix.train import run_infer
  cfg = decoder.DecoderConfig(vocab_size=264, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2,
                              mlp_dim=64, dtype="float32")
  model = decoder.DecoderOnlyModel(cfg, seqio.ByteVocabulary())
  with pytest.raises(ValueError, match=r"MIXTURE_OR_TASK_NAME='bactrian_x.de' tokenizes with a "
                                       r"vocabulary of \d+ ids that is not the model's \(259 ids\)"):
    run_infer.infer(model=model, checkpoint_path=str(tmp_path / "no_checkpoint"),
                    output_dir=str(tmp_path / "out"), mixture_or_task_name="bactrian_x.de",
                    split="validation")
  assert not (tmp_path / "out").exists()
