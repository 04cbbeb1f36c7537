"""The trainer end to end on a tiny mT5 and a tiny SeqIO task: metrics files, loss
going down, exact resume after SIGKILL, bad input rejected before compilation."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from linguamix.testing import train_helpers
from linguamix.cli import train as train_main

REPO = pathlib.Path(__file__).resolve().parents[1]


def _argv(tmp: pathlib.Path, model_dir: pathlib.Path, *bindings: str, gin_extra: str = ""):
  gin_file = train_helpers.write_gin(tmp, gin_extra)
  return [f"--gin_file={gin_file}", f'--gin.MODEL_DIR="{model_dir}"', *bindings]


def _losses(model_dir: pathlib.Path) -> dict[int, float]:
  """Train loss per step; a restarted run's later lines win."""
  out = {}
  for line in (model_dir / "metrics.jsonl").read_text().splitlines():
    rec = json.loads(line)
    if rec["split"] == "train":
      out[rec["step"]] = rec["loss"]
  return out


def _params(model_dir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
  import jax
  import orbax.checkpoint as ocp
  tree = ocp.PyTreeCheckpointer().restore(str(model_dir / f"checkpoint_{step}" / "state"))
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree["params"])}


def test_train_writes_metrics_checkpoints_and_evaluates(tmp_path, capsys):
  model_dir = tmp_path / "run"
  rc = train_main.main(_argv(tmp_path, model_dir, "--gin.TRAIN_STEPS=8", "--gin.EVAL_PERIOD=8",
                             "--gin.trainer.train.log_period=1",
                             "--gin.trainer.train.infer_eval_examples=4"))
  assert rc == 0
  out = capsys.readouterr().out
  assert "done: step 8 of 8" in out and "training_eval/loss" in out
  losses = _losses(model_dir)
  assert sorted(losses) == list(range(1, 9))
  summary = json.loads((model_dir / "summary.json").read_text())
  assert summary["final_step"] == 8
  assert "inference_eval/train_tiny.reverse/exact_match" in summary["eval"]
  assert "inference_eval/train_tiny.reverse/mean_log_likelihood" in summary["eval"]
  # TensorBoard event file, read back with TensorBoard's own reader.
  import tensorflow as tf
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(model_dir / "train"), size_guidance={"tensors": 0})
  acc.Reload()
  events = acc.Tensors("loss")
  assert [e.step for e in events] == list(range(1, 9))
  tb_losses = [float(tf.make_ndarray(e.tensor_proto)) for e in events]
  np.testing.assert_allclose(tb_losses, [losses[s] for s in range(1, 9)], rtol=1e-6)
  assert {"learning_rate", "grad_norm", "accuracy", "tokens_per_s"} <= set(acc.Tags()["tensors"])
  assert (model_dir / "checkpoint_8" / "state").is_dir()
  # python -m linguamix.infer on the checkpoint: one JSONL line per example.
  from linguamix.train import run_infer
  gin_file = train_helpers.write_gin(tmp_path)
  rc = train_main.infer_main([f"--gin_file={gin_file}", f'--gin.CHECKPOINT_PATH="{model_dir}/checkpoint_8"',
                              f'--gin.INFER_OUTPUT_DIR="{tmp_path}/infer"', "--gin.INFER_MODE='score'",
                              "--gin.INFER_SPLIT='validation'", "--gin.run_infer.infer.num_examples=3"])
  assert rc == 0
  lines = [json.loads(l) for l in (tmp_path / "infer" / "train_tiny.reverse-score.jsonl").open()]
  assert len(lines) == 3 and all(l["score"] < 0 for l in lines)
  assert lines[0]["targets"] == lines[0]["inputs"][::-1]
  # predict_with_aux: one decode writes the prediction and its log-likelihood
  rc = train_main.infer_main([f"--gin_file={gin_file}", f'--gin.CHECKPOINT_PATH="{model_dir}/checkpoint_8"',
                              f'--gin.INFER_OUTPUT_DIR="{tmp_path}/infer"', "--gin.INFER_MODE='predict_with_aux'",
                              "--gin.INFER_SPLIT='validation'", "--gin.run_infer.infer.num_examples=3"])
  assert rc == 0
  aux = [json.loads(l) for l in (tmp_path / "infer" / "train_tiny.reverse-predict_with_aux.jsonl").open()]
  assert [l["inputs"] for l in aux] == [l["inputs"] for l in lines]
  assert all(isinstance(l["prediction"], str) and l["aux"]["score"] < 0 for l in aux)


@pytest.mark.slow
def test_default_model_learns_the_bundled_40shot_mixture(tmp_path, capsys, monkeypatch, real_data):
  """The main job's path (no model gin: quickstart + mt5_tiny), shortened, ending with
  its benchmark (the bundled real XCOPA, 11 languages, table and chart); then
  `python -m linguamix.eval` of its checkpoint on real XCOPA (sw) files."""
  monkeypatch.delenv("LINGUAMIX_EVAL_DATA_ROOT", raising=False)  # the bundled copy
  rc = train_main.main(["--gin_file=mixture_40shot.gin", f'--gin.MODEL_DIR="{tmp_path}/run"',
                        "--gin.TRAIN_STEPS=30", "--gin.EVAL_PERIOD=30", "--gin.EVAL_STEPS=1",
                        "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 64}",
                        "--gin.trainer.train.log_period=1",
                        "--gin.trainer.train.train_eval_dataset_cfg=None",
                        "--gin.run_eval.benchmark.num_examples=8"])
  assert rc == 0
  out = capsys.readouterr().out
  table = out[out.index("xcopa (test split): acc, acc_norm in %"):].splitlines()
  assert [row.split()[0] for row in table[2:13]] == sorted(
      ["et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"])
  assert table[13].split()[0] == "mean"
  benchmark = json.loads((tmp_path / "run" / "summary.json").read_text())["benchmark"]
  assert len(benchmark) == 11 and all(0 <= m["acc"] <= 100 for m in benchmark.values())
  assert benchmark["xcopa.sw"]["num_examples"] == int(table[2 + 5].split()[-1])  # sw's row
  assert len(list((tmp_path / "run" / "benchmark" / "metrics").glob("xcopa.*.json"))) == 11
  assert (tmp_path / "run" / "xcopa_acc.png").stat().st_size > 1000
  losses = _losses(tmp_path / "run")
  assert sorted(losses) == list(range(1, 31))
  assert np.mean([losses[s] for s in range(26, 31)]) < np.mean([losses[s] for s in range(1, 6)]) - 0.5
  assert "pinch_40shot" in (tmp_path / "run" / "checkpoint_30" / "meta" / "metadata").read_text()
  from linguamix.train import run_eval
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  capsys.readouterr()
  rc = train_main.eval_main([f'--gin.CHECKPOINT_PATH="{tmp_path}/run/checkpoint_30"',
                             f'--gin.EVAL_OUTPUT_DIR="{tmp_path}/eval"', "--gin.EVAL_TASKS='xcopa.sw'",
                             "--gin.run_eval.evaluate_checkpoint.num_examples=16"])
  assert rc == 0, capsys.readouterr().err
  assert "xcopa.sw: acc " in capsys.readouterr().out
  run = json.loads((tmp_path / "eval" / "run.json").read_text())
  assert 0 <= run["metrics"]["xcopa.sw"]["acc"] <= 100 and run["step"] == 30


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
  model_dir = tmp_path / "run"
  rc = train_main.main(_argv(tmp_path, model_dir, "--gin.TRAIN_STEPS=50", "--gin.LEARNING_RATE=1e30",
                             "--gin.OPTIMIZER='adamw'", "--gin.trainer.train.checkpoint_period=1",
                             "--gin.trainer.train.train_eval_dataset_cfg=None",
                             "--gin.trainer.train.infer_eval_dataset_cfg=None"))
  err = capsys.readouterr().err
  assert rc == 1 and "stopped" in err and "loss is" in err
  good = sorted(int(p.name.split("_")[1]) for p in model_dir.glob("checkpoint_*"))
  assert good and f"last good checkpoint is {model_dir}/checkpoint_{good[-1]}" in err
  params = _params(model_dir, good[-1])
  assert all(np.isfinite(v).all() for v in params.values())


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_exact(tmp_path):
  common = ("--gin.EVAL_PERIOD=1000", "--gin.trainer.train.checkpoint_period=3",
            "--gin.trainer.train.log_period=1", "--gin.trainer.train.infer_eval_dataset_cfg=None",
            "--gin.trainer.train.train_eval_dataset_cfg=None", "--gin.trainer.train.keep_checkpoints=100")
  killed = tmp_path / "killed"
  env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(
      [sys.executable, "-m", "linguamix.train", *_argv(tmp_path, killed, "--gin.TRAIN_STEPS=100000", *common),
       "--gin.trainer.train.progress_bar=False"],
      env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + 120
  while not (killed / "checkpoint_3" / "meta").exists():
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    assert time.time() < deadline, "no checkpoint within 120 s"
    time.sleep(0.05)
  time.sleep(0.5)  # let it run past the checkpoint, mid-way through later steps
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # a kill mid-save leaves Orbax's checkpoint_N.orbax-checkpoint-tmp beside the finished ones
  steps = sorted(int(p.name.split("_")[1]) for p in killed.glob("checkpoint_*")
                 if p.name.split("_")[1].isdigit() and (p / "meta").exists())
  latest = steps[-1]
  total = latest + 4
  assert train_main.main(_argv(tmp_path, killed, f"--gin.TRAIN_STEPS={total}", *common)) == 0
  straight = tmp_path / "straight"
  assert train_main.main(_argv(tmp_path, straight, f"--gin.TRAIN_STEPS={total}", *common)) == 0
  a = _losses(straight)
  # The killed run logged steps past its last checkpoint; the resumed run redid them.
  b = {s: v for s, v in _losses(killed).items() if s <= total}
  assert sorted(a) == sorted(b) == list(range(1, total + 1))
  assert [a[s] for s in a] == [b[s] for s in a]  # bit-exact loss curve, same batches
  pa, pb = _params(straight, total), _params(killed, total)
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def _error(capsys, argv) -> str:
  assert train_main.main(argv) == 2
  return capsys.readouterr().err


def test_bad_input_is_reported_before_compilation(tmp_path, capsys):
  run = tmp_path / "run"
  err = _error(capsys, _argv(tmp_path, run, "--gin.MIXTURE_OR_TASK_NAME='train_tiny.revers'"))
  assert "unknown mixture or task 'train_tiny.revers'" in err and "train_tiny.reverse" in err
  err = _error(capsys, [f"--gin_file={train_helpers.write_gin(tmp_path)}"])
  assert "MODEL_DIR" in err and "required gin macro" in err
  err = _error(capsys, _argv(tmp_path, run, "--gin.trainer.train.modle=3"))
  assert "modle" in err
  err = _error(capsys, _argv(tmp_path, run, "--gin.TRAIN_STEP=5"))
  assert "TRAIN_STEP " in err and "did you mean TRAIN_STEPS" in err
  err = _error(capsys, _argv(tmp_path, run, "--gin_file=no_such.gin"))
  assert "no_such.gin" in err
  err = _error(capsys, _argv(tmp_path, run, "--gin.trainer.train.num_microbatches=3"))
  assert "BATCH_SIZE=8 is not divisible" in err
  assert not run.exists() or not any(run.glob("checkpoint_*"))


def test_model_dir_and_initial_checkpoint_of_another_model(tmp_path, capsys):
  small = tmp_path / "small"
  common = ("--gin.TRAIN_STEPS=1", "--gin.trainer.train.infer_eval_dataset_cfg=None",
            "--gin.trainer.train.train_eval_dataset_cfg=None")
  assert train_main.main(_argv(tmp_path, small, *common)) == 0
  wider = ("--gin.mt5.MT5Config.emb_dim=48",)
  err = _error(capsys, _argv(tmp_path, small, *common, *wider))
  assert "holds checkpoints of another model" in err
  err = _error(capsys, _argv(tmp_path, tmp_path / "new", *common, *wider,
                             f"--gin.INITIAL_CHECKPOINT_PATH='{small}/checkpoint_1'"))
  assert "does not fit the model" in err and "!= model (48," in err
  assert not (tmp_path / "new").exists() or not any((tmp_path / "new").glob("checkpoint_*"))


# The byte-level task `train_tiny.reverse` for decoder_tiny.gin: the model tokenizes with
# the task's byte vocabulary (its 1,024 embedding rows hold the 259 byte ids), as training
# requires of a model and its tasks. The byte gin goes after the model gin.
TASK_GIN = "import linguamix.testing.train_helpers\nMIXTURE_OR_TASK_NAME = 'train_tiny.reverse'\n"
BYTE_GIN = "from __gin__ import dynamic_registration\nimport seqio\nVOCABULARY = @seqio.ByteVocabulary()\n"


def _byte_task_gins(tmp_path) -> tuple[str, str]:
  (tmp_path / "task.gin").write_text(TASK_GIN)
  (tmp_path / "bytes.gin").write_text(BYTE_GIN)
  return f"--gin_file={tmp_path / 'task.gin'}", f"--gin_file={tmp_path / 'bytes.gin'}"


@pytest.mark.slow
def test_lora_on_a_decoder_trains_only_the_adapters(tmp_path):
  """AdamW on decoder_tiny; LoRA (models/lora.gin) from a base checkpoint that has no
  adapters: the base stays bit-identical, the adapters learn."""
  task_gin, byte_gin = _byte_task_gins(tmp_path)
  common = [task_gin, "--gin_file=models/decoder_tiny.gin", byte_gin, "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 16}",
            "--gin.USE_CACHED_TASKS=False", "--gin.RANDOM_SEED=0",
            "--gin.trainer.train.train_eval_dataset_cfg=None",
            "--gin.trainer.train.infer_eval_dataset_cfg=None"]
  base = tmp_path / "base"
  assert train_main.main([*common, f'--gin.MODEL_DIR="{base}"', "--gin.TRAIN_STEPS=1",
                          "--gin.INITIAL_CHECKPOINT_PATH=None"]) == 0
  lora = tmp_path / "lora"
  assert train_main.main([*common, "--gin_file=models/lora.gin", f'--gin.MODEL_DIR="{lora}"',
                          "--gin.TRAIN_STEPS=3", f"--gin.INITIAL_CHECKPOINT_PATH='{base}/checkpoint_1'",
                          "--gin.LEARNING_RATE=0.01"]) == 0
  # Training continues at the initial checkpoint's step (TRAIN_STEPS is absolute).
  assert json.loads((lora / "summary.json").read_text())["start_step"] == 1
  before, after = _params(base, 1), _params(lora, 3)
  adapters = [k for k in after if "'lora'" in k]
  assert adapters and set(after) - set(adapters) == set(before)
  for k in before:
    np.testing.assert_array_equal(after[k], before[k], err_msg=k)
  assert any(np.abs(after[k]).max() > 0 for k in adapters if k.endswith("['b']"))


def test_checkpointer_keeps_the_latest_and_the_best(tmp_path):
  from linguamix.train.checkpoints import Checkpointer
  c = Checkpointer(str(tmp_path), keep=1, best_metric="training_eval/loss", best_mode="min")
  for step, loss in [(1, 5.0), (2, 3.0), (3, 4.0), (4, 6.0), (5, 4.5)]:
    c.save(step, {"x": np.full(3, step, np.float32)}, {"batches": step},
           metrics={"training_eval/loss": loss})
    c.wait()
  c.close()
  assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_2", "checkpoint_5"]


@pytest.mark.slow
def test_eval_scores_decoder_models_on_lm_eval_sequences(tmp_path, capsys, monkeypatch, real_data):
  """`python -m linguamix.eval` of a decoder checkpoint: each XCOPA choice's score is the
  model's log-likelihood of the continuation given exactly lm-eval's token sequence
  (context ids then continuation ids, nothing before them) — computed here from the
  model's logits on that sequence alone."""
  import jax
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  import sentencepiece as spm
  from linguamix.models import decoder
  from linguamix.t5x_tasks import vocab as task_vocab
  from linguamix.train import run_eval
  task_gin, byte_gin = _byte_task_gins(tmp_path)
  model_gin = ["--gin_file=models/decoder_tiny.gin"]
  assert train_main.main([task_gin, *model_gin, byte_gin, f'--gin.MODEL_DIR="{tmp_path}/run"',
                          "--gin.BATCH_SIZE=2", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 16}",
                          "--gin.USE_CACHED_TASKS=False", "--gin.RANDOM_SEED=0", "--gin.TRAIN_STEPS=1",
                          "--gin.INITIAL_CHECKPOINT_PATH=None",
                          "--gin.trainer.train.train_eval_dataset_cfg=None",
                          "--gin.trainer.train.infer_eval_dataset_cfg=None"]) == 0
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  capsys.readouterr()
  assert train_main.eval_main([*model_gin, f'--gin.CHECKPOINT_PATH="{tmp_path}/run/checkpoint_1"',
                               f'--gin.EVAL_OUTPUT_DIR="{tmp_path}/eval"', "--gin.EVAL_TASKS='xcopa.sw'",
                               "--gin.run_eval.evaluate_checkpoint.num_examples=6"]) == 0, capsys.readouterr().err
  lines = [json.loads(l) for l in (tmp_path / "eval" / "scores" / "xcopa.sw.jsonl").read_text().splitlines()]
  assert len(lines) == 3

  params = ocp.PyTreeCheckpointer().restore(str(tmp_path / "run" / "checkpoint_1" / "state"))["params"]
  import gin
  with gin.unlock_config():
    model = gin.query_parameter("MODEL/macro.value").scoped_configurable_fn()  # decoder_tiny.gin
  assert isinstance(model, decoder.DecoderOnlyModel) and model.start_token == "none"
  sp = spm.SentencePieceProcessor(model_file=task_vocab.SAMPLE_SPM)
  for line in lines:
    for choice in line["choices"]:
      context, continuation = choice["inputs"], choice["targets"]
      context_ids = sp.encode(context)
      ids = context_ids + sp.encode(context + continuation)[len(context_ids):]
      n = len(ids) - len(context_ids)
      batch = {"decoder_input_tokens": jnp.asarray([ids[:-1]]),
               "decoder_target_tokens": jnp.asarray([ids[1:]]),
               "decoder_loss_weights": jnp.asarray([[0] * (len(ids) - 1 - n) + [1] * n])}
      logp = np.asarray(jax.nn.log_softmax(model.logits(params, batch), axis=-1))[0]
      expected = sum(logp[len(ids) - 1 - n + i, tok] for i, tok in enumerate(ids[-n:]))
      # float32: batches are padded to length buckets, the reference is unpadded
      np.testing.assert_allclose(choice["score"], expected, rtol=1e-5, atol=2e-5)

