"""Open-ended evaluation: language consistency, MT-Bench-X in its release layout with both
turns generated, the LLM judge against a real OpenAI-compatible HTTP server on loopback.
(FastChat's own llm_judge checks the judge's messages in test_mt_bench_fastchat.py.)"""

import http.server
import io
import json
import re
import shutil
import subprocess
import threading
import time

import gin
import numpy as np
import pytest
import seqio

import linguamix.evals  # noqa: F401
from linguamix.augment import client as client_lib
from linguamix.evals import consistency
from linguamix.evals import data
from linguamix.evals import judge
from linguamix.evals import open_prompts
from linguamix.evals import registry
from linguamix.evals import runner
from evals_helpers import LookupGenerator
from linguamix.testing import judge_endpoint

# Git blob ids of the MT-Bench-X release files (github.com/Modalities/MT-Bench-X at
# f8972dc70595a7e981ada7f2ac5e7c191ab12441, `git ls-tree -r`), read 2026-12-07: the
# bundled copy must be those files at those paths.
RELEASE_BLOBS = {
    "LICENSE": "261eeb9e9f8b2b4b0d119366dda99c6fd7d35c64",
    "data/mt_bench_DE/judge_prompts.jsonl": "c021c41f9ad91375fd9390482fc90e4458c17f0f",
    "data/mt_bench_DE/question.jsonl": "2ecd444108c520f06c54ee85c2786a8c24f582e9",
    "data/mt_bench_DE/reference_answer/gpt-4.jsonl": "9fadf326745cdbc31c1218c20aec6ba9553fac81",
    "data/mt_bench_EN/judge_prompts.jsonl": "4ec7524cbcdf308766fddc52df31e203316ad75f",
    "data/mt_bench_EN/question.jsonl": "a1459e0b9febee8419ad29784d1b3f3834c1e657",
    "data/mt_bench_EN/reference_answer/gpt-4.jsonl": "bcaefae11a63903d0e398fe1483377641a9d99a1",
    "data/mt_bench_ES/judge_prompts.jsonl": "c6b69ecb4d4d03c91d5029fbec9cca4be0cc84de",
    "data/mt_bench_ES/question.jsonl": "ec7164e447b0d1a20f816c0a25f36c7c7529cc06",
    "data/mt_bench_ES/reference_answer/gpt-4.jsonl": "8bae12c8dca25da864deacad0daf432121376365",
    "data/mt_bench_FR/judge_prompts.jsonl": "59919f7a3952ecd352782cb27700971ced4c0bc0",
    "data/mt_bench_FR/question.jsonl": "2905e00b599870a100b48555564eb55f020e5819",
    "data/mt_bench_FR/reference_answer/gpt-4.jsonl": "3ffeb4d3b832a91f2c7d23880097c8a91b7b77a2",
    "data/mt_bench_IT/judge_prompts.jsonl": "4d29fa59a447fc949bebeafc4a41cfdf3bc33eff",
    "data/mt_bench_IT/question.jsonl": "678ac8db6a7f91017a272cf83b23358feaa23411",
    "data/mt_bench_IT/reference_answer/gpt-4.jsonl": "ff0eb8514d0eec496692a56debaf4a0aaeb6b2df",
}


def test_language_consistency():
  result = consistency.language_consistency([
      ("de", "Das Wetter ist heute sehr schön und wir gehen spazieren."),
      ("de", "The weather is very nice today and we are going for a walk."),
      ("fr", "Il fait très beau aujourd'hui et nous allons nous promener."),
      ("fr", "")])
  assert result["de"] == {"consistency": 50.0, "num_answers": 2, "most_common_other": "en"}
  assert result["fr"]["consistency"] == 50.0 and result["fr"]["most_common_other"] == "(empty)"


def test_bundled_mt_bench_x_is_the_release(real_data):
  root = real_data / "mt_bench_x"
  files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
  assert files == sorted(RELEASE_BLOBS)
  for rel, blob in RELEASE_BLOBS.items():
    got = subprocess.run(["git", "hash-object", str(root / rel)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert got == blob, rel


def test_mt_bench_x_reads_a_clone_of_the_release(real_data, tmp_path, monkeypatch):
  # A clone holds more than linguamix reads (the authors' originals, corrections, GPT-4's
  # judgements): the loader takes the release's paths and ignores the rest.
  clone = tmp_path / "mt_bench_x"
  shutil.copytree(real_data / "mt_bench_x", clone)
  for extra in ("question_original.jsonl", "corrections.jsonl", "judge_prompts_v2.jsonl",
                "model_judgment/gpt-4_single.jsonl"):
    (clone / "data/mt_bench_IT" / extra).parent.mkdir(parents=True, exist_ok=True)
    (clone / "data/mt_bench_IT" / extra).write_text('{"not": "read"}\n')
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(tmp_path))
  questions = open_prompts.mt_bench_x_questions("it")
  assert len(questions) == 80 and all(len(q["turns"]) == 2 for q in questions)
  assert {q["category"] for q in questions} == {
      "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
  refs = open_prompts.mt_bench_x_references("it")
  assert len(refs) == 30 and all(len(t) == 2 for t in refs.values())
  assert {q["category"] for q in questions if q["question_id"] in refs} == set(judge.REFERENCE_CATEGORIES)
  assert set(open_prompts.mt_bench_x_judge_prompts("it")) == {
      f"{k}{m}" for k in ("single-v1", "single-math-v1", "pair-v2", "pair-math-v1")
      for m in ("", "-multi-turn")}
  first = json.loads((clone / "data/mt_bench_IT/question.jsonl").read_text().splitlines()[0])
  ds = seqio.get_mixture_or_task("mt_bench_x.it").get_dataset(None, split="default", shuffle=False)
  rows = list(ds.as_numpy_iterator())
  assert len(rows) == 80
  # The Alpaca template without input (the default: Stanford Alpaca's prompt), byte-exact.
  assert rows[0]["inputs_pretokenized"].decode() == (
      "Below is an instruction that describes a task. Write a response that appropriately "
      "completes the request.\n\n### Instruction:\n" + first["turns"][0] + "\n\n### Response:\n")


def test_mt_bench_x_bad_files(real_data, tmp_path, monkeypatch):
  shutil.copytree(real_data / "mt_bench_x", tmp_path / "mt_bench_x")
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(tmp_path))
  path = tmp_path / "mt_bench_x/data/mt_bench_FR/question.jsonl"
  lines = path.read_text().splitlines()
  q = json.loads(lines[1])
  lines[1] = json.dumps(dict(q, turns=q["turns"][:1]), ensure_ascii=False)
  path.write_text("\n".join(lines) + "\n")
  data.read_text.cache_clear()
  with pytest.raises(data.MalformedRowError,
                     match=re.escape(f"{path}:2: question_id '{q['question_id']}' has 1 turns; "
                                     "MT-Bench-X questions have 2")):
    open_prompts.mt_bench_x_questions("fr")
  shutil.rmtree(tmp_path / "mt_bench_x/data/mt_bench_ES")
  with pytest.raises(FileNotFoundError, match="mt_bench_x/data/mt_bench_ES/question.jsonl"):
    open_prompts.mt_bench_x_questions("es")


def test_conversation_prompts():
  from linguamix.t5x_tasks import templates
  turns, answers = ["Name a {colour}.", "Another one."], ["Blue."]
  assert templates.conversation_prompt(templates.opengptx_chat, turns, answers) == (
      "User: Name a {colour}.\nAssistant: Blue.</s>\nUser: Another one.\nAssistant: ")
  # A single-turn template is repeated: prompt, the model's answer, a blank line, prompt.
  head = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n")
  assert templates.conversation_prompt(templates.alpaca, turns, answers) == (
      head + "Name a {colour}.\n\n### Response:\nBlue.\n\n" + head + "Another one.\n\n### Response:\n")
  assert templates.conversation_prompt(templates.bactrian, turns[:1], ()) == \
      "### Input:\nName a {colour}.\n\n### Output:\n"
  with pytest.raises(ValueError, match="2 turns need 1 earlier answers, got 0"):
    templates.conversation_prompt(templates.alpaca, turns, ())


class _Echo(LookupGenerator):
  """Answers each prompt with the table's text; records the prompts it was given."""

  def predict_batch_with_aux(self, params, batch, rng=None, **kw):
    for tokens in batch["encoder_input_tokens"]:
      if tokens.any():
        self.requests.append(self._decode(tokens))
    return super().predict_batch_with_aux(params, batch, rng, **kw)


def test_two_turn_generation_with_the_chat_template(real_data, tmp_path, monkeypatch):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  questions = open_prompts.mt_bench_x_questions("de")[:4]
  first = {q["question_id"]: f"Erste Antwort auf {q['question_id']}." for q in questions}
  second = {q["question_id"]: f"Zweite Antwort auf {q['question_id']}." for q in questions}
  # The OpenGPT-X chat format, written out here: turn 2 holds turn 1's question and the
  # model's own answer, closed by </s>, then the second question.
  table = {}
  for q in questions:
    q1, q2 = q["turns"]
    table[f"User: {q1}\nAssistant: "] = first[q["question_id"]]
    table[f"User: {q1}\nAssistant: {first[q['question_id']]}</s>\nUser: {q2}\nAssistant: "] = \
        second[q["question_id"]]
  model = _Echo(registry.output_features()["targets"].vocabulary, table)
  with gin.unlock_config():
    gin.bind_parameter("linguamix.t5x_tasks.family_template.overrides",
                       {"mt_bench_x": "opengptx_chat"})
  try:
    # Answers up to 64 tokens (measured lengths would follow the references, "" here).
    results = runner.evaluate(model, None, "mt_bench_x.de", str(tmp_path / "out"), jit=False,
                              num_examples=4, model_id="opengptx_limax_de",
                              sequence_length={"inputs": 1024, "targets": 64})
  finally:
    gin.clear_config()
  assert sorted(model.requests) == sorted(table)  # every prompt of both turns, nothing else
  # Language consistency per turn: German answers in both.
  assert results["mt_bench_x.de"]["consistency"] == 100.0
  assert results["mt_bench_x_turn2.de"]["consistency"] == 100.0
  assert (tmp_path / "out/metrics/mt_bench_x_turn2.de.json").exists()
  # FastChat's answer file, both turns per question.
  lines = (tmp_path / "out/data/mt_bench_DE/model_answer/opengptx_limax_de.jsonl").read_text().splitlines()
  records = [json.loads(l) for l in lines]
  assert [r["question_id"] for r in records] == [q["question_id"] for q in questions]
  for r in records:
    assert set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert r["model_id"] == "opengptx_limax_de"
    assert r["choices"] == [{"index": 0, "turns": [first[r["question_id"]], second[r["question_id"]]]}]


class _Judge(http.server.BaseHTTPRequestHandler):
  """Grades the last `R<n>` marker of the prompt (turn 2's answer in a conversation; no
  marker: a reply without a rating). Pairwise: compares A's last marker with B's (none
  counts 0), except on 'biased' questions, where it always says [[A]]."""
  requests = []

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    type(self).requests.append((self.headers.get("Authorization"), body))
    system, user = (m["content"] for m in body["messages"])
    marks = lambda text: [int(m) for m in re.findall(r"\bR(\d+)\b", text)] or [0]
    if "[[A]]" in system:  # pairwise, in any language: B's part follows its first mention
      b_start = re.search(r"Assist\w* B", user).start()
      a, b = marks(user[:b_start])[-1], marks(user[b_start:])[-1]
      text = "[[A]]" if "biased" in user or a > b else "[[B]]" if b > a else "[[C]]"
    else:
      marks = [int(m) for m in re.findall(r"\bR(\d+)\b", user)]
      text = f"Rating: [[{marks[-1]}]]" if marks else "I will not rate this."
    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok " + text}}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
    judge_endpoint.send_json(self, payload)

  def log_message(self, *args):
    pass


@pytest.fixture
def server():
  _Judge.requests = []
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
  httpd.shutdown()
  httpd.server_close()


QUESTIONS = [{"question_id": "1", "category": "writing", "turns": ["Write a poem.", "Shorter."]},
             {"question_id": "2", "category": "math", "turns": ["2+2?", "And 3+3?"]},
             {"question_id": "3", "category": "writing", "turns": ["biased question", "Again."]}]
REFS = {"2": ["4", "6"]}
A = {"1": ["poem R8", "short R6"], "2": ["R4", "R10"], "3": ["no mark", "R2"]}
B = {"1": ["poem R3", "short R9"], "2": ["R5", "R1"], "3": ["R1", "R1"]}


def test_judge_single_both_turns(real_data, monkeypatch, server, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-key")
  prompts = open_prompts.mt_bench_x_judge_prompts("en")
  client = judge.judge_client("judge-model", base_url=server, backoff=0.01)
  cache = str(tmp_path / "cache")
  result = judge.single(client, "en", QUESTIONS, A, prompts, REFS, cache, "m", workers=2)
  table = {(r["turn"], r["category"]): r for r in result["table"]}
  # Turn 1: 8, 4, no rating (-1, counted, not in the mean); turn 2: 6, 10, 2.
  assert table[(1, "all")] == {"turn": 1, "category": "all", "mean": 6.0, "stderr": 2.0,
                               "count": 2, "num_unparsed": 1}
  assert table[(2, "all")]["mean"] == 6.0 and table[(2, "all")]["count"] == 3
  assert table[(2, "all")]["stderr"] == pytest.approx(np.std([6, 10, 2], ddof=1) / np.sqrt(3))
  assert table[(1, "writing")] == {"turn": 1, "category": "writing", "mean": 8.0, "stderr": None,
                                   "count": 1, "num_unparsed": 1}
  assert table[("all", "math")]["mean"] == 7.0 and table[("all", "math")]["count"] == 2
  assert result["score"] == pytest.approx((8 + 4 + 6 + 10 + 2) / 5) and result["num_unparsed"] == 1
  assert [j["score"] for j in result["judgments"] if j["question_id"] == "3"] == [-1, 2]
  names = {(j["question_id"], j["turn"]): j["judge"][1] for j in result["judgments"]}
  assert names == {("1", 1): "single-v1", ("3", 1): "single-v1", ("2", 1): "single-math-v1",
                   ("1", 2): "single-v1-multi-turn", ("3", 2): "single-v1-multi-turn",
                   ("2", 2): "single-math-v1-multi-turn"}
  # Turn 2 shows the whole conversation, and both reference turns for math.
  turn2 = next(b for _, b in _Judge.requests if "And 3+3?" in b["messages"][1]["content"])
  user = turn2["messages"][1]["content"]
  assert "### User:\n2+2?\n\n### Reference answer:\n4\n\n### User:\nAnd 3+3?\n\n" \
         "### Reference answer:\n6" in user
  assert "### Assistant A:\nR4\n\n### User:\nAnd 3+3?\n\n### Assistant A:\nR10" in user
  assert {k: turn2[k] for k in ("n", "temperature", "max_tokens")} == {"n": 1, "temperature": 0,
                                                                      "max_tokens": 2048}
  assert len(_Judge.requests) == 6
  assert all(auth == "Bearer sk-secret-test-key" for auth, _ in _Judge.requests)
  # A re-run is answered from the cache; the key is written nowhere.
  again = judge.single(client, "en", QUESTIONS, A, prompts, REFS, cache, "m")
  assert again["table"] == result["table"] and len(_Judge.requests) == 6
  assert not any("sk-secret" in p.read_text() for p in (tmp_path / "cache").iterdir())
  # A math question without its reference is an error naming the file and question.
  with pytest.raises(ValueError, match=r"mt_bench_EN/reference_answer/gpt-4.jsonl: no "
                                       r"reference answer for math question '2'"):
    judge.single(client, "en", QUESTIONS, A, prompts, {}, cache, "m")


def test_judge_pairwise_both_turns_both_orders(real_data, monkeypatch, server, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  prompts = open_prompts.mt_bench_x_judge_prompts("en")
  client = judge.judge_client("judge-model", base_url=server, backoff=0.01)
  result = judge.pairwise(client, "en", QUESTIONS, A, B, prompts, REFS, str(tmp_path / "c"),
                          "a", "b")
  assert len(_Judge.requests) == 3 * 2 * 2
  games = {(j["question_id"], j["turn"]): (j["g1_winner"], j["g2_winner"]) for j in result["judgments"]}
  # q1: A wins turn 1 (8 > 3), B turn 2 (9 > 6); q2: B then A; q3: "biased" -> [[A]] in
  # both orders, which is model_1 then model_2: a disagreement, counted as a tie.
  assert games == {("1", 1): ("model_1", "model_1"), ("1", 2): ("model_2", "model_2"),
                   ("2", 1): ("model_2", "model_2"), ("2", 2): ("model_1", "model_1"),
                   ("3", 1): ("model_1", "model_2"), ("3", 2): ("model_1", "model_2")}
  table = {r["turn"]: r for r in result["table"]}
  assert table[1] == {"turn": 1, "wins_1": 1, "wins_2": 1, "ties": 1, "num_errors": 0,
                      "win_rate_1": 50.0}
  assert table["all"]["wins_1"] == 2 and table["all"]["ties"] == 2
  assert {j["judge"][1] for j in result["judgments"] if j["question_id"] == "2"} == {
      "pair-math-v1", "pair-math-v1-multi-turn"}
  # Order g2 shows model_2's conversation as assistant A.
  g2 = next(j for j in result["judgments"] if (j["question_id"], j["turn"]) == ("1", 2))
  assert g2["g2_user_prompt"].index("short R9") < g2["g2_user_prompt"].index("short R6")


def test_unreachable_judge_keeps_finished(real_data, monkeypatch, server, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  prompts = open_prompts.mt_bench_x_judge_prompts("en")
  cache = str(tmp_path / "cache")
  judge.single(judge.judge_client("j", base_url=server), "en", QUESTIONS[:1], A, prompts, REFS,
               cache, "m")
  dead = judge.judge_client("j", base_url="http://127.0.0.1:9/v1", max_retries=2, backoff=0.01)
  with pytest.raises(client_lib.EndpointError, match="unreachable after 3 attempts"):
    judge.single(dead, "en", QUESTIONS, A, prompts, REFS, cache, "m")
  # The two finished judgements survived and are reused: no request is needed for them.
  result = judge.single(dead, "en", QUESTIONS[:1], A, prompts, REFS, cache, "m")
  assert [j["score"] for j in result["judgments"]] == [8, 6]


class _FailingJudge(_Judge):
  """Refuses the key at once for the 'biased' question; the others answer slowly."""

  def do_POST(self):
    length = int(self.headers["Content-Length"])
    body = self.rfile.read(length)
    if b"biased" in body:
      self.send_response(401)
      self.send_header("Content-Length", "0")
      self.end_headers()
      return
    time.sleep(0.5)
    self.rfile = io.BytesIO(body)
    super().do_POST()


def test_judgements_in_flight_when_the_endpoint_fails_are_kept(real_data, monkeypatch, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  _Judge.requests = []
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingJudge)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  questions = [QUESTIONS[0], QUESTIONS[2]]
  try:
    prompts = open_prompts.mt_bench_x_judge_prompts("en")
    cache = str(tmp_path / "cache")
    client = judge.judge_client("j", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    with pytest.raises(client_lib.EndpointError):
      judge.single(client, "en", questions, A, prompts, REFS, cache, "m", workers=4)
  finally:
    httpd.shutdown()
    httpd.server_close()
  # Both slow judgements of question 1 were answered while the 401 stopped the run.
  dead = judge.judge_client("j", base_url="http://127.0.0.1:9/v1", max_retries=0, backoff=0.01)
  result = judge.single(dead, "en", questions[:1], A, prompts, REFS, cache, "m")
  assert [j["score"] for j in result["judgments"]] == [8, 6]


def _answer_file(path, questions, turns_of):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(open_prompts.answer_record(
      q["question_id"], path.stem, turns_of(i)), ensure_ascii=False) + "\n"
      for i, q in enumerate(questions)))


def test_judge_command(real_data, monkeypatch, server, tmp_path, capsys):
  from linguamix import cli
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  monkeypatch.setenv("OPENAI_BASE_URL", server)
  questions = open_prompts.mt_bench_x_questions("de")
  answers = tmp_path / "eval/data/mt_bench_DE/model_answer"
  # Model a: R7 on even questions in turn 1 (odd ones: no rating), R5 in turn 2.
  _answer_file(answers / "a.jsonl", questions, lambda i: [
      f"Das ist eine Antwort auf Deutsch{' R7' if i % 2 == 0 else ''}.",
      "Das ist die zweite Antwort auf Deutsch R5."])
  _answer_file(answers / "b.jsonl", questions, lambda i: [
      "Das ist eine Antwort auf Deutsch R1.", "Das ist die zweite Antwort auf Deutsch R9."])
  args = ["judge", "--lang", "de", "--answers", str(answers / "a.jsonl"), "--judge-model", "j",
          "--cache", str(tmp_path / "cache")]
  assert cli.main(args + ["--out", str(tmp_path / "single.json")]) == 0
  out = capsys.readouterr().out
  assert "| 1 | all | 7.00 | 0.00 | 40 | 40 |" in out  # 40 rated R7, 40 without a rating
  assert "| 2 | all | 5.00 | 0.00 | 80 | 0 |" in out
  assert "score 5.67 (mean of both turns); 40 judgements without a rating" in out
  assert "language consistency of a: turn 1 100.0%, turn 2 100.0%" in out
  judgments = (tmp_path / "eval/data/mt_bench_DE/model_judgment/j_single.jsonl").read_text().splitlines()
  assert len(judgments) == 160 and sum(json.loads(l)["score"] == -1 for l in judgments) == 40
  summary = json.loads((tmp_path / "single.json").read_text())
  assert summary["consistency"] == {"1": 100.0, "2": 100.0} and summary["num_unparsed"] == 40
  # Judging another model into the same file keeps the first model's judgements.
  assert cli.main(["judge", "--lang", "de", "--answers", str(answers / "b.jsonl"), "--judge-model",
                   "j", "--cache", str(tmp_path / "cache")]) == 0
  models = [json.loads(l)["model"] for l in
            (tmp_path / "eval/data/mt_bench_DE/model_judgment/j_single.jsonl").read_text().splitlines()]
  assert models.count("a") == 160 and models.count("b") == 160
  assert cli.main(args + ["--answers-b", str(answers / "b.jsonl")]) == 0
  out = capsys.readouterr().out
  # Turn 1: a's R7 beats R1, its unmarked answers lose; turn 2: b's R9 beats R5.
  assert "| 1 | 40 | 40 | 0 | 0 | 50.00 |" in out and "| 2 | 0 | 80 | 0 | 0 | 0.00 |" in out
  assert (tmp_path / "eval/data/mt_bench_DE/model_judgment/j_pair.jsonl").exists()
  # An answer file with one turn: an error naming the file, line and question.
  (answers / "c.jsonl").write_text(json.dumps(open_prompts.answer_record(
      questions[0]["question_id"], "c", ["nur eine"])) + "\n")
  assert cli.main(args[:4] + [str(answers / "c.jsonl")] + args[5:]) == 2
  assert re.search(r"error: .*c\.jsonl:1: question_id '81_DE' has 1 answer turns; MT-Bench-X "
                   r"needs 2", capsys.readouterr().err)
