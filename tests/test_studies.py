"""`linguamix study`: the grids equal the published designs, the presets carry the papers'
numbers, runs resume and fail independently, the report is built from the metric files,
and the `--plan` lines run as written."""

import csv
import dataclasses
import http.server
import json
import os
import re
import shlex
import subprocess
import threading

import gin
from linguamix.testing import judge_endpoint
import matplotlib.image
import pytest
import seqio

from linguamix import cli
from linguamix import studies
from linguamix.evals import open_prompts
from linguamix.studies import grid, run_commands, stats
from linguamix.studies import report as study_report
from linguamix.studies.base import Run
from linguamix.cli import flags
from linguamix.cli import study as study_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- the published designs (the five papers), written out here ---------------------------
PINCH_LANGS = "en ar zh cs et fi he hi it ru es sw".split()
PINCH_P = [0, 1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
BA_LANGS = "en bg cs de es fi fr ru zh".split()
OGX_SOURCES = ["limax", "bactrianx", "bactrianx_small"]
OGX_COMPOSITIONS = ["en", "de", "fr", "it", "es", "endefrites", "defrites",
                    "endefrites_sampled", "defrites_sampled"]
LI_METHODS = ["typo", "geo", "learn", "sem", "fam", "random"]
LI_SEEDS = [66, 42, 10]
LI_SCALING_K = list(range(1, 14)) + [20, 26]

PUBLISHED = {
    "pinch": [f"pinch_p{p}" for p in PINCH_P] + [f"pinch_partial_p{p}" for p in PINCH_P]
    + [f"pinch_nlang{n}" for n in range(1, 7)] + [f"pinch_bi_en_{x}" for x in PINCH_LANGS[1:]],
    "better_alpaca": [f"better_alpaca_mono_{l}" for l in BA_LANGS]
    + ["better_alpaca_multi", "better_alpaca_down_shared", "better_alpaca_down_disjoint"],
    "opengptx": [f"opengptx_{s}_{c}" for s in OGX_SOURCES for c in OGX_COMPOSITIONS],
    "linguistic": [f"li_{m}_k14_s{s}" for m in LI_METHODS for s in LI_SEEDS] + ["li_all"]
    + [f"li_{m}_k{k}_s{s}" for k in LI_SCALING_K for m in LI_METHODS for s in LI_SEEDS],
    "sphinx": ["sphinx_tiers", "sphinx_tiers_nolangit"],
}
COUNTS = {"pinch": 12 + 12 + 6 + 11, "better_alpaca": 9 + 1 + 2, "opengptx": 3 * 9,
          "linguistic": 6 * 3 + 1 + 6 * 15 * 3, "sphinx": 2}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_grid_is_the_published_design(name):
  import linguamix.evals  # noqa: F401
  import linguamix.mixtures  # noqa: F401
  runs = studies.STUDIES[name].grid()
  assert len(runs) == COUNTS[name] == len(PUBLISHED[name])
  assert sorted(r.name for r in runs) == sorted(PUBLISHED[name])
  for run in runs:  # each names a registered recipe mixture
    assert run.mixture in linguamix.mixtures.registry.FAMILY_OF, run.mixture
  study = studies.STUDIES[name]
  for task in tuple(study.evals) + tuple(study.smoke_evals):
    seqio.get_mixture_or_task(task)
  assert set(study.smoke_runs) <= {r.name for r in runs}


def test_runs_glob_and_tags():
  pinch = studies.STUDIES["pinch"]
  assert [r.name for r in pinch.grid(pattern="pinch_partial_p*")] == [
      f"pinch_partial_p{p}" for p in PINCH_P]
  partial = pinch.grid(pattern="pinch_partial_p10")[0]
  assert set(partial.tags["seen"]) == {"en", "ar", "fi", "it", "ru", "sw"}
  li = studies.STUDIES["linguistic"].grid(pattern="li_*_k14_*,li_all")
  assert len(li) == 19 and {r.tags["k"] for r in li} == {14, 52}


def _parse_train(cfg, run):
  """The training command's gin configuration, parsed as `python -m linguamix.train` does."""
  flags.parse_and_configure(run_commands.train_args(cfg, run), prog="t", description="",
                            run_gin="runs/finetune.gin", required_macros=())
  return lambda q: gin.query_parameter(q)


# paper numbers (Better Alpaca, linguistically-informed selection), where the papers give them.
PRESETS = {
    ("better_alpaca", "lora"): {"lora.LoraConfig.rank": 8, "lora.LoraConfig.alpha": 16.0,
                                "lora.LoraConfig.dropout": 0.05, "TRAIN_EPOCHS/macro.value": 5,
                                "LEARNING_RATE/macro.value": 3e-4, "BATCH_SIZE/macro.value": 128},
    ("better_alpaca", "full"): {"TRAIN_EPOCHS/macro.value": 3, "BATCH_SIZE/macro.value": 128},
    ("linguistic", "lora"): {"lora.LoraConfig.rank": 64, "lora.LoraConfig.alpha": 16.0,
                             "lora.LoraConfig.dropout": 0.05, "TRAIN_EPOCHS/macro.value": 4,
                             "LEARNING_RATE/macro.value": 3e-4, "BATCH_SIZE/macro.value": 32},
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_parse_and_carry_the_papers_numbers(name, tmp_path):
  study = studies.STUDIES[name]
  for preset in study.presets:
    cfg = run_commands.Config(study=study, out=str(tmp_path), model_gin="models/decoder_tiny.gin",
                          preset=preset, init="/ckpt/base")
    query = _parse_train(cfg, study.grid()[0])
    assert query("MIXTURE_OR_TASK_NAME/macro.value") == study.grid()[0].mixture
    assert query("INITIAL_CHECKPOINT_PATH/macro.value") == "/ckpt/base"
    assert query("USE_CACHED_TASKS/macro.value") is False
    assert isinstance(query("TRAIN_EPOCHS/macro.value"), int)
    for q, value in PRESETS.get((name, preset), {}).items():
      assert query(q) == pytest.approx(value), q
    if preset == study.default_preset:
      _check_default_preset(name)


def _check_default_preset(name):
  import re
  overrides = lambda: gin.query_parameter("linguamix.t5x_tasks.family_template.overrides")  # noqa: E731
  lengths = gin.query_parameter("TASK_FEATURE_LENGTHS/macro.value")
  if name == "better_alpaca":  # LoRA on q, k, v only; cutoff 512
    targets = gin.query_parameter("lora.LoraConfig.targets")
    for path, hit in (("attention/query", True), ("attention/key", True),
                      ("attention/value", True), ("attention/out", False), ("mlp/wi", False)):
      assert bool(re.search(targets, path)) is hit, path
    assert lengths["inputs"] + lengths["targets"] == 512
  if name == "linguistic":  # max length 768; Bactrian template
    assert lengths["inputs"] + lengths["targets"] == 768
    assert overrides()["bactrian_x"] == "bactrian"
  if name == "opengptx":  # the OpenGPT-X chat format for training data and MT-Bench-X
    assert overrides()["mt_bench_x"] == overrides()["lima_x"] == "opengptx_chat"


def test_user_bindings_override_the_preset(tmp_path):
  study = studies.STUDIES["better_alpaca"]
  cfg = run_commands.Config(study=study, out=str(tmp_path), model_gin="models/decoder_tiny.gin",
                        preset="lora", init="/ckpt", bindings=("LEARNING_RATE = 1e-4", "lora.LoraConfig.rank = 4"))
  query = _parse_train(cfg, study.grid()[0])
  assert query("LEARNING_RATE/macro.value") == pytest.approx(1e-4)
  assert query("lora.LoraConfig.rank") == 4


def test_command_errors(tmp_path, capsys):
  assert cli.main(["study", "pinch", "--out", str(tmp_path), "--plan"]) == 2
  assert "--model MODEL_GIN is required" in capsys.readouterr().err
  assert cli.main(["study", "pinch", "--out", str(tmp_path), "--model", "m.gin", "--plan"]) == 2
  assert "--init CKPT is required" in capsys.readouterr().err
  assert cli.main(["study", "pinch", "--out", str(tmp_path), "--smoke", "--runs", "nope*"]) == 2
  assert "--runs 'nope*' matches none" in capsys.readouterr().err
  assert cli.main(["study", "sphinx", "--out", str(tmp_path), "--smoke", "--preset", "lora"]) == 2
  assert "study sphinx has full" in capsys.readouterr().err


def test_plan_full_grid_one_exact_line_per_run(tmp_path):
  out = tmp_path / "li"
  assert cli.main(["study", "linguistic", "--model", "models/llama2_7b.gin", "--init", "/ckpt/l",
                   "--out", str(out), "--plan", "--gin.TRAIN_STEPS=100"]) == 0
  lines = [l for l in (out / "commands.sh").read_text().splitlines() if not l.startswith("#")]
  assert len(lines) == COUNTS["linguistic"]
  first = shlex.split(lines[0].split(" && ")[0])
  assert first[:3] == ["python", "-m", "linguamix.train"]
  assert "--gin_file=studies/linguistic.gin" in first
  assert '--gin.MIXTURE_OR_TASK_NAME="li_typo_k14_s66"' in first
  assert f'--gin.MODEL_DIR="{out}/runs/li_typo_k14_s66"' in first
  assert "--gin_bindings=TRAIN_STEPS = 100" in first
  evaluation = shlex.split(lines[0].split(" && ")[1])
  assert evaluation[:3] == ["python", "-m", "linguamix.eval"]
  assert '--gin.EVAL_TASKS=["xnli", "paws_x", "xcopa", "xstorycloze", "xwinograd"]' in evaluation


def test_plan_with_judge_pairs_against_the_baseline(tmp_path):
  out = tmp_path / "p"
  assert cli.main(["study", "pinch", "--model", "models/llama2_7b.gin", "--init", "/c", "--out",
                   str(out), "--plan", "--judge", "http://127.0.0.1:1/v1", "--runs",
                   "pinch_p0,pinch_p10", "--gin.TRAIN_STEPS=1"]) == 0
  text = (out / "commands.sh").read_text()
  pair = [l for l in text.splitlines() if "--answers-b" in l]
  assert len(pair) == 3  # MT-Bench-X en es it, pinch_p10 against pinch_p0
  # FastChat's answer files that evaluation writes, the run name as the model id
  assert f"{out}/runs/pinch_p0/eval/data/mt_bench_IT/model_answer/pinch_p0.jsonl" in pair[-1]
  assert f"{out}/runs/pinch_p10/eval/data/mt_bench_IT/model_answer/pinch_p10.jsonl" in pair[-1]


# --- statistics and the report, from metric files written by the real loggers -----------

def _write_eval(eval_dir, task, correct, extra_metrics=None):
  """A run's evaluation of `task` as MetricsLogger and ScoresLogger write it."""
  from linguamix.evals import loggers
  acc = 100.0 * sum(correct) / len(correct)
  metrics = {"acc": seqio.metrics.Scalar(acc), "num_examples": seqio.metrics.Scalar(len(correct))}
  metrics.update({k: seqio.metrics.Scalar(v) for k, v in (extra_metrics or {}).items()})
  loggers.MetricsLogger(output_dir=str(eval_dir))(task, 1, metrics, None, None, None)
  os.makedirs(eval_dir / "scores", exist_ok=True)
  with open(eval_dir / "scores" / f"{task}.jsonl", "w") as f:
    for i, c in enumerate(correct):
      f.write(json.dumps({"idx": i, "label": 0, "pred": 0 if c else 1, "pred_norm": 0,
                          "correct": bool(c)}) + "\n")
  tasks = sorted(p[:-5] for p in os.listdir(eval_dir / "metrics"))
  with open(eval_dir / "run.json", "w") as f:
    json.dump({"tasks": tasks}, f)


def test_stats_interval_and_paired_by_hand(tmp_path):
  _write_eval(tmp_path, "xcopa.it", [1, 1, 1, 0])
  # acc 75; per-example 100,100,100,0: sd (ddof 1) = 50, se = 25
  se, low, high = stats.interval({"acc": 75.0}, str(tmp_path), "xcopa.it", "acc")
  assert se == pytest.approx(25.0) and low == pytest.approx(75 - 1.959964 * 25, abs=1e-4)
  # a metrics file that carries its stderr (lm-eval's acc_stderr) is used as written
  assert stats.interval({"acc": 75.0, "acc_stderr": 3.0}, str(tmp_path), "xcopa.it", "acc")[0] == 3.0
  a = {i: 100.0 for i in range(10)}
  b = {i: (100.0 if i >= 5 else 0.0) for i in range(10)}
  result = stats.paired(a, b)
  # 5 discordant pairs, all for A: McNemar exact p = 2 * 0.5**5
  assert (result["only_a"], result["only_b"]) == (5, 0)
  assert result["p_value"] == pytest.approx(0.0625) and result["diff"] == pytest.approx(50.0)


def test_report_tables_come_from_the_metric_files(tmp_path):
  study = studies.STUDIES["linguistic"]
  cfg = run_commands.Config(study=study, out=str(tmp_path), model_gin="models/mt5_tiny.gin",
                        preset="lora", smoke=True)
  runs = [Run(f"li_{m}_k{k}_s{s}", f"li_{m}_k{k}_s{s}", {"method": m, "k": k, "seed": s})
          for m in ("random", "typo") for k in (2, 14) for s in (66, 42)]
  for i, run in enumerate(runs):
    for lang, n_right in (("it", 6 + i % 3), ("zh", 3 + i % 4)):
      _write_eval(tmp_path / "runs" / run.name / "eval", f"xcopa.{lang}",
                  [1] * n_right + [0] * (10 - n_right))
  broken = Run("li_sem_k14_s66", "li_sem_k14_s66", {"method": "sem", "k": 14, "seed": 66})
  os.makedirs(cfg.run_dir(broken))
  grid._fail(cfg, broken, "train", 2, "/x/train.log")
  path = study_report.build(cfg, runs + [broken, Run("li_all", "li_all", {"method": "all", "k": 52})])
  text = open(path).read()
  assert "failed in train (exit 2; log `/x/train.log`)" in text
  assert "| li_all | `li_all` | not run |" in text
  assert "LoRA settings act on decoder-only models; `models/mt5_tiny.gin` is not one" in text
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  for run in runs:  # every per-language value is the metric file's, exactly
    for lang in ("it", "zh"):
      with open(tmp_path / "runs" / run.name / "eval" / "metrics" / f"xcopa.{lang}.json") as f:
        want = json.load(f)["metrics"]["acc"]
      got = [r for r in rows if (r["run"], r["language"], r["metric"]) == (run.name, lang, "acc")]
      assert len(got) == 1 and float(got[0]["value"]) == want
  avg = [r for r in rows if (r["run"], r["language"]) == (runs[0].name, "avg")][0]
  assert float(avg["value"]) == pytest.approx((60 + 30) / 2)
  for png in ("methods_vs_random_xcopa_acc.png", "k_scaling_xcopa_acc.png"):
    assert f"figures/{png}" in text
    assert matplotlib.image.imread(tmp_path / "figures" / png).shape[0] > 100
  assert "p (McNemar)" in text


# --- the smoke setting: real training and evaluation on the tiny model -----------------

def _env():
  return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_in_process_executor_runs_the_command_layers_programs(tmp_path):
  """The study command hands the grid its entry points; the grid names none itself.
  A stage through them ends as the same program run by `python -m` would."""
  with pytest.raises(ValueError, match="no entry point for linguamix.eval, linguamix.cli"):
    grid.InProcess({"linguamix.train": lambda argv: 0})
  log = str(tmp_path / "logs" / "list.log")
  args = ["mixtures", "list"]
  for executor in (study_cli.executor("inprocess"), study_cli.executor("subprocess")):
    assert grid.execute("linguamix.cli", args, log, {}, executor) == 0
  assert grid.execute("linguamix.cli", ["no-such-command"], log, {},
                        study_cli.executor("inprocess")) == 2
  text = open(log).read()
  assert text.count("$ python -m linguamix.cli mixtures list\n") == 2
  assert text.count("pinch_40shot") == 2  # the same listing from both executors


def test_smoke_sphinx_plan_line_runs_as_written_then_resume_and_failure(tmp_path, capsys):
  out = tmp_path / "sphinx"
  assert cli.main(["study", "sphinx", "--smoke", "--out", str(out), "--plan"]) == 0
  lines = [l for l in (out / "commands.sh").read_text().splitlines() if not l.startswith("#")]
  assert len(lines) == 2
  # The first line, executed by a shell exactly as written.
  done = subprocess.run(["sh", "-c", lines[0]], env=_env(), capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  cfg = run_commands.Config(study=studies.STUDIES["sphinx"], out=str(out),
                        model_gin=run_commands.SMOKE_MODEL, preset="full", smoke=True)
  tiers, nolangit = studies.STUDIES["sphinx"].grid(smoke=True)
  assert grid.train_done(cfg, tiers) and grid.eval_done(cfg, tiers)
  stamp = os.path.getmtime(os.path.join(cfg.run_dir(tiers), "summary.json"))
  # The study resumes: the finished run is skipped; a broken run fails and the next goes on.
  broken = Run("broken", "no_such_mixture")
  statuses = grid.run_grid(cfg, [tiers, broken, nolangit], study_cli.executor("inprocess"))
  assert statuses[0] == {"run": "sphinx_tiers", "status": "skipped (done)"}
  assert statuses[1]["stage"] == "train" and statuses[1]["exit_status"] == 2
  assert "no_such_mixture" in open(statuses[1]["log"]).read()
  assert statuses[2] == {"run": "sphinx_tiers_nolangit", "status": "trained, evaluated"}
  assert os.path.getmtime(os.path.join(cfg.run_dir(tiers), "summary.json")) == stamp
  # The report, rebuilt from what exists.
  capsys.readouterr()
  assert cli.main(["study", "sphinx", "--out", str(out), "--report-only"]) == 0
  text = (out / "report.md").read_text()
  assert "2 of 2 runs evaluated" in text
  assert "figures/langit_delta_xcopa_acc.png" in text
  assert matplotlib.image.imread(out / "figures" / "langit_delta_xcopa_acc.png").shape[0] > 100


def test_smoke_pinch_draws_score_against_p(tmp_path, capsys):
  out = tmp_path / "pinch"
  assert cli.main(["study", "pinch", "--smoke", "--out", str(out), "--executor", "inprocess"]) == 0
  text = (out / "report.md").read_text()
  assert "3 of 3 runs evaluated" in text
  assert "LLM judge: skipped" in text
  for png in ("pinch_p_xcopa_acc.png", "pinch_partial_xcopa_acc.png"):
    assert f"figures/{png}" in text
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert {r["run"] for r in rows} == {"pinch_p0", "pinch_p100", "pinch_partial_p100"}
  with open(out / "runs" / "pinch_p100" / "eval" / "metrics" / "xcopa.zh.json") as f:
    want = json.load(f)
  got = [r for r in rows if (r["run"], r["language"], r["metric"]) == ("pinch_p100", "zh", "acc")]
  assert float(got[0]["value"]) == want["metrics"]["acc"]
  assert int(got[0]["num_examples"]) == want["num_examples"] == 20


class _PairJudge(http.server.BaseHTTPRequestHandler):
  """A real OpenAI-style endpoint: prefers the answer that reads GOODANSWER; [[C]] if none."""
  requests = 0

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    type(self).requests += 1
    user = body["messages"][1]["content"]
    good, bad = user.find("GOODANSWER"), user.find("MEHANSWER")
    verdict = "[[C]]" if good < 0 or bad < 0 else ("[[A]]" if good < bad else "[[B]]")
    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
    judge_endpoint.send_json(self, payload)

  def log_message(self, *args):
    pass


def test_judge_pairs_each_run_against_the_baseline_on_a_loopback_endpoint(
    real_data, monkeypatch, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
  _PairJudge.requests = 0
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PairJudge)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  try:
    study = studies.STUDIES["pinch"]
    cfg = run_commands.Config(study=study, out=str(tmp_path), model_gin="models/mt5_tiny.gin",
                          preset="full", judge=f"http://127.0.0.1:{httpd.server_address[1]}/v1",
                          judge_model="j")
    runs = study.grid(pattern="pinch_p0,pinch_p10")
    for run in runs:  # evaluations as they are written; p10's even answers are good
      eval_dir = tmp_path / "runs" / run.name / "eval"
      for lang in ("en", "es", "it"):
        questions = open_prompts.mt_bench_x_questions(lang)
        lines = [open_prompts.answer_record(q["question_id"], run.name, [
            "GOODANSWER" if run.name == "pinch_p10" and i % 2 == 0 else "MEHANSWER"] * 2)
            for i, q in enumerate(questions)]
        path = open_prompts.answer_path(str(eval_dir), lang, run.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
          f.writelines(json.dumps(l) + "\n" for l in lines)
      with open(eval_dir / "run.json", "w") as f:
        json.dump({"tasks": list(cfg.evals)}, f)
    assert grid.run_judge(cfg, runs, study_cli.executor("inprocess")) == []
    assert _PairJudge.requests == 3 * 80 * 2 * 2  # p10 against p0, 3 languages, 2 turns, 2 orders
    table = study_report.table_lib.build(runs, cfg.eval_dir, cfg.judge_dir)
    # p10 wins its 40 good answers in both orders; the other 40 are ties: (40 + 20) / 80
    for lang in ("en", "es", "it"):
      for family in ("judge_pair", "judge_pair_turn1", "judge_pair_turn2"):
        assert table.get("pinch_p10", family, lang, "win_rate") == pytest.approx(75.0)
    assert grid.run_judge(cfg, runs, study_cli.executor("inprocess")) == [] and _PairJudge.requests == 960
  finally:
    httpd.shutdown()
    httpd.server_close()


class _GradeJudge(http.server.BaseHTTPRequestHandler):
  """A real OpenAI-style endpoint grading the last `R<n>` of the prompt (turn 2's answer
  in a multi-turn prompt, which shows the whole conversation)."""

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    rating = re.findall(r"\bR(\d+)\b", body["messages"][-1]["content"])[-1]
    payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                   "content": f"Rating: [[{rating}]]"}}]}).encode()
    judge_endpoint.send_json(self, payload)

  def log_message(self, *args):
    pass


def test_opengptx_reports_mt_bench_x_per_language_turn_and_composition(
    real_data, monkeypatch, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GradeJudge)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  # Turn-1 and turn-2 ratings each run's answers carry, per language.
  marks = {"opengptx_limax_de": {"de": (6, 4), "en": (3, 3)},
           "opengptx_limax_en": {"de": (2, 2), "en": (7, 5)},
           "opengptx_limax_endefrites": {"de": (8, 4), "en": (5, 5)}}
  try:
    study = dataclasses.replace(studies.STUDIES["opengptx"], evals=("mt_bench_x.de", "mt_bench_x.en"))
    cfg = run_commands.Config(study=study, out=str(tmp_path), model_gin="models/mt5_tiny.gin",
                          preset="full", judge=f"http://127.0.0.1:{httpd.server_address[1]}/v1",
                          judge_model="gpt-4")
    runs = study.grid(pattern=",".join(marks))
    for run in runs:
      eval_dir = tmp_path / "runs" / run.name / "eval"
      for lang, (t1, t2) in marks[run.name].items():
        path = open_prompts.answer_path(str(eval_dir), lang, run.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
          for q in open_prompts.mt_bench_x_questions(lang):
            f.write(json.dumps(open_prompts.answer_record(
                q["question_id"], run.name, [f"Antwort R{t1}", f"Antwort R{t2}"])) + "\n")
      with open(eval_dir / "run.json", "w") as f:
        json.dump({"tasks": list(cfg.evals)}, f)
    assert grid.run_judge(cfg, runs, study_cli.executor("inprocess")) == []
  finally:
    httpd.shutdown()
    httpd.server_close()
  # FastChat's judgment file beside each run's answers.
  assert (tmp_path / "runs/opengptx_limax_de/eval/data/mt_bench_DE/model_judgment/"
          "gpt-4_single.jsonl").read_text().count("\n") == 160
  text = open(study_report.build(cfg, runs)).read()
  with open(tmp_path / "results.csv") as f:
    rows = {(r["run"], r["family"], r["language"], r["metric"]): float(r["value"])
            for r in csv.DictReader(f)}
  for run, by_lang in marks.items():
    for lang, (t1, t2) in by_lang.items():
      assert rows[(run, "judge_single_turn1", lang, "score")] == t1
      assert rows[(run, "judge_single_turn2", lang, "score")] == t2
      assert rows[(run, "judge_single", lang, "score")] == (t1 + t2) / 2
      assert rows[(run, "judge_single", lang, "score_math")] == (t1 + t2) / 2
  assert rows[("opengptx_limax_endefrites", "judge_single", "avg", "score")] == (6 + 5) / 2
  assert "### judge_single (score)" in text and "### judge_single_turn2 (score)" in text
  # Per language and the average, ± the standard error over both turns' judgements.
  assert "| opengptx_limax_endefrites | 6.00 ± 0.16 | 5.00 ± 0.00 | 5.50 ± 0.08 |" in text
  # Mono vs cross-lingual: endefrites minus the run tuned on each language alone.
  assert "### judge_single (score): multilingual minus monolingual" in text
  assert "| opengptx_limax_endefrites | +1.00 | -1.00 | +0.00 |" in text
  assert "### judge_single_turn1 (score): multilingual minus monolingual" in text
  assert "| opengptx_limax_endefrites | +2.00 | -2.00 | +0.00 |" in text
  assert "figures/multi_minus_mono_judge_single_turn2_score.png" in text
