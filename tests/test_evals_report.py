"""`linguamix report`: bar charts and the transfer matrix from MetricsLogger folders."""

import csv

import numpy as np

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


def _scored_run(folder, correct_by_lang, step=1):
  """A run folder as evaluate() writes it: per-example scores and the metrics they give."""
  import json
  import numpy as np
  from linguamix.evals import rank
  logger = loggers.MetricsLogger(output_dir=str(folder))
  for lang, correct in correct_by_lang.items():
    (folder / "scores").mkdir(parents=True, exist_ok=True)
    (folder / "scores" / f"xnli.{lang}.jsonl").write_text("".join(
        json.dumps({"idx": i, "label": 0, "pred": 0 if ok else 1, "pred_norm": 0}) + "\n"
        for i, ok in enumerate(correct)))
    targets = [{"idx": i, "choice": c, "label": 0, "num_choices": 3, "length": 1, "flag": ""}
               for i in range(len(correct)) for c in range(3)]
    scores = [s for ok in correct for s in ((0.0, -1.0, -2.0) if ok else (-1.0, 0.0, -2.0))]
    metrics = {k: seqio.metrics.Scalar(v) for k, v in rank.rank_accuracy(targets, scores).items()}
    assert np.isclose(metrics["chance"].value, 100 / 3)
    logger(task_name=f"xnli.{lang}", step=step, dataset=None, inferences=None, targets=None,
           metrics=metrics)


def test_single_run_chart_shows_values_intervals_and_chance(tmp_path):
  from linguamix.evals import charts
  _scored_run(tmp_path / "run", {"de": [True] * 6 + [False] * 4, "en": [True] * 3 + [False] * 7})
  runs = charts.load_runs([str(tmp_path / "run")], None)
  fig = charts.bar_figure(runs, "xnli", "acc")
  ax = fig.axes[0]
  assert sorted(t.get_text() for t in ax.texts) == ["30.0", "60.0"]  # each bar's value
  chance = [l for l in ax.get_lines() if l.get_label().startswith("chance")]
  assert len(chance) == 1 and np.allclose(chance[0].get_ydata(), 100 / 3)
  errorbars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
  assert len(errorbars) == 1
  # the drawn 95% interval of de: 60 ± 1.96 * 100 * sd(ddof=1) / sqrt(10)
  se = 100 * np.std([1] * 6 + [0] * 4, ddof=1) / np.sqrt(10)
  segments = errorbars[0].lines[2][0].get_segments()
  spans = sorted(float(seg[1][1] - seg[0][1]) for seg in segments)
  assert np.isclose(spans[1], 2 * 1.959964 * se, rtol=1e-4)


def test_paired_mcnemar_between_two_runs(tmp_path, capsys):
  from scipy import stats
  # 20 shared examples per language; a right where b is wrong on 7 (de) / 1 (en), the reverse on 1 / 1.
  a = {"de": [True] * 12 + [False] * 8, "en": [True] * 10 + [False] * 10}
  b = {"de": [True] * 5 + [False] * 7 + [True] + [False] * 7, "en": [True] * 9 + [False, True] + [False] * 9}
  _scored_run(tmp_path / "a", a)
  _scored_run(tmp_path / "b", b)
  out = tmp_path / "report"
  assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--paired",
                   "--out", str(out)]) == 0
  with open(out / "paired_acc.csv") as f:
    rows = {r["language"]: r for r in csv.DictReader(f)}
  assert (rows["de"]["a_only"], rows["de"]["b_only"]) == ("7", "1")
  assert float(rows["de"]["p_value"]) == pytest.approx(stats.binomtest(7, 8, 0.5).pvalue)
  assert float(rows["en"]["p_value"]) == pytest.approx(1.0)
  assert (rows["all"]["a_only"], rows["all"]["b_only"], rows["all"]["num_examples"]) == ("8", "2", "40")
  assert float(rows["all"]["p_value"]) == pytest.approx(stats.binomtest(8, 10, 0.5).pvalue)
  assert float(rows["de"]["diff"]) == pytest.approx(60.0 - 30.0)
  assert "exact McNemar" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    cli.main(["report", str(tmp_path / "a"), "--paired", "--out", str(out)])
