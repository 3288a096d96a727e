"""`pytest_perfguard.api.History` as users see it: construction, env, record_run, errors."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_perfguard import api
from pytest_perfguard.api import History, HistoryError
from pytest_perfguard.results import PlatformInfo


@pytest.fixture(autouse=True)
def no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in api.DB_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_default_is_under_rootdir(tmp_path: Path) -> None:
    history = History(rootdir=tmp_path)
    assert history.url == f"sqlite:///{tmp_path / '.perfguard' / 'history.db'}"


def test_relative_paths_are_relative_to_rootdir(tmp_path: Path) -> None:
    assert History("h.db", rootdir=tmp_path).url == f"sqlite:///{tmp_path / 'h.db'}"
    assert History(Path("x") / "h.db", rootdir=tmp_path).url == f"sqlite:///{tmp_path}/x/h.db"


@pytest.mark.parametrize("name", ["PERFGUARD_DB", "PERFORMANCE_DB_PATH"])
def test_env_names_the_database(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "from-env.db")
    assert History(rootdir=tmp_path).url == f"sqlite:///{tmp_path / 'from-env.db'}"
    # An explicit argument wins; the environment is read only when it is None.
    assert History("arg.db", rootdir=tmp_path).url == f"sqlite:///{tmp_path / 'arg.db'}"


def test_perfguard_db_wins_over_the_seed_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFORMANCE_DB_PATH", "seed.db")
    monkeypatch.setenv("PERFGUARD_DB", "postgresql://u:pw@h/db")
    history = History(rootdir=tmp_path)
    assert history.url == "postgresql+psycopg://u:***@h/db"
    assert repr(history) == "History('postgresql+psycopg://u:***@h/db')"


def test_construction_touches_nothing(tmp_path: Path) -> None:
    History(tmp_path / "h.db").close()
    assert not (tmp_path / "h.db").exists()


def test_bad_url_fails_at_construction() -> None:
    with pytest.raises(HistoryError, match="is not a valid database URL or path"):
        History("bad url://x")


def test_usable_again_after_close(tmp_path: Path) -> None:
    with History(tmp_path / "h.db") as history:
        history.record_run({"x": 1.0}, platform="p1")
    assert len(history.recent_runs()) == 1
    history.close()


def test_record_run(sqlite_url: str) -> None:
    at = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)
    with History(sqlite_url) as history:
        run_id = history.record_run(
            {"tokens_per_s": (41.5, "tok/s"), "latency": 0.25},
            platform="gpu-box",
            test="rag::pipeline",
            run_type="nightly",
            notes="from a notebook",
            directions={"tokens_per_s": "higher"},
            started_at=at,
            git_commit="abc",
        )
        run = history.get_run(run_id)
    assert (run.platform, run.run_type, run.triggered_by, run.notes) == (
        "gpu-box",
        "nightly",
        "automated",
        "from a notebook",
    )
    assert (run.started_at, run.git_commit, run.outcome) == (at, "abc", "passed")
    by_metric = {x.metric: x for x in run.measurements}
    assert by_metric["tokens_per_s"].value == 41.5
    assert by_metric["tokens_per_s"].unit == "tok/s"
    assert by_metric["tokens_per_s"].direction == "higher"
    assert by_metric["latency"].direction == "lower"
    assert {(x.test, x.kind, x.marked) for x in run.measurements} == {
        ("rag::pipeline", "custom", True)
    }


def test_record_run_detects_the_platform(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_perfguard.platform

    def detect(override: str | None = None) -> PlatformInfo:
        return PlatformInfo("detected-box", {"cpu": "fake"})

    monkeypatch.setattr(pytest_perfguard.platform, "detect_platform", detect)
    with History(sqlite_url) as history:
        run = history.get_run(history.record_run({"x": 1.0}, success=False))
        assert (run.platform, run.outcome) == ("detected-box", "failed")
        assert run.python_version and run.host
        assert run.measurements[0].test == api.NO_TEST
        assert run.measurements[0].outcome == "failed"
        assert history.platforms()[0].fingerprint == {"cpu": "fake"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {}}, "no metrics given"),
        ({"metrics": {"x": float("nan")}}, "metric 'x' needs a finite number"),
        ({"metrics": {"x": "1"}}, "metric 'x' needs a finite number"),
        ({"metrics": {"x": 1.0}, "directions": {"x": "up"}}, "must be 'lower' or 'higher'"),
        ({"metrics": {"x": 1.0}, "directions": {"y": "lower"}}, "unknown metrics: \\['y'\\]"),
        ({"metrics": {"x": 1.0}, "run_type": "weekly"}, "run_type must be one of"),
        ({"metrics": {"x": 1.0}, "platform": " "}, "platform must not be empty"),
    ],
)
def test_record_run_validates(sqlite_url: str, kwargs: dict[str, object], message: str) -> None:
    with History(sqlite_url) as history:
        with pytest.raises(HistoryError, match=message):
            history.record_run(**{"platform": "p", **kwargs})  # type: ignore[arg-type]
        assert history.recent_runs() == []
