"""The tables of an evaluation document, whatever its task: what ``models show``, ``models
compare`` and the app's model pages print. One home, so that a new task adds its tables here once.

A table is ``(key, title, rows)``; ``rows[0]`` is the header.
"""

from __future__ import annotations

from typing import NamedTuple


class Table(NamedTuple):
    key: str  # a stable id (an HTML id, a test handle)
    title: str
    rows: list[list[str]]


def metrics_tables(metrics: dict) -> list[Table]:
    """The tables of a metrics document: decision events, alerts and values for a decision
    evaluation; MAE on all windows and on change windows for a value evaluation."""
    if metrics.get("task") == "decisions":
        from vitalflow.evaluate.decision_report import budget_table, value_table
        from vitalflow.evaluate.decisions import event_table

        return [Table("events", "Decision events: AUPRC [95 % interval over cases]", event_table(metrics, "auprc")),
                Table("events-auroc", "Decision events: AUROC [95 % interval over cases]", event_table(metrics, "auroc")),
                Table("budget", "Alerts at one per 10 minutes: recall / precision / median lead time (s)",
                      budget_table(metrics)),
                Table("values", "Set-point values: MAE in the set-point's unit", value_table(metrics))]
    from vitalflow.evaluate.report import comparison_table

    return [Table("all", "All windows (MAE, clinical units)", comparison_table(metrics, "all")),
            Table("changed", "Windows where the target changes within the horizon (MAE, clinical units)",
                  comparison_table(metrics, "changed"))]
