"""The dashboard's Experiments view: a table of experiments and, for the chart, each one's
trials (params, metrics, validation) as compact JSON; `static/dashboard.js` plots a metric
against a chosen param and marks the best trial."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..formatting import format_percent

if TYPE_CHECKING:
    from ..experiments import ExperimentRecord, Trial

# The newest experiments shown, and the trials of each carried into the page.
MAX_EXPERIMENTS = 20
MAX_TRIALS = 5000


def experiments_view(
    records: list[ExperimentRecord], trials_of: dict[int, list[Trial]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(table rows, chart payload) of the experiments handed in (the newest
    `MAX_EXPERIMENTS`, with up to `MAX_TRIALS` trials each); both empty without any."""
    records = records[:MAX_EXPERIMENTS]
    rows = [_row(record) for record in records]
    payload = []
    for record in records:
        trials = trials_of.get(record.id, [])[:MAX_TRIALS]
        params = list(dict.fromkeys(k for t in trials for k in t.params))
        metrics = list(dict.fromkeys(k for t in trials for k in t.metrics))
        payload.append(
            {
                "id": record.id,
                "name": record.name,
                "params": params,
                "metrics": metrics,
                # [trial number, param values, metric values, validation: 1 passed, 0 failed,
                # None not validated]; a param that is not a number or text is shown as text.
                "trials": [
                    [
                        t.trial_number,
                        [_scalar(t.params.get(k)) for k in params],
                        [t.metrics.get(k) for k in metrics],
                        None if t.validation is None else int(t.validation.passed),
                    ]
                    for t in trials
                ],
                "cut": record.n_trials > len(trials),
            }
        )
    return rows, payload


def _row(record: ExperimentRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "template": record.template,
        "mode": record.mode,
        "trials": record.n_trials,
        "failed": f"{record.n_failed}/{record.n_validated}" if record.n_validated else "—",
        "rate": format_percent(record.failure_rate),
        "created": record.created_at.strftime("%Y-%m-%d %H:%M"),
    }


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
