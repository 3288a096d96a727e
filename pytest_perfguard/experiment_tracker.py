"""The seed experiment tracker's calls, on the history database: change only the import line.

    from pytest_perfguard.experiment_tracker import ExperimentTracker

    tracker = ExperimentTracker(db_path="experiments.db")
    exp_id = tracker.create_experiment(name="Momentum", template="Momentum", mode="tpe",
                                       config={"n_trials": 50})
    trial_id = tracker.log_trial(experiment_id=exp_id, trial_number=1,
                                 params={"lookback": 20}, performance={"sharpe": 1.23})
    tracker.log_ttpt_result(trial_id=trial_id, passed=True, num_violations=0,
                            metrics={"correlation": 0.98})

Ids are the history's. A trial's `performance` is its metrics, a TTPT result its
validation; strategy code, template and generation method are kept in the trial's
`extra`. `db_path` is a SQLite path or any database URL `History` takes. The seed's JSON
backend is not kept: `perfguard experiments export`/`import` carry experiments as JSON
instead (docs/coming-from-experiment-tracker.md says why). New code should use
`History.experiment` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .api import History
from .experiment_history import ExperimentImport
from .experiments import Trial
from .history.errors import HistoryError

__all__ = ["ExperimentTracker"]


class ExperimentTracker:
    """The seed's `ExperimentTracker`, backed by a `History`."""

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = "experiments.db",
        *,
        history: History | None = None,
    ) -> None:
        if history is None and db_path is not None and os.fspath(db_path).endswith(".json"):
            raise HistoryError(
                f"{os.fspath(db_path)}: the JSON backend is gone; use a database path (SQLite) "
                "and 'perfguard experiments export' / 'import' to move experiments as JSON"
            )
        self.history = history if history is not None else History(db_path)

    def close(self) -> None:
        self.history.close()

    # -- logging ----------------------------------------------------------------------------

    def create_experiment(
        self, name: str, template: str, mode: str, config: Mapping[str, Any] | None = None
    ) -> int:
        """A new experiment (even when one of that name exists); its id."""
        return self.history.experiment(
            name, template=template, mode=mode, config=config or {}, new=True
        ).id

    def log_trial(
        self,
        experiment_id: int,
        trial_number: int,
        params: Mapping[str, Any],
        performance: Mapping[str, float],
        strategy_code: str | None = None,
        strategy_template: str | None = None,
        generation_method: str | None = None,
    ) -> int:
        """Store a trial; its id (for `log_ttpt_result`)."""
        given = (strategy_code, strategy_template, generation_method)
        pairs = zip(_EXTRA_KEYS, given, strict=True)
        extra = {key: value for key, value in pairs if value is not None}
        trial = self.history.log_trial(
            experiment_id,
            params=params,
            metrics=performance,
            trial_number=trial_number,
            extra=extra or None,
        )
        return trial.id

    def log_ttpt_result(
        self,
        trial_id: int,
        passed: bool,
        num_violations: int,
        metrics: Mapping[str, Any] | None = None,
    ) -> int:
        """Record a trial's validation; returns the trial id (the result lives on the trial)."""
        validation = {"passed": passed, "violations": num_violations, "metrics": metrics or {}}
        return self.history.set_trial_validation(trial_id, validation).id

    def log_experiment_summary(self, experiment_id: int, summary: Mapping[str, Any]) -> None:
        self.history.set_experiment_summary(experiment_id, summary)

    # -- queries ----------------------------------------------------------------------------

    def get_experiment(self, experiment_id: int) -> dict[str, Any]:
        return self.history.get_experiment(experiment_id).record.to_dict()

    def list_experiments(self) -> list[dict[str, Any]]:
        return [record.to_dict() for record in self.history.experiments()]

    def get_trials(self, experiment_id: int) -> list[dict[str, Any]]:
        return [_seed_trial(t) for t in self.history.trials(experiment_id)]

    def filter_experiments(
        self,
        max_violation_rate: float | None = None,
        *,
        template: str | None = None,
        mode: str | None = None,
    ) -> list[dict[str, Any]]:
        """Experiments whose share of trials failing validation is at most
        `max_violation_rate` (experiments without validated trials count as 0)."""

        def keep(record: Any) -> bool:
            rate = record.violation_rate or 0.0
            return max_violation_rate is None or rate <= max_violation_rate

        records = self.history.experiments(keep, template=template, mode=mode)
        return [record.to_dict() for record in records]

    def compare_experiments(
        self, experiment_ids: Sequence[int], metric: str | None = None, direction: str = "higher"
    ) -> list[dict[str, Any]]:
        """Per experiment, every metric (or `metric`) over its trials: best, median, mean,
        first, last, improvement."""
        metrics = [metric] if metric is not None else self._metric_names(experiment_ids)
        by_id: dict[int, dict[str, Any]] = {}
        for name in metrics:
            for row in self.history.compare_experiments(experiment_ids, name, direction):
                entry = by_id.setdefault(
                    row.experiment_id,
                    {"experiment_id": row.experiment_id, "name": row.name, "n_trials": row.n_trials,
                     "failure_rate": row.failure_rate, "metrics": {}},
                )  # fmt: skip
                entry["metrics"][name] = row.to_dict()
        return [by_id[i] for i in experiment_ids if i in by_id] if metrics else []

    def get_best_trial(
        self, experiment_id: int, metric: str, direction: str = "higher"
    ) -> dict[str, Any] | None:
        best = self.history.get_experiment(experiment_id).best(metric, direction)
        return None if best is None else _seed_trial(best)

    def track_improvement(
        self, experiment_id: int, metric: str, direction: str = "higher"
    ) -> dict[str, Any]:
        return self.history.get_experiment(experiment_id).improvement(metric, direction).to_dict()

    def export_to_dataframe(self, experiment_id: int | None = None) -> Any:
        return self.history.experiments_dataframe(
            None if experiment_id is None else [experiment_id]
        )

    def export_to_json(self, path: str | os.PathLike[str]) -> int:
        """Write every experiment to a JSON file (`perfguard experiments import` reads it)."""
        with open(path, "w", encoding="utf-8") as out:
            return self.history.export_experiments(out)

    def import_from_json(self, path: str | os.PathLike[str]) -> ExperimentImport:
        return self.history.import_experiments(path)

    def _metric_names(self, experiment_ids: Sequence[int]) -> list[str]:
        names: dict[str, None] = {}
        for experiment_id in experiment_ids:
            for trial in self.history.trials(experiment_id):
                names.update(dict.fromkeys(trial.metrics))
        return list(names)


_EXTRA_KEYS = ("strategy_code", "strategy_template", "generation_method")


def _seed_trial(trial: Trial) -> dict[str, Any]:
    """A trial as the seed's `get_trials` gave it: `performance` for the metrics, and its
    TTPT result (passed, num_violations, metrics) or None."""
    validation = trial.validation
    return {
        "id": trial.id,
        "experiment_id": trial.experiment_id,
        "trial_number": trial.trial_number,
        "params": trial.params,
        "performance": trial.metrics,
        **{key: trial.extra.get(key) for key in _EXTRA_KEYS},
        "created_at": trial.created_at.isoformat(),
        "ttpt_result": None
        if validation is None
        else {
            "passed": validation.passed,
            "num_violations": validation.violations,
            "metrics": validation.metrics,
        },
    }
