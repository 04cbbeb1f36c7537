"""`linguamix prepare` against the published layouts in linguamix/prepare/manifest.json.

The loopback Hub (linguamix/testing/hub_server.py) serves each manifest entry's file tree as published
-- names, nesting, loading scripts beside their raw files, the parquet-export branch where
it exists and not where it does not, gated repositories -- filled with the entry's records
in their real field names and quirks (empty outputs, `pt-BR`, dialect codes, `"1"`/`"2"`
answers, FLORES+'s relabelled codes, a malformed line upstream). A layout change on the
Hub is one manifest edit here and a failing test.
"""

import gzip
import io
import itertools
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import seqio

from linguamix.testing.hub_server import FakeHub
from linguamix.cli import prepare as command
from linguamix.prepare import manifest

TOKEN = "hf_layoutTOKEN0123456789"


def _serialize(fmt: str, rows: list, path: str) -> bytes:
  if fmt is None:
    return b"# " + path.encode() + b" (not read by prepare)\n"
  if fmt.startswith("json-list"):
    data = json.dumps(rows, ensure_ascii=False).encode()
  elif fmt.startswith("jsonl"):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
  elif fmt == "parquet":
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()
  elif fmt == "tsv":
    cols = list(rows[0])
    data = ("\t".join(cols) + "\n" + "".join("\t".join(str(r[c]) for c in cols) + "\n"
                                             for r in rows)).encode()
  else:
    raise ValueError(fmt)
  return gzip.compress(data) if fmt.endswith(".gz") else data


def _expand(tree: dict, values: dict) -> dict:
  """{path pattern: spec} -> {path: spec}, each {name} over its values."""
  out = {}
  for pattern, spec in tree.items():
    names = re.findall(r"{(\w+)}", pattern)
    for combo in itertools.product(*(values[n] for n in names)):
      out[pattern.format(**dict(zip(names, combo)))] = spec
  return out


def _files(e: dict, tree: dict, values: dict) -> dict:
  files = {}
  for path, spec in _expand(tree, values).items():
    rows = e["records"][spec["records"]] if spec else []
    if spec and e.get("records_per_file"):  # as many records as the release has lines
      rows = [{**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id'][:-4]}{i:04d}"}
              for i in range(e["records_per_file"])]
    data = _serialize(spec and spec["format"], rows, path)
    for fix in e.get("repairs", {}).get(path, []):  # the upstream defect, as published
      lines = data.decode().split("\n")
      line = lines[fix["line"] - 1]
      assert line.endswith(fix["to"])
      lines[fix["line"] - 1] = line[:-len(fix["to"])] + fix["from"]
      data = "\n".join(lines).encode()
    if path in e.get("no_final_newline", ()):
      data = data.rstrip(b"\n")
    files[path] = data
  return files


def serve(hub: FakeHub, names, pick: dict) -> dict:
  """Serves the named manifest entries; `pick` narrows a placeholder's values (languages)."""
  served = {}
  for name in names:
    e = manifest.entry(name)
    values = {**e.get("expand", {}), **pick.get(name, {})}
    src = e["source"]
    if "github" in src:
      for commit, tree in e["tree"].items():
        for path, data in _files(e, tree, values).items():
          hub.raw[f"{src['github']}/{commit}/{path}"] = served[path] = data
      continue
    repos = ([(src["hub"].format(lang=l), {**values, "lang": [l]}) for l in values["lang"]]
             if "{lang}" in src["hub"] else [(src["hub"], values)])
    for repo, vals in repos:
      for revision, tree in e["tree"].items():
        if tree == "absent":
          continue
        files = _files(e, tree, vals)
        hub.add(repo, files, revision=revision, gated_token=TOKEN if e["gated"] is True else None)
        served.update({f"{repo}:{revision}:{p}": d for p, d in files.items()})
    for repo, tree in e.get("extra_repos", {}).items():
      for revision, t in tree.items():
        hub.add(repo, _files(e, t, values), revision=revision)
  return served


def run(argv, capsys):
  rc = command.main(argv)
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_every_prepared_item_has_a_manifest_entry_with_dated_evidence():
  from linguamix.prepare import benchmark_data, instruction_data
  entries = manifest.entries()
  for name in list(instruction_data.DATASETS) + list(benchmark_data.BENCHMARKS):
    e = entries[name]
    assert e["licence"] and e["gated"] in (True, False, "unknown") and e["evidence"], name
  for e in entries.values():
    for ev in e["evidence"]:
      assert ev["checked"] == manifest.load()["checked"] and ev["source"] and ev["result"], e["name"]
  # the gins' published checkpoints are in it too, and the docs table lists every entry
  assert manifest.by_repo("meta-llama/Llama-2-7b-hf")["gated"] is True
  import pathlib
  docs = (pathlib.Path(__file__).resolve().parents[1] / "docs/prepare.md").read_text()
  assert all(f"| `{name}` |" in docs for name in entries)


DATA_PICK = {"bactrian_x": {"lang": ["bn", "de", "en", "pt", "sw"]}, "alpaca_x": {"lang": ["de", "pt"]},
             "lima_x": {"LANG": ["DE", "EN"]}}


def test_data_all_reads_the_published_layouts_and_their_quirks(hub, tmp_path, capsys, monkeypatch):
  serve(hub, ["bactrian_x", "alpaca_x", "lima_x", "oasst1", "aya"], DATA_PICK)
  root = tmp_path / "instruct"
  rc, out, err = run(["data", "all", "--langs", "de", "sw", "en", "pt", "bn", "--root", str(root)],
                     capsys)
  assert rc == 0, err
  assert "summary: 5 done" in out
  assert "licence CC BY-NC 4.0 (non-commercial); gated: no" in out  # Bactrian-X, before fetching
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(root))
  import linguamix.t5x_tasks  # noqa: F401
  source = lambda name: seqio.get_mixture_or_task(name).source.source
  # Bactrian-X: the record with an empty output is kept (all rows count for the budgets)
  recs = source("bactrian_x.de").records("all")
  assert len(recs) == 3 and any(r["output"] == "" for r in recs)
  assert len(source("alpaca_x.de").records("all")) == 2
  assert len(source("alpaca_x.en").records("all")) == 2   # yahma/alpaca-cleaned, renamed
  assert len(source("lima_x.de").records("validation")) == 2
  # oasst1: pt-BR messages are Portuguese; bn is a language of the set (lt is not)
  assert [r["output"] for r in source("oasst1.pt").records("all")] == ["Brasília."]
  assert len(source("oasst1.bn").records("all")) == 1
  assert "oasst1.lt" not in seqio.TaskRegistry.names()
  # aya: a dialect code (ary) is not folded into Arabic
  assert len(source("aya.fr").records("all")) == 1
  with pytest.raises(Exception, match="no records in language 'ar'"):
    source("aya.ar").records("all")


BENCH_PICK = {}  # every language the manifest lists: the files are small
BENCH_LANGS = ["en", "de", "sw", "ja", "eng_Latn", "en_et", "et_en", "en_de", "hi", "no", "et"]


def test_benchmarks_all_reads_the_published_layouts(hub, tmp_path, capsys, monkeypatch):
  served = serve(hub, ["xnli", "paws_x", "xstorycloze", "xwinograd", "belebele", "xquad",
                       "flores", "better_alpaca_test"], BENCH_PICK)
  monkeypatch.setenv("HF_TOKEN", TOKEN)
  root = tmp_path / "eval"
  argv = ["benchmarks", "all", "--langs", *BENCH_LANGS, "--root", str(root)]
  rc, out, err = run(argv + ["--dry-run"], capsys)
  assert rc == 0, err
  assert "licence CC BY-SA 4.0; gated: yes (accept the terms on the page" in out  # FLORES+
  assert "licence CC BY-NC 4.0 (non-commercial); gated: no" in out  # XNLI
  rc, out, err = run(argv, capsys)
  assert rc == 0, err
  assert "summary: 10 done" in out
  # XStoryCloze: the release TSV from main, byte for byte (the repository has no export)
  key = "juletxara/xstory_cloze:main:spring2016.val.sw.tsv.split_20_80_eval.tsv"
  assert (root / "xstory_cloze/sw/spring2016.val.sw.tsv.split_20_80_eval.tsv").read_bytes() == served[key]
  # FLORES+: Estonian published as ekk_Latn, written under the loader's est_Latn
  assert "FLORES+ names it ekk_Latn" in out
  assert (root / "flores200/devtest/est_Latn.devtest").read_text() == "First sentence.\nSecond sentence.\n"
  # Better Alpaca: all 50 Hindi prompts, the malformed upstream line repaired
  hi = (root / "better_alpaca_test/test_hi.jsonl").read_text().splitlines()
  assert len(hi) == 50 and all(json.loads(l)["prompt"] for l in hi)
  assert "not checked" not in out  # every released language is a registered task
  monkeypatch.setenv("LINGUAMIX_EVAL_DATA_ROOT", str(root))
  import linguamix.evals  # noqa: F401
  from linguamix.evals import registry
  load = lambda name, lang, split: registry.BENCHMARKS[name].load(lang, split)
  assert len(load("xstorycloze", "sw", "validation")) == 2
  assert len(load("xwinograd", "ja", "test")) == 2  # "1"/"2" answers, released as jp
  assert len(load("belebele", "eng_Latn", "test")) == 1  # answer number "2"
  assert len(load("paws_x", "de", "test")) == 2  # the NS row is kept
  assert len(load("flores", "en_et", "test")) == 2
  assert len(load("better_alpaca_test", "en", "test")) == 50
  assert len(load("better_alpaca_test", "hi", "test")) == 50  # the repaired line included
  # a rerun does nothing
  rc, out, err = run(argv, capsys)
  assert rc == 0 and "summary: 10 skipped" in out


def test_all_goes_on_past_a_failure_and_a_rerun_does_only_what_is_missing(hub, tmp_path, capsys,
                                                                           monkeypatch):
  serve(hub, ["xnli", "xwinograd", "flores"], BENCH_PICK)  # flores gated, no token: refused
  root = tmp_path / "eval"
  argv = ["benchmarks", "xnli", "flores", "xwinograd", "--langs", "de", "en", "ja", "en_et",
          "--root", str(root)]
  rc, out, err = run(argv, capsys)
  assert rc == 1
  assert "summary: 2 done, 1 failed" in out and "xwinograd: done" in out
  assert err.startswith("error: benchmarks flores: 4 of 4 outputs: ") and "refused access" in err
  assert (root / "xwinograd/jp/test.jsonl").exists() and (root / "xnli/xnli.dev.tsv").exists()
  n = len(hub.downloads())
  monkeypatch.setenv("HF_TOKEN", TOKEN)
  rc, out, err = run(argv, capsys)
  assert rc == 0, err
  assert "summary: 2 skipped, 1 done" in out
  assert "wrote xnli" not in out and "wrote xwinograd" not in out
  import hashlib
  flores = {hashlib.sha256(d).hexdigest() for d in
            hub.repos[("datasets", "openlanguagedata/flores_plus")].revisions["main"].files.values()}
  new = hub.downloads()[n:]
  assert new and all(p.removeprefix("/cdn/") in flores for p in new)  # FLORES+ files only


def test_a_killed_download_continues_by_range_in_the_next_run(hub, tmp_path, capsys, monkeypatch):
  from huggingface_hub import constants
  import huggingface_hub.file_download as fd
  serve(hub, ["bactrian_x"], {"bactrian_x": {"lang": ["sw"]}})
  big = gzip.compress(json.dumps([{"instruction": f"i{i} " * 50, "input": "", "output": f"o{i}",
                                   "id": f"alpaca-{i}"} for i in range(400)]).encode())
  hub.add("MBZUAI/Bactrian-X", {"data/sw.json.gz": big})
  monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
  real = fd.http_get

  def killed_halfway(url, temp_file, **kwargs):  # Ctrl-C (or a kill) in the middle of the file
    class Dying:
      written = 0
      def write(self, b):
        if self.written + len(b) > len(big) // 2:
          raise KeyboardInterrupt
        self.written += len(b)
        return temp_file.write(b)
      def __getattr__(self, name):
        return getattr(temp_file, name)
    return real(url, Dying(), **kwargs)

  monkeypatch.setattr(fd, "http_get", killed_halfway)
  root = tmp_path / "r"
  rc, out, err = run(["data", "bactrian_x", "--langs", "sw", "--root", str(root)], capsys)
  assert rc == 130 and "finished files are kept" in err
  partial = list((tmp_path / "hf_home").rglob("*.linguamix-partial"))
  assert len(partial) == 1 and 0 < partial[0].stat().st_size <= len(big) // 2
  kept = partial[0].stat().st_size
  monkeypatch.setattr(fd, "http_get", real)
  rc, out, err = run(["data", "bactrian_x", "--langs", "sw", "--root", str(root)], capsys)
  assert rc == 0, err
  assert f"resuming MBZUAI/Bactrian-X/data/sw.json.gz at byte {kept:,}" in out
  gets = [h for m, p, h in hub.requests if m == "GET" and p.startswith("/cdn/")]
  assert gets[-1].get("range") == f"bytes={kept}-"
  assert (root / "bactrian_x/sw.json.gz").read_bytes() == big


def test_better_alpaca_has_no_german_and_a_new_defect_upstream_is_an_error(hub, tmp_path, capsys):
  rc, out, err = run(["benchmarks", "better_alpaca_test", "--langs", "de", "--root",
                      str(tmp_path / "r")], capsys)
  assert rc == 1 and "better_alpaca_test has no language de" in err
  e = manifest.entry("better_alpaca_test")
  src = e["source"]
  hub.raw[f"{src['github']}/{src['commit']}/test-data/test_fi.jsonl"] = b'{"id": "a", "prompt": "x"}\n{"id": "b",\n'
  rc, out, err = run(["benchmarks", "better_alpaca_test", "--langs", "fi", "--root",
                      str(tmp_path / "r")], capsys)
  assert rc == 1 and "test-data/test_fi.jsonl:2: malformed JSON line" in err


def test_empty_output_policy_keep_drop_error(tmp_path):
  from linguamix.t5x_tasks import readers
  path = tmp_path / "x.json"
  path.write_text(json.dumps([{"instruction": "a", "input": "", "output": ""},
                              {"instruction": "b", "input": "", "output": "B"}]))
  assert len(readers.read_records(str(path), "alpaca", "en")) == 2
  assert [r["output"] for r in readers.read_records(str(path), "alpaca", "en",
                                                    empty_output="drop")] == ["B"]
  with pytest.raises(readers.DataError, match=r"\[record 0\]: field 'output' is empty"):
    readers.read_records(str(path), "alpaca", "en", empty_output="error")
