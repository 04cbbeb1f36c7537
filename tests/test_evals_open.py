"""Open-ended evaluation: language consistency, MT-Bench-X prompts, the LLM judge
against a real OpenAI-compatible HTTP server on loopback."""

import http.server
import io
import json
import re
import threading
import time

import pytest
import seqio

import linguamix.evals  # noqa: F401
from linguamix.augment import client as client_lib
from linguamix.evals import consistency
from linguamix.evals import judge
from linguamix.evals import open_prompts


def test_language_consistency():
  result = consistency.language_consistency([
      ("de", "Das Wetter ist heute sehr schön und wir gehen spazieren."),
      ("de", "The weather is very nice today and we are going for a walk."),
      ("fr", "Il fait très beau aujourd'hui et nous allons nous promener."),
      ("fr", "")])
  assert result["de"] == {"consistency": 50.0, "num_answers": 2, "most_common_other": "en"}
  assert result["fr"]["consistency"] == 50.0 and result["fr"]["most_common_other"] == "(empty)"


def test_mt_bench_x_tasks(real_data, monkeypatch):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  ds = seqio.get_mixture_or_task("mt_bench_x.it").get_dataset(None, split="default", shuffle=False)
  rows = list(ds.as_numpy_iterator())
  first = json.loads((real_data / "mt_bench_x" / "IT" / "question.jsonl").read_text().splitlines()[0])
  assert len(rows) == 80
  # The Alpaca template without input (Stanford Alpaca's prompt), byte-exact.
  assert rows[0]["inputs_pretokenized"].decode() == (
      "Below is an instruction that describes a task. Write a response that appropriately "
      "completes the request.\n\n### Instruction:\n" + first["turns"][0] + "\n\n### Response:\n")
  assert len(open_prompts.mt_bench_x_references("it")) == 30
  assert set(open_prompts.mt_bench_x_judge_prompts("it")) >= {"single-v1", "pair-v2", "pair-math-v1"}


class _Judge(http.server.BaseHTTPRequestHandler):
  """Grades/prefers answers containing 'good'; on 'biased' questions always says [[A]]."""
  requests = []

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    type(self).requests.append((self.headers.get("Authorization"), body))
    system, user = (m["content"] for m in body["messages"])
    if "[[A]]" in system:  # pairwise, in any language: B's answer follows its first mention
      b_start, good = re.search(r"Assist\w* B", user).start(), user.find("good")
      text = ("[[A]]" if "biased" in user or -1 < good < b_start else
              "[[B]]" if good > b_start else "[[C]]")
    else:
      text = "Rating: [[8]]" if "good" in user else "Rating: [[3]]"
    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok " + text}}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)

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


QUESTIONS = [{"question_id": "1", "category": "writing", "turns": ["Write a poem."]},
             {"question_id": "2", "category": "math", "turns": ["2+2?"]},
             {"question_id": "3", "category": "writing", "turns": ["biased question"]}]
A = {"1": "a good poem", "2": "4", "3": "x"}
B = {"1": "a poem", "2": "a good 4", "3": "y"}


def test_judge_single_and_pairwise(real_data, monkeypatch, server, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-key")
  prompts = open_prompts.mt_bench_x_judge_prompts("en")
  refs = {"2": ["4"]}
  client = judge.judge_client("judge-model", base_url=server, backoff=0.01)
  single = judge.single(client, "en", QUESTIONS, A, prompts, refs, str(tmp_path / "cache"), workers=2)
  assert single["score"] == pytest.approx((8 + 3 + 3) / 3) and single["num_unparsed"] == 0
  # Math questions are graded against the reference answer with the math prompt.
  math_request = next(b for _, b in _Judge.requests if "2+2?" in b["messages"][1]["content"])
  assert "[The Start of Reference Answer]\n4\n" in math_request["messages"][1]["content"]
  pair = judge.pairwise(client, "en", QUESTIONS, A, B, prompts, refs, str(tmp_path / "cache"))
  # q1: A wins both orders; q2: B wins both; q3: the judge always says [[A]] -> tie.
  assert pair["outcomes"] == {"1": "a", "2": "b", "3": "tie"}
  assert pair["win_rate_a"] == pytest.approx(100 * 1.5 / 3)
  assert len(_Judge.requests) == 3 + 6
  assert all(auth == "Bearer sk-secret-test-key" for auth, _ in _Judge.requests)
  # A re-run is answered from the cache; the key is written nowhere.
  again = judge.single(client, "en", QUESTIONS, A, prompts, refs, str(tmp_path / "cache"))
  assert again["score"] == single["score"] and len(_Judge.requests) == 9
  assert not any("sk-secret" in p.read_text() for p in (tmp_path / "cache").iterdir())


def test_unreachable_judge_keeps_finished(real_data, monkeypatch, server, tmp_path):
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  prompts = open_prompts.mt_bench_x_judge_prompts("en")
  cache = str(tmp_path / "cache")
  judge.single(judge.judge_client("j", base_url=server), "en", QUESTIONS[:2], A, prompts, {}, cache)
  dead = judge.judge_client("j", base_url="http://127.0.0.1:9/v1", max_retries=2, backoff=0.01)
  with pytest.raises(client_lib.EndpointError, match="unreachable after 3 attempts"):
    judge.single(dead, "en", QUESTIONS, A, prompts, {}, cache)
  # The two finished judgements survived and are reused: no request is needed for them.
  result = judge.single(dead, "en", QUESTIONS[:2], A, prompts, {}, cache)
  assert [r["verdict"] for r in result["records"]] == [8.0, 3.0]


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
  try:
    prompts = open_prompts.mt_bench_x_judge_prompts("en")
    cache = str(tmp_path / "cache")
    client = judge.judge_client("j", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    with pytest.raises(client_lib.EndpointError):
      judge.single(client, "en", QUESTIONS, A, prompts, {}, cache, workers=3)
  finally:
    httpd.shutdown()
    httpd.server_close()
  # Both slow judgements were answered while the 401 stopped the run: they are cached.
  dead = judge.judge_client("j", base_url="http://127.0.0.1:9/v1", max_retries=0, backoff=0.01)
  result = judge.single(dead, "en", QUESTIONS[:2], A, prompts, {}, cache)
  assert [r["verdict"] for r in result["records"]] == [8.0, 3.0]


def test_judge_command(real_data, monkeypatch, server, tmp_path, capsys):
  from linguamix import cli
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(real_data))
  monkeypatch.setenv("OPENAI_BASE_URL", server)
  # Answers in the ScoresLogger shape: even questions get a "good" answer from A only.
  for name, good in (("a", lambda i: i % 2 == 0), ("b", lambda i: False)):
    (tmp_path / f"{name}.jsonl").write_text("".join(
        json.dumps({"idx": i, "inputs": "...", "references": [""],
                    "prediction": f"Das ist eine {'good ' if good(i) else ''}Antwort auf Deutsch."}) + "\n"
        for i in range(80)))
  args = ["judge", "--lang", "de", "--answers", str(tmp_path / "a.jsonl"), "--judge-model", "j",
          "--cache", str(tmp_path / "cache")]
  assert cli.main(args + ["--out", str(tmp_path / "single.json")]) == 0
  out = capsys.readouterr().out
  assert "mt_bench_x.de: score 5.50 over 80 answers (0 judgements without a rating)" in out
  assert "language consistency of A: 100.0%" in out
  assert cli.main(args + ["--answers-b", str(tmp_path / "b.jsonl")]) == 0
  # A wins the 40 good ones in both orders; the other 40 are ties ([[C]]).
  assert "A wins 40, B wins 0, ties 40" in capsys.readouterr().out
  (tmp_path / "b.jsonl").write_text('{"idx": 0}\n')
  assert cli.main(args + ["--answers-b", str(tmp_path / "b.jsonl")]) == 2
  assert "b.jsonl:1: not a ScoresLogger generation line" in capsys.readouterr().err
