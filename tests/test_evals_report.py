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


def test_report_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no metrics"):
    cli.main(["report", str(tmp_path), "--out", str(tmp_path / "o")])
