"""`linguamix augment` end to end against a real OpenAI-style HTTP server on loopback."""

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from linguamix.testing.augment_endpoint import FakeChatEndpoint, field_spans
from linguamix.augment import run
from linguamix.cli import augment as command

KEY = "sk-test-DO-NOT-LEAK-4f1c2b"
SPECIALS = ["r429", "r500", "slow", "junk", "nochoice", "dropnum", "badlang", "hangup"]


def _item(i: int, tag: str = "") -> dict:
  item_id = f"item-{i:03d}" + (f"-{tag}" if tag else "")
  question = f"[{item_id}] Explain what the function does and how many items it returns."
  response = "It returns 3 values; see https://docs.python.org/3/library/functions.html."
  if i % 3 == 0:
    question += "\n```python\ndef f(x):\n    return [x, x * 2, 42]\n```"
    response = "The function `f` builds a list of 3 items, the last is 42.5 percent of 85."
  return {"id": item_id, "system_prompt": "" if i % 2 else "You are a helpful assistant.",
          "question": question, "response": response}


def _pool(n: int, specials=()) -> list[dict]:
  tags = list(specials) + [""] * (n - len(specials))
  return [_item(i, tag) for i, tag in enumerate(tags)]


def _write(path: pathlib.Path, items) -> str:
  path.write_text("".join(json.dumps(x) + "\n" for x in items), encoding="utf-8")
  return str(path)


def _args(inp, out, endpoint, *extra):
  return ["--input", inp, "--out", str(out), "--base-url", endpoint.base_url,
          "--model", "fake-translator", "--api-key-env", "LINGUAMIX_TEST_KEY",
          "--timeout", "1", "--max-retries", "3", "--backoff", "0.01", "--no-progress",
          *extra]


def _read_jsonl(path):
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def _all_text(directory: pathlib.Path) -> str:
  return "".join(p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file())


@pytest.fixture
def key_env(monkeypatch):
  monkeypatch.setenv("LINGUAMIX_TEST_KEY", KEY)


def test_run_budgets_spans_rejects_cache_and_key(tmp_path, key_env, capsys, caplog):
  caplog.set_level(logging.DEBUG)
  # Every special item goes to every language, so each misbehaviour is exercised.
  items = _pool(30, SPECIALS)
  inp = _write(tmp_path / "orca.jsonl", items)
  out = tmp_path / "out"
  budgets = {"de": 30, "fr": 12, "sw": 9}
  with FakeChatEndpoint(KEY, slow_seconds=1.5) as endpoint:
    argv = _args(inp, out, endpoint, "--budgets", "de=30,fr=12,sw=9", "--workers", "4",
                 "--seed", "7", "--no-register")
    assert command.main(argv) == 0
    first_total = endpoint.total
    summary = json.loads((out / "summary.json").read_text())

    # Budgets and subsets: exact, seeded, different per language.
    subsets = run.sample_subsets([x["id"] for x in items], budgets, 7)
    assert subsets == run.sample_subsets([x["id"] for x in items], budgets, 7)
    assert subsets != run.sample_subsets([x["id"] for x in items], budgets, 8)
    assert set(subsets["fr"]) != set(subsets["sw"])
    rejects = _read_jsonl(out / "rejects.jsonl")
    by_id = {x["id"]: x for x in items}
    for lang, budget in budgets.items():
      rows = _read_jsonl(out / f"{lang}.jsonl")
      rejected = [r["id"] for r in rejects if r["lang"] == lang]
      assert len(rows) + len(rejected) == budget == summary["languages"][lang]["budget"]
      assert sorted([r["id"] for r in rows] + rejected) == sorted(subsets[lang])
      for row in rows:
        assert set(row) == {"id", "system_prompt", "question", "response", "lang"}
        assert row["lang"] == lang
        for field in ("system_prompt", "question", "response"):
          source = by_id[row["id"]][field]
          assert bool(source) == bool(row[field])
          for span in field_spans(source):  # code, URLs, numbers byte for byte
            assert span in row[field], (row["id"], field, span)

    # All of de's 30 items include every special; the misbehaving requests were retried.
    assert endpoint.calls["item-000-r429", "de"] == 2
    assert endpoint.calls["item-001-r500", "de"] == 2
    assert endpoint.calls["item-002-slow", "de"] == 2
    assert endpoint.calls["item-003-junk", "de"] == 2
    assert endpoint.calls["item-004-nochoice", "de"] == 2
    assert endpoint.calls["item-007-hangup", "de"] == 2
    de_ids = {r["id"] for r in _read_jsonl(out / "de.jsonl")}
    assert {"item-000-r429", "item-001-r500", "item-002-slow", "item-003-junk",
            "item-004-nochoice", "item-005-dropnum", "item-007-hangup"} <= de_ids
    # dropnum: rejected once, retried with the reason, accepted.
    assert "spans: question lost number" in endpoint.retry_reasons["item-005-dropnum", "de"]
    # badlang: rejected twice, then recorded with its reason.
    bad = [r for r in rejects if r["id"] == "item-006-badlang" and r["lang"] == "de"]
    assert len(bad) == 1 and bad[0]["reason"].startswith("language: identified as en")
    assert len(bad[0]["reasons"]) == 2 and bad[0]["source"] == by_id["item-006-badlang"]
    assert summary["languages"]["de"]["reasons"] == {"language": 1}
    assert summary["complete"] and summary["this_run"]["requests"] == first_total
    assert summary["this_run"]["prompt_tokens"] > 0

    # Re-run: everything comes from the cache, zero requests.
    capsys.readouterr()
    assert command.main(argv) == 0
    assert endpoint.total == first_total
    again = json.loads((out / "summary.json").read_text())
    assert again["this_run"]["requests"] == 0 and again["this_run"]["cache_hits"] == 51
    assert again["languages"] == summary["languages"]
    printed = capsys.readouterr()

  # The key was sent (the server checked it) but is nowhere on disk or in any log line.
  assert endpoint.auth_ok == first_total
  assert KEY not in _all_text(tmp_path)
  assert KEY not in printed.out + printed.err
  assert not any(KEY in record.getMessage() for record in caplog.records)
  assert "0 requests, 51 cache hits" in printed.out


def test_output_registers_as_seqio_tasks(tmp_path, key_env):
  import seqio
  inp = _write(tmp_path / "orca.jsonl", _pool(6))
  with FakeChatEndpoint(KEY) as endpoint:
    assert command.main(_args(inp, tmp_path / "out", endpoint, "--budgets", "de=5",
                              "--task-prefix", "sta_test")) == 0
  task = seqio.get_mixture_or_task("sta_test.de")
  records = task.source.examples("train") + task.source.examples("validation")
  assert len(records) == 5 and {r["lang"] for r in records} == {"de"}
  assert all(r["instruction"].startswith("Dies ist eine") for r in records)


def test_resume_after_sigkill(tmp_path, key_env):
  items = _pool(40)
  inp = _write(tmp_path / "orca.jsonl", items)
  out = tmp_path / "out"
  cache_file = out / "cache" / "de.jsonl"
  repo = pathlib.Path(__file__).resolve().parents[1]
  with FakeChatEndpoint(KEY, delay=0.1) as endpoint:
    argv = _args(inp, out, endpoint, "--budgets", "de=40", "--workers", "2", "--no-register")
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "linguamix.cli", "augment", *argv], cwd=repo,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
      if cache_file.exists() and len(cache_file.read_text().splitlines()) >= 8:
        break
      time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = 0
    for line in cache_file.read_text().splitlines():
      try:
        finished += json.loads(line)["status"] == "accepted"
      except json.JSONDecodeError:  # a line the kill cut short is not a finished item
        pass
    assert 8 <= finished < 40
    with open(cache_file, "a") as f:  # as if the kill had cut a line short
      f.write('{"key": "0123", "status": "acc')
    before = endpoint.total
    assert command.main(argv) == 0
    # Only the unfinished items cost requests (one each: this server never misbehaves).
    assert endpoint.total - before == 40 - finished
  rows = _read_jsonl(out / "de.jsonl")
  assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
  log.close()
  assert "augment: 40 items in 1 language(s)" in (tmp_path / "run.log").read_text()
  assert KEY not in _all_text(tmp_path)  # outputs, cache and the killed run's log


def test_bad_input_and_bad_endpoints(tmp_path, key_env, capsys):
  good = _write(tmp_path / "good.jsonl", _pool(5))
  broken = tmp_path / "broken.jsonl"
  broken.write_text(json.dumps(_item(0)) + "\n{not json\n")
  missing = tmp_path / "missing.jsonl"
  missing.write_text(json.dumps({"id": "a", "question": "q?"}) + "\n")
  with FakeChatEndpoint(KEY) as endpoint:
    def err(*argv):
      code = command.main(list(argv))
      return code, capsys.readouterr().err

    code, text = err(*_args(str(broken), tmp_path / "o1", endpoint, "--budgets", "de=1"))
    assert code == 2 and "broken.jsonl:2: malformed JSON line" in text
    code, text = err(*_args(str(missing), tmp_path / "o1", endpoint, "--budgets", "de=1"))
    assert code == 2 and "missing.jsonl:1: field 'system_prompt' is missing" in text
    code, text = err(*_args(good, tmp_path / "o1", endpoint, "--budgets", "xx=1"))
    assert code == 2 and "unknown target language(s) xx" in text
    code, text = err(*_args(good, tmp_path / "o1", endpoint, "--budgets", "de=6"))
    assert code == 2 and "language de: budget 6 is larger than the pool of 5 items" in text
    assert endpoint.total == 0

    # An endpoint that only answers nonsense: items fail, are recorded, not cached.
    nonsense = _write(tmp_path / "nonsense.jsonl", _pool(3, ["garbage", "garbage"]))
    argv = _args(nonsense, tmp_path / "o2", endpoint, "--budgets", "de=3", "--no-register")
    code, text = err(*argv)
    assert code == 1 and "failed on endpoint errors" in text
    rejects = _read_jsonl(tmp_path / "o2" / "rejects.jsonl")
    assert len(rejects) == 2 and all(r["status"] == "failed" for r in rejects)
    assert all("malformed reply: not JSON" in r["reason"] for r in rejects)
    assert len(_read_jsonl(tmp_path / "o2" / "de.jsonl")) == 1  # the good one is kept
    calls = endpoint.total
    assert err(*argv)[0] == 1 and endpoint.total == calls + 2 * 4  # failures are retried

  # Unreachable endpoint (the server is gone): a clear error, summary still written.
  code, text = err(*_args(good, tmp_path / "o3", endpoint, "--budgets", "de=2", "--max-retries", "1"))
  assert code == 1 and "unreachable" in text
  assert json.loads((tmp_path / "o3" / "summary.json").read_text())["totals"]["pending"] == 2


def test_wrong_key_is_a_clear_endpoint_error(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("LINGUAMIX_TEST_KEY", "sk-wrong")
  good = _write(tmp_path / "good.jsonl", _pool(2))
  with FakeChatEndpoint(KEY) as endpoint:
    assert command.main(_args(good, tmp_path / "o", endpoint, "--budgets", "de=1")) == 1
  err = capsys.readouterr().err
  assert "HTTP 401" in err and "$LINGUAMIX_TEST_KEY" in err and "sk-wrong" not in err


def test_task_input_and_default_tier_budgets(tmp_path, key_env):
  import argparse
  from linguamix.mixtures import sphinx_tiers
  from linguamix.t5x_tasks import languages
  defaults = command._budgets(argparse.Namespace(budgets=None, langs=None, budget=None))
  assert sorted(defaults) == sorted(set(languages.SPHINX) - {"en"})
  assert (defaults["de"], defaults["bn"], defaults["sw"]) == (100_000, 50_000, 25_000)
  assert command._budgets(argparse.Namespace(budgets=None, langs="de,sw", budget=None)) == {
      "de": 100_000, "sw": 25_000}
  assert sphinx_tiers.budgets(tiers={"sw": "high"}, langs=["sw"]) == {"sw": 100_000}
  assert sphinx_tiers.budgets(tier_budgets={"low": 10}, langs=["xh"]) == {"xh": 10}
  with pytest.raises(ValueError, match="language 'sw' has unknown tier 'huge'"):
    sphinx_tiers.budgets(tiers={"sw": "huge"})
  with pytest.raises(ValueError, match="no tier for bg"):
    sphinx_tiers.budgets(langs=["de", "bg"])

  # A registered instruction task as the pool (the bundled sample Bactrian-X English).
  out = tmp_path / "out"
  with FakeChatEndpoint(KEY) as endpoint:
    argv = ["--task", "bactrian_x.en", "--out", str(out), "--base-url", endpoint.base_url,
            "--model", "m", "--api-key-env", "LINGUAMIX_TEST_KEY", "--budgets", "fr=6",
            "--no-progress", "--no-register"]
    assert command.main(argv) == 0
  accepted = _read_jsonl(out / "fr.jsonl")
  rejects = _read_jsonl(out / "rejects.jsonl")
  assert len(accepted) + len(rejects) == 6
  assert all(r["source"]["id"].startswith("sample-") for r in rejects)
  # Short answers ("119") cannot become a sentence: the length check rejects them.
  assert all(r["reason"].startswith(("length:", "language:")) for r in rejects)


def test_retry_after_header_forms():
  import email.utils
  from linguamix.augment.client import _retry_after
  assert _retry_after("0") == 0 and _retry_after("2.5") == 2.5 and _retry_after(None) is None
  soon = email.utils.formatdate(time.time() + 30, usegmt=True)
  assert 25 <= _retry_after(soon) <= 31


def test_a_later_run_never_loses_earlier_output(tmp_path, key_env, capsys):
  """Issue 16: a finished output folder, then the same command with another --model and
  the endpoint down: the 3 rows stay (they used to become 0); then another model that
  answers adds its rows, replacing the same ids, keeping the rest."""
  inp = _write(tmp_path / "orca.jsonl", _pool(5))
  out = tmp_path / "out"
  with FakeChatEndpoint(KEY) as endpoint:
    assert command.main(_args(inp, out, endpoint, "--budgets", "de=3", "--no-register")) == 0
  before = (out / "de.jsonl").read_text()
  assert len(before.splitlines()) == 3
  argv = _args(inp, out, endpoint, "--budgets", "de=3", "--no-register", "--max-retries", "1")
  argv[argv.index("fake-translator")] = "other-model"
  capsys.readouterr()
  assert command.main(argv) == 1  # the server is gone
  assert "unreachable" in capsys.readouterr().err
  assert (out / "de.jsonl").read_text() == before
  summary = json.loads((out / "summary.json").read_text())
  assert summary["languages"]["de"]["kept"] == 3 and summary["languages"]["de"]["pending"] == 3
  # Another model translates a different subset (another seed): old rows kept, new added.
  with FakeChatEndpoint(KEY) as endpoint:
    argv = _args(inp, out, endpoint, "--budgets", "de=3", "--no-register", "--seed", "5")
    argv[argv.index("fake-translator")] = "other-model"
    assert command.main(argv) == 0
  new = run.sample_subsets([x["id"] for x in _pool(5)], {"de": 3}, 5)["de"]
  old = [json.loads(l)["id"] for l in before.splitlines()]
  rows = _read_jsonl(out / "de.jsonl")
  assert [r["id"] for r in rows] == old + [i for i in new if i not in old]
  summary = json.loads((out / "summary.json").read_text())["languages"]["de"]
  assert summary["rows"] == len(set(old) | set(new)) and summary["kept"] == len(set(old) - set(new))
  assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_unreadable_inputs_and_earlier_outputs_name_file_and_line(tmp_path, key_env, capsys):
  good = json.dumps(_item(1))
  latin1 = tmp_path / "latin1.jsonl"
  latin1.write_bytes(good.encode() + b"\n" + good.replace("Explain", "Expliqu\xe9").encode("latin-1") + b"\n")
  out = tmp_path / "out"
  out.mkdir()
  (out / "de.jsonl").write_text('{"id": "x", "question": "q"}\n{torn\n')
  inp = _write(tmp_path / "orca.jsonl", _pool(3))
  with FakeChatEndpoint(KEY) as endpoint:
    assert command.main(_args(str(latin1), out, endpoint, "--budgets", "de=1")) == 2
    assert f"{latin1}:2: not UTF-8 text (byte 0xe9 at column " in capsys.readouterr().err
    assert command.main(_args(inp, out, endpoint, "--budgets", "de=1")) == 2
    assert f"{out / 'de.jsonl'}:2: malformed JSON line in an earlier output" in capsys.readouterr().err
    assert endpoint.total == 0  # nothing was asked, nothing overwritten
  assert (out / "de.jsonl").read_text() == '{"id": "x", "question": "q"}\n{torn\n'
