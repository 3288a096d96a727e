"""`History`'s experiment methods: experiments and trials stored in the history database.

Kept apart from `api.py` so that file stays the door to runs; `History` inherits these, so
users still have one object (``history.experiment(...)``). The SQL is in
`history/experiment_store.py`, the records and arithmetic in `experiments.py`.

Export and import (`export_experiments`, `import_experiments`) carry experiments between
databases as one JSON document: the seed tracker's JSON-file fallback, for a machine
without the database. Importing is idempotent: an experiment is matched by name and
creation time, and only trial numbers it lacks are added.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, Union

from .history.errors import HistoryError

# `experiments` (the records and their arithmetic) loads in the methods that use it: the
# plugin's `History` writes runs, and a session that never touches an experiment should
# not build its classes.
if TYPE_CHECKING:
    from sqlalchemy import Connection

    from .experiments import (
        Experiment,
        ExperimentComparison,
        ExperimentFilter,
        ExperimentRecord,
        Trial,
    )
    from .history.store import HistoryStore

__all__ = ["EXPORT_FORMAT", "ExperimentHistory", "ExperimentImport", "ExperimentRef"]

EXPORT_FORMAT = "perfguard-experiments"
EXPORT_VERSION = 1

# An experiment named by id, by name (its newest of that name) or by its handle.
ExperimentRef = Union[int, str, "Experiment"]


@dataclass(frozen=True, slots=True)
class ExperimentImport:
    """What `import_experiments` did: experiments created, experiments found already there,
    trials added and trials skipped (their numbers were already stored)."""

    created: int
    matched: int
    trials_added: int
    trials_skipped: int

    def to_dict(self) -> dict[str, int]:
        return {
            "created": self.created,
            "matched": self.matched,
            "trials_added": self.trials_added,
            "trials_skipped": self.trials_skipped,
        }


class ExperimentHistory:
    """The experiment half of `History` (a mixin: `History` provides `_errors`)."""

    def _errors(self) -> AbstractContextManager[HistoryStore]:  # pragma: no cover - History's
        raise NotImplementedError

    def experiment(
        self,
        name: str,
        *,
        template: str | None = None,
        mode: str | None = None,
        config: Mapping[str, Any] | None = None,
        new: bool = False,
    ) -> Experiment:
        """The newest experiment called `name`, created when there is none (or `new`).

        Given for an existing experiment, `template`, `mode` and `config` must match what is
        stored (HistoryError otherwise: start a new one with `new=True`).
        """
        from .history import experiment_store as es

        _check_name(name)
        config = _json_object(config, "config")
        with self._errors() as store:
            found = [] if new else es.find_experiments_read(store, name=name)
            if found:
                record = found[0]
                _check_same(record, template, mode, config)
            else:
                new_id = es.write(
                    store.engine, es.create_experiment, name, template or "", mode or "",
                    config or {},
                )  # fmt: skip
                [record] = es.find_experiments_read(store, ids=[new_id])
        from .experiments import Experiment

        return Experiment(self, record)

    def get_experiment(self, ref: ExperimentRef) -> Experiment:
        """An existing experiment by id or name (the newest of that name)."""
        from .experiments import Experiment

        return Experiment(self, self._resolve([ref])[0])

    def experiments(
        self,
        filter: ExperimentFilter | None = None,
        *,
        name: str | None = None,
        template: str | None = None,
        mode: str | None = None,
    ) -> list[ExperimentRecord]:
        """Experiments with their trial counts, newest first.

        `name` is a glob (``'*sweep*'``, any case); `filter` is a condition on the counts,
        e.g. ``"failure_rate <= 0.2"`` (the share of validated trials that failed
        validation), ``["trials >= 10", "violations == 0"]``, or a callable taking an
        `ExperimentRecord`.
        """
        from .experiments import experiment_filter
        from .history import experiment_store as es

        matches = experiment_filter(filter)
        with self._errors() as store:
            records = es.find_experiments_read(store, name_glob=name, template=template, mode=mode)
        return [record for record in records if matches(record)]

    def log_trial(
        self,
        experiment: ExperimentRef,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        validation: Any = None,
        trial_number: int | None = None,
        run_id: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Trial:
        """Store a trial of `experiment` (see `Experiment.log_trial`)."""
        from .experiments import check_metrics, check_validation
        from .history import experiment_store as es

        checked_metrics = check_metrics(metrics)
        checked_validation = check_validation(validation)
        checked_params = _json_object(params, "params") or {}
        checked_extra = _json_object(extra, "extra")
        if trial_number is not None and (
            isinstance(trial_number, bool) or not isinstance(trial_number, int) or trial_number < 1
        ):
            raise HistoryError(
                f"log_trial: trial_number must be a whole number >= 1, not {trial_number!r}"
            )
        experiment_id = self._experiment_id(experiment)
        with self._errors() as store:
            return es.write(
                store.engine, es.insert_trial, experiment_id, trial_number, checked_params,
                checked_metrics, checked_validation, checked_extra, run_id,
            )  # fmt: skip

    def set_trial_validation(self, trial_id: int, validation: Any) -> Trial:
        """Record the validation outcome of a trial logged before it was validated (the
        seed tracker's `log_ttpt_result`); replaces an earlier one."""
        from .experiments import check_validation
        from .history import experiment_store as es

        checked = check_validation(validation)
        with self._errors() as store:
            return es.write(store.engine, es.set_validation, trial_id, checked)

    def trials(self, experiment: ExperimentRef) -> list[Trial]:
        """Every trial of `experiment`, by trial number."""
        from .history import experiment_store as es

        experiment_id = self._experiment_id(experiment)
        with self._errors() as store:
            return store.read(es.list_trials, experiment_id)

    def set_experiment_summary(
        self, experiment: ExperimentRef, summary: Mapping[str, Any] | None
    ) -> ExperimentRecord:
        """Replace the experiment's summary (a JSON object, or None); its record after."""
        from .history import experiment_store as es

        experiment_id = self._experiment_id(experiment)
        checked = _json_object(summary, "summary")
        with self._errors() as store:
            es.write(store.engine, es.set_summary, experiment_id, checked)
            return es.find_experiments_read(store, ids=[experiment_id])[0]

    def compare_experiments(
        self, experiments: Sequence[ExperimentRef], metric: str, direction: str = "higher"
    ) -> list[ExperimentComparison]:
        """`metric` side by side over the trials of each experiment: trials, best (and its
        trial), median, mean, first, last, improvement and validation failure rate."""
        from .experiments import check_direction, check_metrics
        from .history import experiment_store as es

        check_direction(direction)
        check_metrics({metric: 0.0}, "compare_experiments")
        records = self._resolve(experiments)
        with self._errors() as store:
            return store.read(es.compare, records, metric, direction)

    def experiments_dataframe(self, experiments: Sequence[ExperimentRef] | None = None) -> Any:
        """One row per trial (all experiments when None): experiment, trial number, created
        at, validation, then a ``params.<name>`` and ``metrics.<name>`` column per name.
        Needs pandas."""
        from .history import experiment_store as es

        try:
            import pandas
        except ImportError:
            raise HistoryError("experiments_dataframe needs pandas: pip install pandas") from None
        records = self._resolve(experiments) if experiments is not None else self.experiments()
        by_id = {r.id: r for r in records}

        def rows(conn: Connection) -> list[dict[str, Any]]:
            found = []
            for trial in es.iter_trials(conn, list(by_id)):
                record = by_id[trial.experiment_id]
                row: dict[str, Any] = {
                    "experiment_id": record.id,
                    "experiment": record.name,
                    "template": record.template,
                    "mode": record.mode,
                    "trial_number": trial.trial_number,
                    "created_at": trial.created_at,
                    "passed": None if trial.validation is None else trial.validation.passed,
                    "violations": None if trial.validation is None else trial.validation.violations,
                }
                row.update((f"params.{k}", v) for k, v in trial.params.items())
                row.update((f"metrics.{k}", v) for k, v in trial.metrics.items())
                found.append(row)
            return found

        with self._errors() as store:
            data = store.read(rows)
        return pandas.DataFrame.from_records(data, columns=_columns(data))

    def export_experiments(
        self, out: TextIO, experiments: Sequence[ExperimentRef] | None = None
    ) -> int:
        """Write experiments (all when None) with every trial to `out` as one JSON document;
        returns the number of experiments. Trials are streamed, not held in memory."""
        from .history import experiment_store as es

        records = self._resolve(experiments) if experiments is not None else self.experiments()
        records = sorted(records, key=lambda r: (r.created_at, r.id))

        def write(conn: Connection) -> None:
            out.write(f'{{"format": "{EXPORT_FORMAT}", "version": {EXPORT_VERSION}, ')
            out.write('"experiments": [')
            for index, record in enumerate(records):
                head = {
                    "name": record.name,
                    "template": record.template,
                    "mode": record.mode,
                    "config": record.config,
                    "summary": record.summary,
                    "created_at": record.created_at.isoformat(),
                }
                out.write(("," if index else "") + "\n  " + json.dumps(head)[:-1])
                out.write(', "trials": [')
                # One experiment's trials in memory at a time.
                for number, trial in enumerate(es.list_trials(conn, record.id)):
                    entry = trial.to_dict()
                    del entry["run_id"]  # the runs stay in their own database
                    out.write(("," if number else "") + "\n    " + json.dumps(entry))
                out.write("]}")
            out.write("\n]}\n")

        with self._errors() as store:
            store.read(write)
        return len(records)

    def import_experiments(
        self, source: str | os.PathLike[str] | Mapping[str, Any]
    ) -> ExperimentImport:
        """Add the experiments of an export (a file path or the parsed document)."""
        from .history import experiment_store as es

        data = _read_export(source)
        parsed = [_parse_experiment(i, item) for i, item in enumerate(data["experiments"])]
        with self._errors() as store:
            return es.write(store.engine, _import, parsed)

    # -- helpers ----------------------------------------------------------------------------


    def _experiment_id(self, ref: ExperimentRef) -> int:
        from .experiments import Experiment

        if isinstance(ref, Experiment):
            return ref.id
        if isinstance(ref, int) and not isinstance(ref, bool):
            return ref
        return self._resolve([ref])[0].id

    def _resolve(self, refs: Sequence[ExperimentRef]) -> list[ExperimentRecord]:
        """The records of `refs`, in order; HistoryError naming the first unknown one."""
        from .history import experiment_store as es

        if isinstance(refs, (str, bytes)):
            raise HistoryError(f"give a list of experiments, not the string {refs!r}")
        from .experiments import Experiment

        ids = [r.id if isinstance(r, Experiment) else r for r in refs if not isinstance(r, str)]
        names = [r for r in refs if isinstance(r, str)]
        with self._errors() as store:
            by_id = {r.id: r for r in es.find_experiments_read(store, ids=ids)} if ids else {}
            by_name: dict[str, ExperimentRecord] = {}
            for name in dict.fromkeys(names):
                found = es.find_experiments_read(store, name=name)
                if found:
                    by_name[name] = found[0]
        resolved = []
        for ref in refs:
            if isinstance(ref, str):
                record = by_name.get(ref)
            else:
                key = ref.id if isinstance(ref, Experiment) else ref
                if isinstance(key, bool) or not isinstance(key, int):
                    raise HistoryError(f"{ref!r} is not an experiment id, name or Experiment")
                record = by_id.get(key)
            if record is None:
                raise HistoryError(f"experiment {ref!r} not found")
            resolved.append(record)
        return resolved


@dataclass(frozen=True, slots=True)
class _ParsedExperiment:
    name: str
    template: str
    mode: str
    config: dict[str, Any]
    summary: dict[str, Any] | None
    created_at: datetime
    trials: list[dict[str, Any]]


def _import(conn: Connection, parsed: Sequence[_ParsedExperiment]) -> ExperimentImport:
    from .history import experiment_store as es

    created = matched = added = skipped = 0
    for item in parsed:
        existing = [
            r for r in es.find_experiments(conn, name=item.name) if r.created_at == item.created_at
        ]
        if existing:
            matched += 1
            experiment_id = existing[0].id
            if item.summary is not None and existing[0].summary is None:
                es.set_summary(conn, experiment_id, item.summary)
        else:
            created += 1
            experiment_id = es.create_experiment(
                conn, item.name, item.template, item.mode, item.config, item.summary,
                item.created_at,
            )  # fmt: skip
        taken = es.trial_numbers(conn, experiment_id) if existing else set()
        fresh: dict[int, dict[str, Any]] = {}
        for trial in item.trials:
            if trial["trial_number"] in taken or trial["trial_number"] in fresh:
                skipped += 1
            else:
                fresh[trial["trial_number"]] = trial
        es.insert_trials_bulk(conn, experiment_id, list(fresh.values()))
        added += len(fresh)
    return ExperimentImport(created, matched, added, skipped)


def _read_export(source: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        data: Any = source
        where = "experiments"
    else:
        path = Path(source)
        where = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise HistoryError(f"{path}: cannot be read: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HistoryError(f"{path}: not valid JSON ({exc})") from None
    if not is_experiments_export(data):
        raise HistoryError(
            f"{where}: not a perfguard experiments export "
            f'(expected {{"format": "{EXPORT_FORMAT}", "experiments": [...]}})'
        )
    if data.get("version", EXPORT_VERSION) > EXPORT_VERSION:
        raise HistoryError(
            f"{where}: experiments export version {data['version']} is newer than this "
            f"pytest-perfguard reads ({EXPORT_VERSION}): upgrade pytest-perfguard"
        )
    return data  # type: ignore[no-any-return]


def is_experiments_export(data: Any) -> bool:
    """Whether parsed JSON is an experiments export (for `perfguard import`)."""
    return (
        isinstance(data, Mapping)
        and data.get("format") == EXPORT_FORMAT
        and isinstance(data.get("experiments"), list)
    )


def _parse_experiment(index: int, item: Any) -> _ParsedExperiment:
    from .experiments import check_metrics, check_validation

    where = f"experiments[{index}]"
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise HistoryError(f"{where}: an experiment needs a name")
    _check_name(item["name"])
    created_at = _timestamp(item.get("created_at"), where)
    trials = []
    for number, trial in enumerate(item.get("trials") or []):
        at = f"{where}.trials[{number}]"
        if not isinstance(trial, Mapping):
            raise HistoryError(f"{at}: a trial must be an object")
        trial_number = trial.get("trial_number")
        if isinstance(trial_number, bool) or not isinstance(trial_number, int) or trial_number < 1:
            raise HistoryError(f"{at}: trial_number must be a whole number >= 1")
        try:
            trials.append(
                {
                    "trial_number": trial_number,
                    "params": _json_object(trial.get("params"), "params") or {},
                    "metrics": check_metrics(trial.get("metrics"), at),
                    "validation": check_validation(trial.get("validation")),
                    "extra": _json_object(trial.get("extra"), "extra"),
                    "created_at": _timestamp(trial.get("created_at"), at),
                }
            )
        except HistoryError as exc:
            raise HistoryError(f"{at}: {exc}") from None
    return _ParsedExperiment(
        name=item["name"],
        template=str(item.get("template") or ""),
        mode=str(item.get("mode") or ""),
        config=_json_object(item.get("config"), "config") or {},
        summary=_json_object(item.get("summary"), "summary"),
        created_at=created_at,
        trials=trials,
    )


def _timestamp(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise HistoryError(f"{where}: created_at {value!r} is not an ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise HistoryError(
            f"experiment name {name!r} must be a non-empty string (255 characters at most)"
        )


def _check_same(
    record: ExperimentRecord, template: str | None, mode: str | None, config: dict[str, Any] | None
) -> None:
    for field_name, given, stored in (
        ("template", template, record.template),
        ("mode", mode, record.mode),
        ("config", config, record.config),
    ):
        if given is not None and given != stored:
            raise HistoryError(
                f"experiment {record.name!r} (id {record.id}) is stored with {field_name} "
                f"{stored!r}, not {given!r}: pass new=True to start a new experiment"
            )


def _json_object(value: Any, what: str) -> dict[str, Any] | None:
    """A JSON object (dict with string keys), checked by encoding it; None stays None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise HistoryError(f"{what} must be a dict, not {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise HistoryError(f"{what} must be JSON (numbers finite): {exc}") from None


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    fixed = ["experiment_id", "experiment", "template", "mode", "trial_number", "created_at",
             "passed", "violations"]  # fmt: skip
    names = dict.fromkeys(k for row in rows for k in row if k not in fixed)
    params = sorted(k for k in names if k.startswith("params."))
    metrics = sorted(k for k in names if k.startswith("metrics."))
    return fixed + params + metrics
