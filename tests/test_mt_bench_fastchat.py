"""linguamix's MT-Bench-X judge checked against FastChat's own `llm_judge` (fschat 0.2.36,
with the MT-Bench-X release's German questions, GPT-4 references and translated judge
prompts): the same answers judged by both against one recording loopback endpoint must
send byte-identical messages, and FastChat's `show_result` must print linguamix's scores.

FastChat runs as its command-line programs (`gen_judgment`, `show_result`) in their own
processes, in FastChat's `data/{bench}/` layout, with openai 0.28's client pointed at the
loopback server."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from linguamix.testing.judge_endpoint import RecordingJudge
from linguamix import cli
from linguamix.evals import open_prompts

BENCH = "mt_bench_DE"
RELEASE = pathlib.Path(__file__).resolve().parents[1] / "linguamix/evals/bundled/mt_bench_x"
MODELS = ("model_a", "model_b")


def _answers(questions, model):
  # Answers with what str.format and JSON must carry through untouched: braces,
  # quotes, backslashes, non-Latin text, empty turns, a literal `{answer}`.
  out = []
  for i, q in enumerate(questions):
    turns = [f"{model} antwortet auf {q['question_id']}: Grüße {{x}} \"zitat\" \\n {'ß' * (i % 3)}",
             "" if i % 11 == 0 else f" Zweite Antwort {{answer}} für {q['question_id']} — 東京\n"]
    out.append(open_prompts.answer_record(q["question_id"], model, turns))
  return out


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  """Two copies of one benchmark folder in FastChat's layout: FastChat's and linguamix's."""
  questions = [json.loads(l) for l in (RELEASE / "data" / BENCH / "question.jsonl").read_text().splitlines()]
  roots = {}
  for who in ("fastchat", "linguamix"):
    root = tmp_path_factory.mktemp(who)
    data = root / "data" / BENCH
    (data / "reference_answer").mkdir(parents=True)
    (data / "model_answer").mkdir()
    shutil.copy(RELEASE / "data" / BENCH / "question.jsonl", data / "question.jsonl")
    shutil.copy(RELEASE / "data" / BENCH / "reference_answer" / "gpt-4.jsonl",
                data / "reference_answer" / "gpt-4.jsonl")
    for model in MODELS:
      (data / "model_answer" / f"{model}.jsonl").write_text(
          "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in _answers(questions, model)))
    roots[who] = root
  return roots


def _fastchat(args, cwd, base_url):
  env = dict(os.environ, OPENAI_API_BASE=base_url, OPENAI_API_KEY="sk-test")
  done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, input="\n",
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _linguamix(bench, base_url, extra=()):
  root = bench["linguamix"]
  args = ["judge", "--lang", "de", "--judge-model", "gpt-4", "--base-url", base_url,
          "--cache", str(root / "cache"), "--workers", "4", "--out", str(root / "summary.json"),
          "--answers", str(root / "data" / BENCH / "model_answer" / "model_a.jsonl"), *extra]
  assert cli.main(args) == 0
  return json.loads((root / "summary.json").read_text())


def _sent(bodies):
  """The messages of every request, as the bytes on the wire would spell them."""
  return sorted(json.dumps(b["messages"], ensure_ascii=False) for b in bodies)


def _params(bodies):
  return {json.dumps({k: v for k, v in b.items() if k != "messages"}, sort_keys=True)
          for b in bodies}


def _show_result(args, cwd):
  """FastChat's printed table rows: (section, model, score)."""
  out = subprocess.run([sys.executable, "-m", "fastchat.llm_judge.show_result", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=300, check=True).stdout
  rows, section = [], None
  for line in out.splitlines():
    if line.startswith("##########"):
      section = line.strip("# ").strip()
    elif section and line.split()[:1] and line.split()[0] in MODELS:
      rows.append((section, line.split()[0], float(line.split()[-1])))
  return out, rows


@pytest.mark.slow
def test_single_grading_matches_fastchat(bench, capsys):
  with RecordingJudge() as server:
    _fastchat(["fastchat.llm_judge.gen_judgment", "--bench-name", BENCH, "--mode", "single",
               "--judge-model", "gpt-4", "--model-list", "model_a",
               "--judge-file", str(RELEASE / "data" / BENCH / "judge_prompts.jsonl")],
              bench["fastchat"], server.base_url)
    theirs = server.take()
    summary = _linguamix(bench, server.base_url)
    ours = server.take()
  assert len(ours) == len(theirs) == 160  # 80 questions x 2 turns
  assert _sent(ours) == _sent(theirs)
  assert _params(ours) == _params(theirs) == {json.dumps(
      {"max_tokens": 2048, "model": "gpt-4", "n": 1, "temperature": 0}, sort_keys=True)}

  read = lambda who: {(j["question_id"], j["turn"]): j for j in map(json.loads, (
      bench[who] / "data" / BENCH / "model_judgment" / "gpt-4_single.jsonl").read_text().splitlines())}
  fastchat_j, linguamix_j = read("fastchat"), read("linguamix")
  assert fastchat_j.keys() == linguamix_j.keys()
  for key, theirs_j in fastchat_j.items():
    for field in ("model", "judge", "user_prompt", "judgment", "score", "turn"):
      assert linguamix_j[key][field] == theirs_j[field], (key, field)
  unparsed = sum(j["score"] == -1 for j in fastchat_j.values())
  assert unparsed > 0 and summary["num_unparsed"] == unparsed  # kept and counted, as -1

  # FastChat's show_result on each file prints the same table, and it is linguamix's.
  ours_out, ours_rows = _show_result(["--bench-name", "mt_bench", "--input-file", str(
      bench["linguamix"] / "data" / BENCH / "model_judgment" / "gpt-4_single.jsonl")], ".")
  theirs_out, theirs_rows = _show_result(["--bench-name", "mt_bench", "--input-file", str(
      bench["fastchat"] / "data" / BENCH / "model_judgment" / "gpt-4_single.jsonl")], ".")
  assert ours_out.split("\n", 2)[2] == theirs_out.split("\n", 2)[2]  # all but the file name
  table = {(r["turn"], r["category"]): r for r in summary["table"]}
  expected = {"First turn": table[(1, "all")], "Second turn": table[(2, "all")],
              "Average": table[("all", "all")]}
  assert [s for s, _, _ in ours_rows] == ["First turn", "Second turn", "Average"]
  for section, model, value in ours_rows:
    assert model == "model_a"
    assert value == pytest.approx(expected[section]["mean"], abs=5e-6)
  out = capsys.readouterr().out
  assert f"| all | all | {summary['score']:.2f} |" in out


@pytest.mark.slow
def test_pairwise_matches_fastchat(bench):
  with RecordingJudge() as server:
    _fastchat(["fastchat.llm_judge.gen_judgment", "--bench-name", BENCH, "--mode", "pairwise-all",
               "--judge-model", "gpt-4", "--model-list", *MODELS,
               "--judge-file", str(RELEASE / "data" / BENCH / "judge_prompts.jsonl")],
              bench["fastchat"], server.base_url)
    theirs = server.take()
    summary = _linguamix(bench, server.base_url, ["--answers-b", str(
        bench["linguamix"] / "data" / BENCH / "model_answer" / "model_b.jsonl")])
    ours = server.take()
  assert len(ours) == len(theirs) == 320  # 80 questions x 2 turns x 2 orders
  assert _sent(ours) == _sent(theirs)
  assert _params(ours) == _params(theirs)

  read = lambda who: {(j["question_id"], j["turn"]): j for j in map(json.loads, (
      bench[who] / "data" / BENCH / "model_judgment" / "gpt-4_pair.jsonl").read_text().splitlines())}
  fastchat_j, linguamix_j = read("fastchat"), read("linguamix")
  assert fastchat_j.keys() == linguamix_j.keys()
  for key, theirs_j in fastchat_j.items():
    for field in ("model_1", "model_2", "g1_winner", "g2_winner", "judge", "g1_user_prompt",
                  "g1_judgment", "g2_user_prompt", "g2_judgment", "turn"):
      assert linguamix_j[key][field] == theirs_j[field], (key, field)
  errors = sum("error" in (j["g1_winner"], j["g2_winner"]) for j in fastchat_j.values())
  assert errors > 0 and summary["num_errors"] == errors

  # show_result's adjusted win rate of model_a over both turns is linguamix's.
  out = subprocess.run([sys.executable, "-m", "fastchat.llm_judge.show_result", "--mode",
                        "pairwise-all", "--input-file", str(
                            bench["linguamix"] / "data" / BENCH / "model_judgment" / "gpt-4_pair.jsonl")],
                       capture_output=True, text=True, timeout=300, check=True).stdout
  row = next(l.split() for l in out.splitlines() if l.startswith("model_a"))
  assert float(row[-1]) * 100 == pytest.approx(summary["win_rate_1"], abs=1e-3)
