"""Evaluation harness: per-point MAE, share within 0.25/0.5 mm, presence confusion, counts,
overall and per group.

Public interface:
- evaluate(estimates, labels, groups) -> EvalReport (the one place for the metric
  arithmetic; report.as_dict() is the JSON of `appliance evaluate --json`).
- read_labels(csv) / write_labels(rows, csv) / LabelRow: the labels.csv format.
- evaluate_labelled(estimator, labels_csv, root) -> LabelledRun (parse, estimate, score).
"""

from appliance.evaluation.labelled import LabelledRun, evaluate_labelled
from appliance.evaluation.labels import LABEL_COLUMNS, LabelRow, read_labels, write_labels
from appliance.evaluation.metrics import EvalReport, GroupReport, PointMetrics, evaluate

__all__ = ["LABEL_COLUMNS", "EvalReport", "GroupReport", "LabelRow", "LabelledRun",
           "PointMetrics", "evaluate", "evaluate_labelled", "read_labels", "write_labels"]
