"""The lean SQLite writer stores exactly what the SQLAlchemy store stores, or leaves the
database to it; a recording session on SQLite never loads SQLAlchemy."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from pytest_perfguard.api import History
from pytest_perfguard.history import sqlite_writer
from pytest_perfguard.history.engine import create_history_engine
from pytest_perfguard.history.errors import HistoryError, SchemaTooNewError
from pytest_perfguard.history.migrations import HEAD_REVISION
from pytest_perfguard.history.rows import CHUNK_TESTS
from pytest_perfguard.history.schema import alembic_config
from pytest_perfguard.history.store import HistoryStore
from pytest_perfguard.history.urls import sqlite_path, sqlite_url
from pytest_perfguard.results import Measurement, PlainRuns, PlatformInfo, RunInfo


def _run(**changes: Any) -> RunInfo:
    run = RunInfo(
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        platform=PlatformInfo("Linux_x86_64_8GB", {"cpu": "EPYC", "cores": 2}),
        finished_at=datetime(2026, 1, 2, 5, 4, 6, 123, tzinfo=timezone(timedelta(hours=2))),
        git_commit="abc123",
        git_branch="main",
        git_dirty=True,
        python_version="3.11.7",
        args=["--perf-db", "postgresql://u:hunter2@db/perf"],
        notes="password=hunter2 said nobody",
        system_info={"cpus": [1, 2.5, None], "name": "é"},
        labels={"model": "openai", "size": "7b"},
        test_type="inference",
    )
    for name, value in changes.items():
        setattr(run, name, value)
    return run


ROWS = [
    Measurement("t.py::a", "duration", 0.5, "s"),
    Measurement("t.py::a", "cpu_time", 0.25, "s", kind="system"),
    Measurement("t.py::a", "rss_peak_mb", 1.5, "MB", kind="system"),
    Measurement(
        "t.py::b", "latency", 3.0, "ms", "higher", "custom", True, "failed", 0.1, (1.0, 2.0), "boom"
    ),
    Measurement("t.py::b", "duration", 0.1, "s", marked=True),
    Measurement("t.py::c[x]", "step:load", 0.01, "s", kind="step", marked=True),
]


def _dump(path: Path) -> dict[str, Any]:
    """Every table's rows with their SQLite storage classes, and the schema."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        dump: dict[str, Any] = {
            name: [
                tuple((type(value).__name__, value) for value in row)
                # layout_tests has no rowid: its primary key orders it.
                for row in conn.execute(
                    f"SELECT * FROM {name} ORDER BY "
                    + ("layout_id, position" if name == "layout_tests" else "rowid")
                )
            ]
            for name in tables
        }
        dump["schema"] = sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        dump["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    # The platform's first-seen time is the clock at the write.
    dump["platforms"] = [row[:3] for row in dump["platforms"]]
    return dump


def test_the_lean_writer_stores_what_the_store_stores(tmp_path: Path) -> None:
    lean, store = tmp_path / "lean.db", tmp_path / "store.db"
    later = _run(labels={}, git_dirty=None, finished_at=None, notes="", test_type=None)
    # Plain runs: a new layout, the same layout again, one with a test more, and one of
    # more than two chunks, then the same in another order.
    big = 2 * CHUNK_TESTS + 3
    plain = [_plain([("cpu_time", "s"), ("rss_peak_mb", "MB")], tests=n) for n in (3, 3, 4, big)]
    plain.append(_reversed(plain[-1]))
    sessions = [(_run(), ROWS), (later, ROWS[:3]), (later, []), (later, ROWS[:1]), (later, [])]
    for number, ((run, rows), runs) in enumerate(zip(sessions, plain, strict=True), 1):
        assert sqlite_writer.save_session(sqlite_url(lean), run, rows, plain=runs) == number
    reference = HistoryStore(sqlite_url(store))
    try:
        for number, ((run, rows), runs) in enumerate(zip(sessions, plain, strict=True), 1):
            assert reference.save_session(run, rows, plain=runs) == number
    finally:
        reference.close()
    written, expected = _dump(lean), _dump(store)
    assert written == expected
    assert len(written["plain_blocks"]) == 3 + 2 * 3
    assert len(written["test_layouts"]) == 3
    assert len(written["layout_tests"]) == 3 + 4 + big
    assert "hunter2" not in repr(written)
    assert written["alembic_version"] == [(("str", HEAD_REVISION),)]


def test_a_history_written_lean_reads_back_through_history(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "h.db")
    run_id = sqlite_writer.save_session(url, _run(), ROWS)
    with History(url, create=False) as history:
        assert run_id is not None
        detail = history.get_run(run_id)
        assert detail.measurements == ROWS
        assert detail.labels == {"model": "openai", "size": "7b"}
        assert detail.args == ["--perf-db", "postgresql://u:***@db/perf"]
        # The store then writes into the same file, after the lean writer.
        assert history.save_session(_run(), ROWS[:1], source_key="k") == run_id + 1


def _history_at(url: str, revision: str) -> None:
    engine = create_history_engine(url, create=True)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    engine.dispose()


def test_an_older_schema_is_left_to_the_store_which_migrates_it(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "old.db")
    _history_at(url, "0005_experiments")
    before = _dump(tmp_path / "old.db")
    assert sqlite_writer.save_session(url, _run(), ROWS) is None
    assert _dump(tmp_path / "old.db") == before
    with History(url) as history:
        run_id = history.save_session(_run(), ROWS)
        assert history.stats().schema_revision == HEAD_REVISION
        assert history.get_run(run_id).measurements == ROWS


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    sqlite_writer.save_session(sqlite_url(path), _run(), ROWS)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '0099_future'")
    conn.commit()
    conn.close()
    before = _dump(path)
    with History(path) as history, pytest.raises(SchemaTooNewError, match="0099_future"):
        history.save_session(_run(), ROWS)
    assert _dump(path) == before


def test_a_file_that_is_not_a_history_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER)")
    conn.commit()
    conn.close()
    with History(path) as history, pytest.raises(HistoryError, match="not a perfguard history"):
        history.save_session(_run(), ROWS)


def test_errors_are_one_line_naming_the_database(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "h.db")
    sqlite_writer.save_session(url, _run(), ROWS, source_key="import-1")
    with pytest.raises(HistoryError, match="source key 'import-1' is already stored"):
        sqlite_writer.save_session(url, _run(), ROWS, source_key="import-1")
    with pytest.raises(HistoryError, match="non-finite"):
        sqlite_writer.save_session(url, _run(), [Measurement("t", "x", float("nan"))])
    with pytest.raises(HistoryError, match=r"history database .*h\.db: .*not JSON serializable"):
        sqlite_writer.save_session(url, _run(system_info={"when": object()}), ROWS)
    (tmp_path / "file").write_text("")
    with pytest.raises(HistoryError, match=r"cannot be created: .*not a directory"):
        sqlite_writer.save_session(sqlite_url(tmp_path / "file" / "h.db"), _run(), ROWS)
    # A missing file without `create` is the store's to report; nothing is made.
    missing = tmp_path / "missing.db"
    assert sqlite_writer.save_session(sqlite_url(missing), _run(), ROWS, create=False) is None
    assert not missing.exists()
    with History(url) as history:
        assert len(history.recent_runs()) == 1


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///a%20b.db", "sqlite:////abs/x.db?mode=ro", "SQLITE:///x.db",
        "sqlite+pysqlite:///x.db", "sqlite://", "sqlite:///:memory:", "sqlite:///file:x?uri=true",
        "sqlite://host/x.db", "sqlite:///x.db#frag", "sqlite:///a@b.db", "sqlite:///a:b.db",
        "postgresql+psycopg://u:p@h:5/db", "sqlite:///a%3Fb.db", "sqlite:///päth/ü.db",
        "sqlite:////tmp/x y/z.db", "sqlite:///a?b", "mysql://x/y", "sqlite:///a\nb",
    ],
)  # fmt: skip
def test_sqlite_path_reads_urls_as_sqlalchemy_does(url: str) -> None:
    parsed = sa.engine.make_url(url)
    database = parsed.database
    expected = (
        Path(database)
        if parsed.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        else None
    )
    assert sqlite_path(url) == expected


def test_a_recording_session_on_sqlite_never_imports_sqlalchemy(tmp_path: Path) -> None:
    """Fresh history, then an existing one: neither loads SQLAlchemy or alembic."""
    (tmp_path / "test_a.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_plain():
                pass

            @pytest.mark.perf(rounds=3)
            def test_marked(perf):
                perf.record("items", 3.0, unit="n")
            """
        )
    )
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import sys

            def pytest_unconfigure(config):
                loaded = sorted(m for m in ("sqlalchemy", "alembic") if m in sys.modules)
                with open("loaded.txt", "a") as out:
                    out.write(",".join(loaded) + "\\n")
            """
        )
    )
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--perf-record",
             "--perf-gate=all", "--perf-db", "h.db", "-q"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "stored run" in done.stdout
    assert (tmp_path / "loaded.txt").read_text().splitlines() == ["", ""]
    with History(tmp_path / "h.db", create=False) as history:
        assert [run.n_results for run in history.recent_runs()] == [7, 7]


def _plain(layout: list[tuple[str, str]], tests: int = 4) -> PlainRuns:
    plain = PlainRuns(layout)
    for index in range(tests):
        plain.ids.append(f"t.py::test_{index}")
        # A failure in the first chunk, and one in the last when there are several.
        failed = index == 2 or index == tests - 1 > CHUNK_TESTS
        plain.outcomes.append("failed" if failed else "passed")
        plain.durations.append(0.001 * (index + 1))
        for position, (_, _, values) in enumerate(plain.readings):
            values.append(10.0 * position + index)
    return plain


@pytest.mark.parametrize(
    ("layout", "tests"),
    [
        ([("cpu_time", "s"), ("rss_peak_mb", "MB")], 2 * CHUNK_TESTS + 1),
        ([("rss_peak_mb", "MB")], CHUNK_TESTS + 1),
    ]
    + [
        (layout, 4)
        for layout in [
            [("cpu_time", "s"), ("rss_peak_mb", "MB")],
        [("cpu_time", "s"), ("rss_peak_mb", "MB"), ("gpu_mem_peak_mb", "MB")],
        [("rss_peak_mb", "MB")],
        [("gpu_mem_peak_mb", "MB")],
        [],
            # Readings in an order the columns cannot hold: stored as rows, order kept.
            [("rss_peak_mb", "MB"), ("cpu_time", "s")],
            [("gpu_mem_peak_mb", "MB"), ("cpu_time", "s")],
        ]
    ],
)
def test_plain_runs_are_stored_as_their_rows_would_be(
    history_url: str, layout: list[tuple[str, str]], tests: int
) -> None:
    """Columns in, the same rows out as from the Measurements they stand for, after the
    session's other rows, on both writers and both backends (in chunks or not)."""
    plain = _plain(layout, tests)
    with History(history_url) as history:
        run_id = history.save_session(_run(), ROWS, plain=plain)
        assert history.get_run(run_id).measurements == [*ROWS, *plain.measurements()]
        again = history.save_session(_run(), ROWS, plain=plain)  # through the store now
        assert history.get_run(again).measurements == [*ROWS, *plain.measurements()]
        failed = len({m.test for m in [*ROWS, *plain.measurements()] if m.outcome == "failed"})
        assert [(run.n_results, run.n_failed) for run in history.recent_runs()] == [
            (len(ROWS) + tests * (1 + len(layout)), failed)
        ] * 2


def test_plain_runs_with_a_test_twice_are_stored_as_rows(history_url: str) -> None:
    plain = _plain([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    assert plain.has_distinct_ids()
    plain.ids[3] = plain.ids[0]  # the list changed in place: asked again, not remembered
    plain.ids = list(plain.ids)
    assert not plain.has_distinct_ids()
    with History(history_url) as history:
        run_id = history.save_session(_run(), ROWS, plain=plain)
        assert history.get_run(run_id).measurements == [*ROWS, *plain.measurements()]


def test_distinct_ids_are_asked_again_after_more_runs() -> None:
    plain = _plain([("cpu_time", "s")], tests=2)
    assert plain.has_distinct_ids()
    assert plain.extend(_plain([("cpu_time", "s")], tests=1))
    assert not plain.has_distinct_ids()


def test_a_non_finite_plain_value_is_refused_by_name(tmp_path: Path) -> None:
    plain = _plain([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    plain.readings[1][2][3] = float("inf")
    with pytest.raises(HistoryError, match=r"t\.py::test_3 rss_peak_mb: cannot store a non-finite"):
        sqlite_writer.save_session(sqlite_url(tmp_path / "h.db"), _run(), ROWS, plain=plain)
    with History(tmp_path / "h.db") as history:
        assert history.recent_runs() == []


def test_plain_runs_cross_the_wire_intact() -> None:
    plain = _plain([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    back = PlainRuns.from_wire(plain.to_wire())
    assert back.measurements() == plain.measurements()
    # An id with a line break in it, and no runs at all, cross intact too.
    odd = _plain([("cpu_time", "s")], tests=2)
    odd.ids[1] = "t.py::test[a\nb]"
    assert PlainRuns.from_wire(odd.to_wire()).measurements() == odd.measurements()
    assert PlainRuns.from_wire(PlainRuns().to_wire()).measurements() == []
    assert back.extend(_plain([("cpu_time", "s"), ("rss_peak_mb", "MB")], tests=2))
    assert len(back) == 6
    assert not back.extend(_plain([("cpu_time", "s")]))
    assert len(back) == 6
    # The controller's own (empty) runs take the workers' readings, whatever they are.
    merged = PlainRuns()
    assert merged.extend(plain) and merged.extend(PlainRuns())
    assert merged.measurements() == plain.measurements()
    broken = plain.to_wire()
    broken["durations"] = broken["durations"][:-8]
    with pytest.raises(ValueError, match="columns of different lengths"):
        PlainRuns.from_wire(broken)


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)
    finally:
        engine.dispose()


def _reversed(plain: PlainRuns) -> PlainRuns:
    back = PlainRuns(plain.layout())
    back.ids, back.outcomes = plain.ids[::-1], plain.outcomes[::-1]
    back.durations = plain.durations[::-1]
    for (_, _, values), (_, _, source) in zip(back.readings, plain.readings, strict=True):
        values.extend(source[::-1])
    return back


@pytest.mark.parametrize("tests", [4, 2 * CHUNK_TESTS + 4])
@pytest.mark.parametrize("writer", ["history", "store"])
def test_the_same_tests_in_another_order_share_a_layout(
    history_url: str, tmp_path: Path, writer: str, tests: int
) -> None:
    """A suite run again in another order (xdist, a random order) adds no layout: its
    block is stored in the first run's order, and reads give each test its own values
    (with several chunks, tests move from one chunk to another)."""
    url = history_url if writer == "history" else sqlite_url(tmp_path / "store.db")
    plain = _plain([("cpu_time", "s"), ("rss_peak_mb", "MB")], tests)
    # The last test that passed (in the last chunk) moves to the first.
    at = max(i for i, outcome in enumerate(plain.outcomes) if outcome == "passed")
    last, value = plain.ids[at], plain.durations[at]
    shuffled = _reversed(plain)
    shuffled.durations[tests - 1 - at] = 9.0
    saved: list[int] = []
    if writer == "store":
        store = HistoryStore(url)
        try:
            saved = [store.save_session(_run(), [], plain=p) for p in (plain, shuffled, plain)]
        finally:
            store.close()
    with History(url) as history:
        if writer == "history":
            saved = [history.save_session(_run(), [], plain=p) for p in (plain, shuffled, plain)]
        def by_test(rows: list[Measurement]) -> list[Measurement]:
            return sorted(rows, key=lambda m: (m.test, m.metric))

        runs = [by_test(history.get_run(run_id).measurements) for run_id in saved]
        assert runs[0] == runs[2] == by_test(plain.measurements())
        assert runs[1] == by_test(shuffled.measurements())
        assert [p.value for p in history.trend(last, "duration")] == [value, 9.0, value]
        assert [p.outcome for p in history.trend("t.py::test_2", "cpu_time")] == ["failed"] * 3
        assert history.baseline(last, "duration", last_runs=3) == value
        assert [run.n_failed for run in history.recent_runs()] == [1 + (tests > CHUNK_TESTS)] * 3
    assert (_count(url, "test_layouts"), _count(url, "layout_tests")) == (1, tests)
    assert _count(url, "plain_blocks") == 3 * -(-tests // CHUNK_TESTS)
