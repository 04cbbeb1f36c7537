"""lm-evaluation-harness run offline on local files: its own task yamls pointed at
JSON-lines files, byte-level BPE tokenizers for tiny Hugging Face models, and a run that
records the token ids lm-eval scores. Shared by tests/test_evals_lm_eval.py and
benchmarks/bench_evals.py --vs-lm-eval."""

import functools
import json
import pathlib
import re
import shutil
import time

import lm_eval
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

TASKS_DIR = pathlib.Path(lm_eval.__file__).parent / "tasks"
FOLDERS = (("xcopa", "_xcopa.yaml"), ("paws-x", "_pawsx.yaml"), ("xnli", "_xnli.yaml"))
MORE_FOLDERS = (("xstorycloze", "_xstorycloze.yaml"), ("xwinograd", "_xwinograd.yaml"),
                ("belebele", "_belebele.yaml"))


def _with_acc_norm(text: str) -> str:
  # lm-eval computes acc_norm per doc from the same log-likelihoods: listed, it is compared too
  if "metric: acc_norm" in text:
    return text
  return text.replace("metric_list:\n", "metric_list:\n  - metric: acc_norm\n")


def point_at(text: str, task: str, data_file: str | None, included: str = "") -> str:
  """An lm-eval yaml read from a local JSON-lines file: every split it (or the yaml it
  includes, `included`) names, and train, validation, test, is that file; None: a file
  that does not exist (a yaml only included by others). Also lists `acc_norm` among its
  metrics."""
  text = _with_acc_norm(text)
  text = re.sub(r"^dataset_path: .*$", "dataset_path: json", text, flags=re.M)
  text = re.sub(r"^dataset_name: .*$", "dataset_name: null", text, flags=re.M)
  text = re.sub(r"^task: (\w+)$", r"task: lmx_\1", text, flags=re.M)
  data_file = data_file or f"/nonexistent/{task}.jsonl"
  splits = {"train", "validation", "test"} | set(re.findall(r"^\w+_split: (\w+)$", text + "\n" + included,
                                                            flags=re.M))
  files = json.dumps({split: data_file for split in sorted(splits)})
  return text + f"dataset_kwargs:\n  data_files: {files}\n"


def copy_tasks(out: pathlib.Path, files: dict, folders=FOLDERS) -> None:
  """lm-eval's task folders (prompt functions unchanged), tasks and groups renamed
  `lmx_*`, each task on `files[original task name]`; tasks without a file are there but
  unreadable (a group is left out when some of its tasks have no file)."""
  for folder, group in folders:
    dest = out / folder
    shutil.copytree(TASKS_DIR / folder, dest, ignore=shutil.ignore_patterns("*.yaml", "__pycache__"))
    for template in dest.glob("*_yaml"):  # the files the task yamls include
      text = re.sub(r"^dataset_path: .*$", "dataset_path: json", template.read_text(encoding="utf-8"),
                    flags=re.M)
      template.write_text(_with_acc_norm(text), encoding="utf-8")
    for path in (TASKS_DIR / folder).glob("*.yaml"):
      text = path.read_text(encoding="utf-8")
      if path.name == group:
        if all(t in files for t in re.findall(r"^\s+- (\w+)$", text, flags=re.M)):
          text = re.sub(r"^(\s+- )(\w+)$", r"\1lmx_\2", text, flags=re.M)
          (dest / path.name).write_text(re.sub(r"^group: (\w+)$", r"group: lmx_\1", text, flags=re.M))
      else:  # every task (another may include it), those without a file on none
        task = re.search(r"^task: (\w+)$", text, flags=re.M).group(1)
        include = re.search(r"^include: (\S+)$", text, flags=re.M)
        included = (TASKS_DIR / folder / include.group(1)).read_text(encoding="utf-8") if include else ""
        (dest / path.name).write_text(point_at(text, task, files.get(task), included), encoding="utf-8")


def train_tokenizer(directory, texts, template, specials, config, vocab_size=700, added=()) -> int:
  """A byte-level BPE tokenizer.json (+ tokenizer_config.json) in `directory`; `template`
  is its post-processor (e.g. "<s> $A"), None for none. `specials` take the first ids,
  `added` special tokens the last (GPT-2 / Qwen2 style: then id 0 is the text token `!`).
  Returns the vocabulary size."""
  tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(texts, trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.add_special_tokens(list(added))
  specials = list(specials) + list(added)
  if template:
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tok.token_to_id(t)) for t in specials if t in template])
  directory.mkdir(parents=True, exist_ok=True)
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "PreTrainedTokenizerFast", **config}))
  return tok.get_vocab_size()



@functools.cache
def _task_manager(include_path: str) -> TaskManager:
  """One index per task folder: building it reads every yaml lm-eval ships (~15 s of CPU);
  tasks are loaded afresh from it on each run. The folder must hold its tasks before its
  first run (new task names are not indexed later; edited yamls are read when loaded)."""
  return TaskManager(include_path=include_path)


def run(directory, tasks, include_path, limit, batch_size=16):
  """simple_evaluate of HFLM(directory) -> (results, {(context, continuation): (context
  ids, continuation ids) as scored}, seconds spent scoring)."""
  lm = HFLM(pretrained=str(directory), batch_size=batch_size, device="cpu", dtype="float32")
  captured = {}
  spent = [0.0]
  original = lm._loglikelihood_tokens

  def spy(reqs, **kwargs):
    for (context, continuation), context_enc, continuation_enc in reqs:
      captured[(context, continuation)] = (list(context_enc), list(continuation_enc))
    start = time.perf_counter()
    out = original(reqs, **kwargs)
    spent[0] += time.perf_counter() - start
    return out
  lm._loglikelihood_tokens = spy
  out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=_task_manager(str(include_path)),
                                limit=limit, log_samples=True)
  return out, captured, spent[0]
