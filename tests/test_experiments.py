"""Experiments and trials in the history database, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pytest_perfguard.api import History, HistoryError
from pytest_perfguard.experiments import Experiment, Validation

PASSED = {"passed": True, "violations": 0, "metrics": {"recall": 0.9}}
FAILED = {"passed": False, "violations": 2, "metrics": {"recall": 0.4}}


@pytest.fixture
def history(history_url: str) -> Iterator[History]:
    with History(history_url) as opened:
        yield opened


def sweep(
    history: History, name: str = "chunk-size sweep", mrr: tuple[float, ...] = ()
) -> Experiment:
    exp = history.experiment(name, template="rag", mode="grid", config={"sizes": [256, 512]})
    for i, value in enumerate(mrr):
        exp.log_trial(params={"chunk": 256 * (i + 1)}, metrics={"mrr": value}, validation=PASSED)
    return exp


def test_experiment_is_created_once_and_reopened_by_name(history: History) -> None:
    exp = sweep(history)
    assert (exp.name, exp.template, exp.mode, exp.config) == (
        "chunk-size sweep", "rag", "grid", {"sizes": [256, 512]},
    )  # fmt: skip
    again = history.experiment("chunk-size sweep")
    assert again.id == exp.id
    assert history.experiment("chunk-size sweep", template="rag").id == exp.id
    with pytest.raises(HistoryError, match=r"stored with mode 'grid', not 'random'.*new=True"):
        history.experiment("chunk-size sweep", mode="random")
    fresh = history.experiment("chunk-size sweep", mode="random", new=True)
    assert fresh.id != exp.id
    # By name, the newest one answers.
    assert history.get_experiment("chunk-size sweep").id == fresh.id
    assert history.get_experiment(exp.id).mode == "grid"
    with pytest.raises(HistoryError, match="experiment 'nope' not found"):
        history.get_experiment("nope")
    with pytest.raises(HistoryError, match="non-empty string"):
        history.experiment("  ")


def test_trials_are_numbered_stored_and_read_back(history: History) -> None:
    exp = sweep(history)
    first = exp.log_trial(params={"chunk": 256}, metrics={"mrr": 0.61, "latency": 1.2})
    second = exp.log_trial(
        params={"chunk": 512, "overlap": None},
        metrics={"mrr": 0.7},
        validation={"passed": False, "violations": 3, "metrics": {"drift": 0.2}},
        extra={"strategy_code": "def f(): ..."},
    )
    tenth = exp.log_trial(params={"chunk": 1024}, metrics={"mrr": 0.5}, trial_number=10)
    after = exp.log_trial(metrics={"mrr": 0.52})
    assert [t.trial_number for t in (first, second, tenth, after)] == [1, 2, 10, 11]
    trials = exp.trials()
    assert [t.trial_number for t in trials] == [1, 2, 10, 11]
    assert trials[0].metrics == {"mrr": 0.61, "latency": 1.2} and trials[0].validation is None
    assert trials[1].validation == Validation(False, 3, {"drift": 0.2})
    assert trials[1].params == {"chunk": 512, "overlap": None}
    assert trials[1].extra == {"strategy_code": "def f(): ..."}
    assert trials[1].created_at.tzinfo is not None
    with pytest.raises(HistoryError, match="already has a trial 10"):
        exp.log_trial(metrics={"mrr": 0.1}, trial_number=10)
    assert len(exp.trials()) == 4  # the refused trial left nothing behind


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"mrr": float("nan")}}, "metric 'mrr' needs a finite number"),
        ({"metrics": {"mrr": "high"}}, "metric 'mrr' needs a finite number"),
        ({"metrics": {'a"b': 1.0}}, "without quotes"),
        ({"validation": {"passed": "yes"}}, "'passed' must be True or False"),
        ({"validation": {"passed": True, "violations": -1}}, "'violations' must be"),
        ({"validation": {"passed": True, "oops": 1}}, "unknown validation keys"),
        ({"params": {"f": object()}}, "params must be JSON"),
        ({"trial_number": 0}, "trial_number must be a whole number >= 1"),
    ],
)
def test_bad_trials_are_one_clear_error(
    history: History, kwargs: dict[str, object], message: str
) -> None:
    exp = sweep(history)
    with pytest.raises(HistoryError, match=message):
        exp.log_trial(**kwargs)  # type: ignore[arg-type]
    assert exp.trials() == []


def test_a_trial_of_an_unknown_experiment_is_refused(history: History) -> None:
    with pytest.raises(HistoryError, match="experiment 999 not found"):
        history.log_trial(999, metrics={"mrr": 1.0})


def test_best_and_improvement(history: History) -> None:
    exp = sweep(history, mrr=(0.5, 0.58, 0.55, 0.62, 0.6))
    exp.log_trial(metrics={"mrr": 0.9}, validation=FAILED)
    exp.log_trial(metrics={"latency": 3.0})  # no mrr: not ranked
    best = exp.best("mrr")
    assert best is not None and best.trial_number == 6
    best_passed = exp.best("mrr", passed_only=True)
    assert best_passed is not None and best_passed.trial_number == 4
    lowest = exp.best("mrr", direction="lower")
    assert lowest is not None and lowest.trial_number == 1
    assert exp.best("absent") is None
    gain = exp.improvement("mrr")
    assert (gain.first, gain.best, gain.last, gain.best_trial) == (0.5, 0.9, 0.9, 6)
    assert gain.change == pytest.approx(0.8)
    assert [point[2] for point in gain.running_best] == [0.5, 0.58, 0.58, 0.62, 0.62, 0.9]
    down = exp.improvement("mrr", direction="lower")
    assert down.best == 0.5 and down.change == 0.0
    with pytest.raises(HistoryError, match="direction must be"):
        exp.best("mrr", direction="up")


def test_summary_is_stored(history_url: str) -> None:
    with History(history_url) as history:
        exp = sweep(history, mrr=(0.5,))
        exp.summary = {"best_mrr": 0.5, "n_trials_completed": 1}
        assert exp.summary == {"best_mrr": 0.5, "n_trials_completed": 1}
    with History(history_url) as history:
        assert history.get_experiment("chunk-size sweep").summary == {
            "best_mrr": 0.5, "n_trials_completed": 1,
        }  # fmt: skip


def test_experiments_are_filtered_by_failure_rate_and_fields(history: History) -> None:
    clean = sweep(history, "clean", mrr=(0.5, 0.6))
    mixed = history.experiment("mixed", template="rag", mode="tpe")
    for validation in (PASSED, FAILED, FAILED, PASSED):
        mixed.log_trial(metrics={"mrr": 0.4}, validation=validation)
    unvalidated = history.experiment("unvalidated", template="other", mode="grid")
    unvalidated.log_trial(metrics={"mrr": 0.4})
    by_name = {r.name: r for r in history.experiments()}
    assert by_name["mixed"].failure_rate == 0.5 and by_name["mixed"].violations == 4
    assert by_name["clean"].failure_rate == 0.0 and by_name["unvalidated"].failure_rate is None
    assert [r.name for r in history.experiments()] == ["unvalidated", "mixed", "clean"]

    def names(**kwargs: object) -> list[str]:
        return sorted(r.name for r in history.experiments(**kwargs))  # type: ignore[arg-type]

    assert names(filter="failure_rate <= 0.2") == ["clean"]
    assert names(filter="violation_rate > 20%") == ["mixed"]
    assert names(filter=["trials >= 2", "violations == 0"]) == ["clean"]
    assert names(filter="trials>=2, failed>=1") == ["mixed"]
    assert names(filter=lambda r: r.id == clean.id) == ["clean"]
    assert names(name="*MIX*") == ["mixed"]
    assert names(template="rag", mode="grid") == ["clean"]
    with pytest.raises(HistoryError, match="unknown field 'speed'"):
        history.experiments(filter="speed < 3")
    with pytest.raises(HistoryError, match="is not FIELD OP NUMBER"):
        history.experiments(filter="failure_rate about 3")


def test_compare_experiments_side_by_side(history: History) -> None:
    a = sweep(history, "a", mrr=(0.5, 0.7, 0.6))
    b = history.experiment("b", template="rag", mode="random")
    b.log_trial(metrics={"mrr": 0.4}, validation=FAILED)
    b.log_trial(metrics={"latency": 2.0})
    b.log_trial(metrics={"mrr": 0.8}, validation=PASSED)
    c = history.experiment("c")
    rows = history.compare_experiments([a, "b", c.id], metric="mrr")
    assert [r.name for r in rows] == ["a", "b", "c"]
    ra, rb, rc = rows
    assert (ra.n_trials, ra.n_values, ra.best, ra.best_trial) == (3, 3, 0.7, 2)
    assert (ra.median, ra.first, ra.last) == (0.6, 0.5, 0.6)
    assert ra.mean == pytest.approx(0.6) and ra.improvement == pytest.approx(0.4)
    assert (rb.n_trials, rb.n_values, rb.best, rb.best_trial, rb.failure_rate) == (
        3, 2, 0.8, 3, 0.5,
    )  # fmt: skip
    assert (rc.n_trials, rc.best, rc.median) == (0, None, None)
    lower = history.compare_experiments([a], metric="mrr", direction="lower")
    assert lower[0].best == 0.5 and lower[0].improvement == 0.0
    with pytest.raises(HistoryError, match="experiment 'zzz' not found"):
        history.compare_experiments([a, "zzz"], metric="mrr")
    with pytest.raises(HistoryError, match="a list of experiments"):
        history.compare_experiments("a", metric="mrr")  # type: ignore[arg-type]


def test_export_and_import_carry_experiments_between_databases(
    history: History, tmp_path: Path
) -> None:
    exp = sweep(history, mrr=(0.5, 0.6))
    exp.log_trial(metrics={"mrr": 0.7}, validation=FAILED, extra={"note": "x"}, trial_number=7)
    exp.summary = {"best": 0.7}
    history.experiment("empty", mode="grid")
    out = io.StringIO()
    assert history.export_experiments(out) == 2
    document = json.loads(out.getvalue())
    assert document["format"] == "perfguard-experiments" and document["version"] == 1
    path = tmp_path / "experiments.json"
    path.write_text(out.getvalue())

    with History(tmp_path / "other.db") as other:
        first = other.import_experiments(path)
        assert (first.created, first.matched, first.trials_added) == (2, 0, 3)
        again = other.import_experiments(path)  # idempotent
        assert (again.created, again.matched, again.trials_added, again.trials_skipped) == (
            0, 2, 0, 3,
        )  # fmt: skip
        copied = other.get_experiment("chunk-size sweep")
        assert copied.summary == {"best": 0.7} and copied.created_at == exp.created_at
        assert [t.to_dict() | {"run_id": None} for t in copied.trials()] == [
            t.to_dict() | {"run_id": None} for t in exp.trials()
        ]
        assert other.get_experiment("empty").trials() == []


def test_import_refuses_what_is_not_an_export(history: History, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"experiments": []}')
    with pytest.raises(HistoryError, match="not a perfguard experiments export"):
        history.import_experiments(bad)
    doc = {
        "format": "perfguard-experiments",
        "experiments": [
            {"name": "x", "created_at": "2026-01-01T00:00:00+00:00",
             "trials": [{"trial_number": 1, "metrics": {"mrr": "high"},
                         "created_at": "2026-01-01T00:00:00+00:00"}]},
        ],
    }  # fmt: skip
    with pytest.raises(HistoryError, match=r"experiments\[0\]\.trials\[0\]: .*finite number"):
        history.import_experiments(doc)
    assert history.experiments() == []  # checked before anything was written


def test_dataframe_has_a_row_per_trial(history: History) -> None:
    exp = sweep(history, mrr=(0.5, 0.6))
    exp.log_trial(params={"k": 3}, metrics={"latency": 1.0}, validation=FAILED)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(HistoryError, match="pip install pandas"):
            history.experiments_dataframe()
        return
    frame = exp.dataframe()
    assert len(frame) == 3
    assert list(frame.columns[:8]) == [
        "experiment_id", "experiment", "template", "mode", "trial_number", "created_at",
        "passed", "violations",
    ]  # fmt: skip
    assert {"params.chunk", "params.k", "metrics.mrr", "metrics.latency"} <= set(frame.columns)
    assert list(frame["metrics.mrr"][:2]) == [0.5, 0.6]
    assert list(frame["passed"]) == [True, True, False]


def test_concurrent_writers_get_distinct_trial_numbers(history_url: str) -> None:
    with History(history_url) as history:
        exp_id = sweep(history).id
    errors: list[BaseException] = []

    def log_some() -> None:
        try:
            with History(history_url) as mine:
                for _ in range(8):
                    mine.log_trial(exp_id, metrics={"mrr": 0.5})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=log_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with History(history_url) as history:
        numbers = [t.trial_number for t in history.trials(exp_id)]
    assert numbers == list(range(1, 33))


def test_deleting_a_run_keeps_its_trial(history_url: str) -> None:
    """A trial that was a pytest run outlives the run (run_id becomes NULL)."""
    from datetime import datetime, timezone

    from pytest_perfguard.results import Measurement, PlatformInfo, RunInfo

    with History(history_url) as history:
        run_id = history.save_session(
            RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("p")),
            [Measurement("t::a", "duration", 1.0)],
        )
        exp = sweep(history)
        trial = exp.log_trial(metrics={"mrr": 1.0}, run_id=run_id)
        assert trial.run_id == run_id
    engine = sa.create_engine(history_url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        conn.exec_driver_sql(f"DELETE FROM runs WHERE id = {run_id}")
    engine.dispose()
    with History(history_url) as history:
        [kept] = history.trials(exp.id)
    assert kept.run_id is None and kept.metrics == {"mrr": 1.0}
