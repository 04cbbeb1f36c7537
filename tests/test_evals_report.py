"""`linguamix report`: bar charts and the transfer matrix from MetricsLogger folders."""

import csv

import matplotlib.image
import pytest
import seqio

from linguamix import cli
from linguamix.evals import loggers


def _run(folder, accs):
  logger = loggers.MetricsLogger(output_dir=str(folder))
  for lang, (acc, n) in accs.items():
    logger(task_name=f"xcopa.{lang}", step=100, dataset=None, inferences=None, targets=None,
           metrics={"acc": seqio.metrics.Scalar(acc), "num_examples": seqio.metrics.Scalar(n)})


def test_report_transfer_matrix(tmp_path, capsys):
  _run(tmp_path / "mono_it", {"it": (70.0, 500), "sw": (50.0, 500)})
  _run(tmp_path / "multi", {"it": (66.0, 500), "sw": (60.0, 100), "tr": (58.0, 500)})
  md = (tmp_path / "multi" / "summary.md").read_text()
  # avg over languages 61.33; weighted by examples (66*500+60*100+58*500)/1100 = 61.82
  assert "| acc | 66.00 | 60.00 | 58.00 | 61.33 | 61.82 |" in md
  out = tmp_path / "report"
  assert cli.main(["report", str(tmp_path / "mono_it"), str(tmp_path / "multi"),
                   "--label", "it-only", "--label", "all", "--out", str(out)]) == 0
  with open(out / "transfer_xcopa_acc.csv") as f:
    rows = list(csv.reader(f))
  assert rows == [["recipe", "it", "sw", "tr"], ["it-only", "70.0000", "50.0000", "nan"],
                  ["all", "66.0000", "60.0000", "58.0000"]]
  for png in ("xcopa_acc.png", "transfer_xcopa_acc.png"):
    image = matplotlib.image.imread(out / png)
    assert image.ndim == 3 and image.shape[0] > 100
  assert "| all | 66.00 | 60.00 | 58.00 |" in capsys.readouterr().out


def test_report_errors(tmp_path, capsys):
  assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("linguamix report: error: no metrics/*.json in ") and "Traceback" not in err


def test_scores_logger_writes_tasks_that_are_not_rank_classification(tmp_path):
  """A generation or plain scoring task (no `idx`, no choices) still gets its audit file."""
  import json

  import tensorflow as tf
  dataset = tf.data.Dataset.from_tensor_slices(
      {"inputs_pretokenized": ["a", "b"], "targets_pretokenized": ["x", "y"]})
  logger = loggers.ScoresLogger(output_dir=str(tmp_path))
  logger("toy.en", 0, {}, dataset, {"score": [-1.5, -2.0]}, ["x", "y"])
  logger("toy.de", 0, {}, dataset, {"prediction": ["x", "z"]}, ["x", "y"])
  scored = [json.loads(l) for l in (tmp_path / "scores" / "toy.en.jsonl").read_text().splitlines()]
  assert scored == [{"idx": 0, "inputs": "a", "targets": "x", "score": -1.5},
                    {"idx": 1, "inputs": "b", "targets": "y", "score": -2.0}]
  predicted = [json.loads(l) for l in (tmp_path / "scores" / "toy.de.jsonl").read_text().splitlines()]
  assert [(p["idx"], p["prediction"], p["references"]) for p in predicted] == [
      (0, "x", ["x"]), (1, "z", ["y"])]
