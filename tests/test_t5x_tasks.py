"""linguamix.t5x_tasks: registration, templates, feature sets, splits, bad input."""

import gzip
import json

import gin
import numpy as np
import pytest
import seqio

from linguamix import t5x_tasks
from linguamix.t5x_tasks import languages, readers, templates

LENGTHS = {"inputs": 64, "targets": 16}


def _first(task_name, split="train", lengths=LENGTHS):
  task = seqio.get_mixture_or_task(task_name)
  return next(task.get_dataset(lengths, split=split, shuffle=False).as_numpy_iterator())


def test_import_registers_every_family_and_language():
  names = set(seqio.TaskRegistry.names())
  for fam, langs in [("bactrian_x", languages.BACTRIAN_X), ("alpaca_x", languages.ALPACA_X),
                     ("lima_x", languages.OPENGPTX), ("oasst1", languages.OASST1),
                     ("aya", languages.AYA), ("sphinx", languages.SPHINX),
                     ("sphinx_langit", languages.SPHINX)]:
    assert {f"{fam}.{l}" for l in langs} <= names, fam
  assert len(languages.BACTRIAN_X) == 52 and set(languages.PINCH) <= set(languages.BACTRIAN_X)
  assert {"bactrian_x.sw", "alpaca_x.fi", "lima_x.de", "oasst1.es", "aya.yo", "sphinx.hi"} <= names


REC = {"instruction": "Name {x} a colour.", "input": "sky", "output": "Blue.", "system": "",
       "history": ()}


def test_templates_byte_exact():
  no_input = dict(REC, input="")
  assert templates.alpaca(REC) == (
      "Below is an instruction that describes a task, paired with an input that provides "
      "further context. Write a response that appropriately completes the request.\n\n"
      "### Instruction:\nName {x} a colour.\n\n### Input:\nsky\n\n### Response:\n", "Blue.")
  assert templates.alpaca(no_input)[0] == (
      "Below is an instruction that describes a task. Write a response that appropriately "
      "completes the request.\n\n### Instruction:\nName {x} a colour.\n\n### Response:\n")
  assert templates.bactrian(REC)[0] == "### Input:\nName {x} a colour.\n\nsky\n\n### Output:\n"
  assert templates.bactrian(no_input)[0] == "### Input:\nName {x} a colour.\n\n### Output:\n"
  assert templates.bactrian_seq2seq(REC) == ("Name {x} a colour.\nsky", "Blue.")
  assert templates.bactrian_seq2seq(no_input)[0] == "Name {x} a colour."
  chat = dict(no_input, system="Du bist hilfreich.", history=(("Hi", "Hallo!"),))
  assert templates.render_chat(chat) == (
      "System: Du bist hilfreich.\nUser: Hi\nAssistant: Hallo!</s>\n"
      "User: Name {x} a colour.\nAssistant: Blue.</s>")


def test_template_selectable_from_gin_after_import():
  ex = _first("bactrian_x.en")
  assert ex["inputs_pretokenized"].decode().startswith("### Input:\n")
  with gin.unlock_config():
    gin.bind_parameter("linguamix.t5x_tasks.family_template.overrides",
                       {"bactrian_x": "bactrian_seq2seq"})
  try:
    ex2 = _first("bactrian_x.en")
    assert not ex2["inputs_pretokenized"].decode().startswith("###")
    assert ex2["targets_pretokenized"] == ex["targets_pretokenized"]
  finally:
    gin.clear_config()


def test_encdec_and_decoder_feature_sets_and_loss_mask():
  task = seqio.get_mixture_or_task("bactrian_x.de")
  ds = task.get_dataset(LENGTHS, split="train", shuffle=False).take(1)
  ex = next(iter(ds.as_numpy_iterator()))
  vocab = t5x_tasks.VOCABULARY
  assert ex["targets"][-1] == vocab.eos_id and vocab.eos_id not in ex["inputs"]
  assert vocab.decode(ex["inputs"].tolist()) + vocab.decode(ex["targets"][:-1].tolist()) == \
      ex["inputs_pretokenized"].decode() + ex["targets_pretokenized"].decode()
  encdec = seqio.EncDecFeatureConverter(pack=False)(ds, LENGTHS)
  e = next(iter(encdec.as_numpy_iterator()))
  assert set(e) == {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
                    "decoder_loss_weights"}
  n_in, n_tg = len(ex["inputs"]), len(ex["targets"])
  assert e["encoder_input_tokens"][:n_in].tolist() == ex["inputs"].tolist()
  dec = seqio.DecoderFeatureConverter(pack=False)(ds, {"inputs": 64, "targets": 16})
  d = next(iter(dec.as_numpy_iterator()))
  assert "decoder_causal_attention" in d
  assert d["decoder_target_tokens"][:n_in + n_tg].tolist() == \
      ex["inputs"].tolist() + ex["targets"].tolist()
  # Loss on the response only: zero weight on the prompt, one on the targets.
  assert d["decoder_loss_weights"][:n_in].sum() == 0
  assert d["decoder_loss_weights"][n_in:n_in + n_tg].tolist() == [1] * n_tg
  assert d["decoder_loss_weights"][n_in + n_tg:].sum() == 0


def test_parallel_ids_and_deterministic_holdout():
  src = {l: t5x_tasks.tasks.task_source(f"bactrian_x.{l}") for l in languages.PINCH}
  train_ids = {l: [r["id"] for r in s.examples("train")] for l, s in src.items()}
  val_ids = {l: [r["id"] for r in s.examples("validation")] for l, s in src.items()}
  assert all(v == train_ids["en"] for v in train_ids.values())
  assert all(v == val_ids["en"] for v in val_ids.values())
  assert not set(train_ids["en"]) & set(val_ids["en"])
  assert len(train_ids["en"]) >= 4640 and 0 < len(val_ids["en"]) < 150
  # Same id = same item: the arithmetic answer agrees across languages.
  recs = {l: s.examples("train")[0] for l, s in src.items()}
  assert len({r["output"] for r in recs.values()}) == 1
  assert len({r["instruction"] for r in recs.values()}) == len(languages.PINCH)


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_register_instruction_task_orca_shape_and_lima_validation(tmp_path):
  rows = [{"id": f"o{i}", "system_prompt": "Sois bref.", "question": f"Q{i}?",
           "response": f"R{i}.", "lang": "fr"} for i in range(30)]
  path = _write(tmp_path / "aug" / "fr.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
  t5x_tasks.register_instruction_task("myaug.fr", str(tmp_path / "aug" / "*.jsonl"), "fr",
                                      fields="orca", template="opengptx_chat",
                                      validation_fraction=0.0)
  ex = _first("myaug.fr")
  assert ex["inputs_pretokenized"].decode() == "System: Sois bref.\nUser: Q0?\nAssistant: "
  assert ex["targets_pretokenized"] == b"R0."
  assert seqio.get_mixture_or_task("myaug.fr").num_input_examples("train") == 30
  # A mapping of fields for other key names.
  _write(tmp_path / "c.json", json.dumps([{"prompt": "p", "completion": "c"}]))
  t5x_tasks.register_instruction_task(
      "custom.sw", str(tmp_path / "c.json"), "sw",
      fields={"instruction": "prompt", "output": "completion"}, validation_fraction=0.0)
  assert _first("custom.sw")["targets_pretokenized"] == b"c"
  del path


@pytest.mark.parametrize("content,fields,expected", [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output"\n', "alpaca",
     r"bad\.jsonl:2: malformed JSON"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', "alpaca",
     r"bad\.jsonl:2: field 'output' is missing"),
    ('{"instruction": "a", "output": 3}\n', "alpaca",
     r"bad\.jsonl:1: field 'output' is a int, expected a string"),
    ('{"instruction": "  ", "output": "b"}\n', "alpaca", r"bad\.jsonl:1: field 'instruction' is empty"),
    ('{"id": "1", "system_prompt": "", "question": "q", "response": "r", "lang": "xx"}\n', "orca",
     r"bad\.jsonl:1: field 'lang': unknown language code 'xx'"),
    ('{"id": "1", "system_prompt": "", "question": "q", "response": "r", "lang": "de"}\n', "orca",
     r"bad\.jsonl:1: field 'lang' is 'de' but the task's language is 'sw'"),
    ('{"id": "1", "instruction": "a", "output": "b"}\n{"id": "1", "instruction": "c", "output": "d"}\n',
     "alpaca", r"bad\.jsonl:2: field 'id': duplicate id '1'"),
    ('{"turns": ["a", "b"]}\n', "lima", r"bad\.jsonl:1: unknown LIMA-X record shape"),
])
def test_bad_records_name_file_line_field(tmp_path, content, fields, expected):
  path = _write(tmp_path / "bad.jsonl", content)
  with pytest.raises(t5x_tasks.DataError, match=expected):
    readers.read_records(path, fields, "sw")


def test_bad_input_missing_file_unknown_language_and_skip_report(tmp_path, caplog):
  with pytest.raises(t5x_tasks.DataError, match=r"nothere\.json: file not found"):
    readers.read_records(str(tmp_path / "nothere.json"), "alpaca", "sw")
  with pytest.raises(KeyError, match="unknown language code 'zz'"):
    t5x_tasks.register_instruction_task("x.zz", "x.json", "zz")
  # A registered task with a missing file fails when its data is read, naming the file.
  t5x_tasks.register_instruction_task("gone.sw", str(tmp_path / "gone.json.gz"), "sw")
  with pytest.raises(t5x_tasks.DataError, match=r"gone\.json\.gz: file not found"):
    seqio.get_mixture_or_task("gone.sw").num_input_examples("train")
  _write(tmp_path / "empty.jsonl", "")
  with pytest.raises(t5x_tasks.DataError, match=r"empty\.jsonl: no usable records for language 'sw'"):
    readers.read_records(str(tmp_path / "empty.jsonl"), "alpaca", "sw")
  (tmp_path / "plain.json.gz").write_bytes(b'[{"instruction": "a", "output": "b"}]')
  with pytest.raises(t5x_tasks.DataError, match=r"plain\.json\.gz: not a valid gzip file"):
    readers.read_records(str(tmp_path / "plain.json.gz"), "alpaca", "sw")
  rows = ['{"instruction": "a", "output": "b"}', "{oops", '{"instruction": "", "output": "b"}',
          '{"instruction": "c", "output": "d"}']
  path = _write(tmp_path / "skip.jsonl", "\n".join(rows) + "\n")
  with caplog.at_level("WARNING"):
    recs = readers.read_records(path, "alpaca", "sw", skip_bad=True)
  assert [r["output"] for r in recs] == ["b", "d"]
  assert "skipped 2 bad record(s), kept 2" in caplog.text and "skip.jsonl:2" in caplog.text


def test_json_gz_list_and_data_root_from_env(tmp_path, monkeypatch):
  (tmp_path / "bactrian_x").mkdir()
  rows = [{"instruction": f"i{i}", "input": "", "output": f"o{i}", "id": f"x-{i}"} for i in range(5)]
  with gzip.open(tmp_path / "bactrian_x" / "sw.json.gz", "wt", encoding="utf-8") as f:
    json.dump(rows, f)
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(tmp_path))
  assert t5x_tasks.data_root() == str(tmp_path)
  src = t5x_tasks.tasks.task_source("bactrian_x.sw")
  assert len(src.examples("train")) + len(src.examples("validation")) == 5
  assert sorted(r["id"] for r in src.source.records("all")) == [f"x-{i}" for i in range(5)]
  with gin.unlock_config():
    gin.bind_parameter("linguamix.t5x_tasks.data_root.root", str(tmp_path / "elsewhere"))
  try:
    with pytest.raises(t5x_tasks.DataError, match="elsewhere/bactrian_x/sw.json.gz"):
      src.examples("train")
  finally:
    gin.clear_config()


def test_vocabulary_default_and_rebound_from_gin(tmp_path):
  assert t5x_tasks.VOCABULARY.vocab_size == 1024
  ids = t5x_tasks.VOCABULARY.encode("Jumlisha: 3 + 4")
  assert t5x_tasks.VOCABULARY.decode(ids) == "Jumlisha: 3 + 4"
  gin.parse_config([
      "from __gin__ import dynamic_registration",
      "import seqio",
      "from linguamix import t5x_tasks",
      "VOCABULARY = @seqio.ByteVocabulary()",
      "t5x_tasks.task_vocabulary.vocabulary = %VOCABULARY",
  ])
  try:
    assert t5x_tasks.VOCABULARY.vocab_size == 256 + 3
    ex = _first("bactrian_x.en")
    assert bytes((np.array(ex["targets"][:-1]) - 3).astype(np.uint8)).decode() == ex["targets_pretokenized"].decode()
  finally:
    gin.clear_config()
  assert t5x_tasks.VOCABULARY.vocab_size == 1024


def test_data_root_gin_macro(tmp_path, monkeypatch):
  monkeypatch.delenv("LINGUAMIX_DATA_ROOT", raising=False)
  gin_dir = __import__("pathlib").Path(t5x_tasks.__file__).parents[1] / "gin"
  gin.parse_config_files_and_bindings([str(gin_dir / "data_root.gin")],
                                      [f"DATA_ROOT = '{tmp_path}'"])
  try:
    assert t5x_tasks.data_root() == str(tmp_path)
    with pytest.raises(t5x_tasks.DataError, match=f"{tmp_path}/lima_x/train_limax_DE.jsonl"):
      seqio.get_mixture_or_task("lima_x.de").num_input_examples("train")
  finally:
    gin.clear_config()
  assert t5x_tasks.data_root().endswith("sample-v1")


def test_oasst1_rank0_pairs_threads_and_lima_shapes(tmp_path, monkeypatch):
  def msg(mid, parent, role, text, rank=None, lang="de", **kw):
    return dict(message_id=mid, parent_id=parent, role=role, text=text, rank=rank, lang=lang,
                message_tree_id="t1" if mid.startswith("t1") else mid.split("-")[0], **kw)
  rows = [msg("t1", None, "prompter", "Hallo?"),
          msg("t1-a", "t1", "assistant", "Zweitbeste", rank=1),
          msg("t1-b", "t1", "assistant", "Beste", rank=0),
          msg("t1-c", "t1-b", "prompter", "Und dann?"),
          msg("t1-d", "t1-c", "assistant", "Dann Ende.", rank=0),
          msg("t2", None, "prompter", "Gelöscht", deleted=True),
          msg("t2-a", "t2", "assistant", "x", rank=0),
          msg("t3", None, "prompter", "Hi", lang="en"),
          msg("t3-a", "t3", "assistant", "Hello", rank=0, lang="en")]
  path = tmp_path / "oasst1" / "2023-04-12_oasst_ready.messages.jsonl.gz"
  path.parent.mkdir()
  path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
  pairs = readers.read_records(str(path), "oasst1", "de")
  assert [(r["instruction"], r["output"], r["history"]) for r in pairs] == [("Hallo?", "Beste", ())]
  thread = readers.read_records(str(path), "oasst1", "de", thread=True)
  assert thread[0]["history"] == (("Hallo?", "Beste"),) and thread[0]["output"] == "Dann Ende."
  monkeypatch.setenv("LINGUAMIX_DATA_ROOT", str(tmp_path))
  src = t5x_tasks.tasks.task_source("oasst1_thread.de")
  assert src.source.render(src.source.records("all")[0]) == (
      "User: Hallo?\nAssistant: Beste</s>\nUser: Und dann?\nAssistant: ", "Dann Ende.")
  lima = _write(tmp_path / "l.jsonl", json.dumps({"conversations": ["q1", "a1", "q2", "a2"]})
                + "\n" + json.dumps({"instruction": "i", "output": "o"}) + "\n")
  recs = readers.read_records(lima, "lima", "de", id_prefix="train-")
  assert [(r["id"], r["instruction"], r["output"], r["history"]) for r in recs] == [
      ("train-0", "q2", "a2", (("q1", "a1"),)), ("train-1", "i", "o", ())]


def test_tasks_list_command(capsys):
  from linguamix import cli
  assert cli.main(["tasks", "list"]) == 0
  out = capsys.readouterr().out
  assert "bactrian_x  (52 languages, template bactrian)" in out
  assert "lima_x/train_limax_{LANG}.jsonl, validation lima_x/val_limax_{LANG}.jsonl" in out
  assert cli.main(["tasks", "list", "--names"]) == 0
  names = capsys.readouterr().out.split()
  assert "sphinx_langit.hi" in names and "aya.yo" in names


def test_aya_filters_by_language_code_and_fails_on_absent_language(tmp_path):
  rows = [{"inputs": "Ṣe àròpọ̀: 1 + 2", "targets": "3", "language": "Yoruba", "language_code": "yor",
           "annotation_type": "original-annotations", "user_id": "u"},
          {"inputs": "Add: 1 + 2", "targets": "3", "language": "English", "language_code": "eng",
           "annotation_type": "original-annotations", "user_id": "u"},
          # Aya holds codes no linguamix task has (Moroccan Arabic): not a bad record.
          {"inputs": "x", "targets": "y", "language": "Moroccan Arabic", "language_code": "ary",
           "annotation_type": "original-annotations", "user_id": "u"}]
  path = _write(tmp_path / "aya.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
  recs = readers.read_records(path, "aya", "yo")
  assert [(r["instruction"], r["output"], r["id"]) for r in recs] == [("Ṣe àròpọ̀: 1 + 2", "3", "0")]
  with pytest.raises(t5x_tasks.DataError, match=r"aya\.jsonl: no records in language 'zu'"):
    readers.read_records(path, "aya", "zu")
