"""The alembic migrations shipped in pytest_perfguard/history/migrations."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from pytest_perfguard.api import History
from pytest_perfguard.history.engine import create_history_engine
from pytest_perfguard.history.migrations import HEAD_REVISION, KNOWN_REVISIONS
from pytest_perfguard.history.models import Base
from pytest_perfguard.history.rows import CHUNK_TESTS
from pytest_perfguard.history.schema import alembic_config
from pytest_perfguard.results import Measurement, PlainRuns, PlatformInfo, RunInfo


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = create_history_engine(url, create=True)
    with engine.begin() as conn:
        (command.downgrade if down else command.upgrade)(alembic_config(conn), revision)
    engine.dispose()


def test_known_revisions_match_the_scripts() -> None:
    """schema.py recognises an up-to-date DB without alembic: its list must not drift."""
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        scripts = ScriptDirectory.from_config(alembic_config(conn))
    chain = [script.revision for script in scripts.walk_revisions("base", "heads")]
    assert tuple(reversed(chain)) == KNOWN_REVISIONS
    assert scripts.get_heads() == [HEAD_REVISION]


def test_migrations_build_exactly_the_models(history_url: str) -> None:
    migrate(history_url, "head")
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def _insert_rev1_rows(url: str) -> None:
    """Rows as a 0001_base-era pytest-perfguard wrote them."""
    engine = sa.create_engine(url)
    at = sa.bindparam("at", type_=sa.DateTime())
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO platforms (key, fingerprint, created_at) VALUES ('old-box', :fp, :at)"
            ).bindparams(at, sa.bindparam("fp", type_=sa.JSON())),
            {"fp": {"cpu": "x"}, "at": datetime(2025, 1, 1, 10)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO runs (started_at, platform_id, git_commit, git_branch, git_dirty,"
                " python_version, run_type, triggered_by, host, args, outcome, notes, system_info)"
                " VALUES (:at, (SELECT id FROM platforms), 'abc', 'main', :dirty, '3.10.0',"
                " 'ci', 'ci', 'h', :args, 'passed', 'old', :info)"
            ).bindparams(at, sa.bindparam("args", type_=sa.JSON()),
                         sa.bindparam("info", type_=sa.JSON())),
            {"at": datetime(2025, 1, 1, 10), "dirty": False, "args": ["-x"], "info": {"a": 1}},
        )  # fmt: skip
        for metric, value in [("duration", 1.5), ("tps", 99.0)]:
            conn.execute(
                sa.text(
                    "INSERT INTO results (run_id, test, metric, value, unit, direction, kind,"
                    " marked, outcome, threshold, samples, error)"
                    " VALUES ((SELECT max(id) FROM runs), 't::a', :metric, :value, 's', 'lower',"
                    " 'primary', :marked, 'passed', NULL, :samples, NULL)"
                ).bindparams(sa.bindparam("samples", type_=sa.JSON())),
                {"metric": metric, "value": value, "marked": True,
                 "samples": [value, value]},
            )  # fmt: skip
    engine.dispose()


def test_upgrade_from_revision_1_keeps_the_rows(history_url: str) -> None:
    migrate(history_url, "0001_base")
    _insert_rev1_rows(history_url)

    with History(history_url) as history:
        assert history.upgrade() == ("0001_base", HEAD_REVISION)
        run = history.get_run(history.recent_runs()[0].id)
        assert (run.platform, run.git_commit, run.notes, run.args) == (
            "old-box",
            "abc",
            "old",
            ["-x"],
        )
        assert run.started_at == datetime(2025, 1, 1, 10, tzinfo=timezone.utc)
        assert run.source_key is None
        assert [(x.metric, x.value, x.samples) for x in run.measurements] == [
            ("duration", 1.5, (1.5, 1.5)),
            ("tps", 99.0, (99.0, 99.0)),
        ]
        assert history.platforms()[0].fingerprint == {"cpu": "x"}
        # The new revision's features work on the upgraded database.
        history.save_session(
            RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("old-box")),
            [Measurement(test="t::a", metric="duration", value=2.5)],
        )
        assert [p.value for p in history.trend("t::a", "duration")] == [1.5, 2.5]
        history.save_baseline_snapshot("old-box", {}, reason="r", git_commit=None, who="me")
        assert len(history.baseline_snapshots()) == 1


def test_upgrade_from_revision_2_adds_test_type(history_url: str) -> None:
    """A history as the 0002-era release wrote it gains runs.test_type, old runs NULL."""
    migrate(history_url, "0002_history_indexes")
    _insert_rev1_rows(history_url)
    engine = sa.create_engine(history_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET source_key = 'import:abc'"))
    engine.dispose()

    with History(history_url) as history:
        assert history.upgrade() == ("0002_history_indexes", HEAD_REVISION)
        old_id = history.recent_runs()[0].id
        assert len(history.get_run(old_id).measurements) == 2
        new_id = history.save_session(
            RunInfo(
                started_at=datetime.now(timezone.utc),
                platform=PlatformInfo("old-box"),
                test_type="inference",
            ),
            [Measurement(test="t::a", metric="duration", value=2.5)],
        )
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        stored = {row[0]: row[1] for row in conn.execute(sa.text("SELECT id, test_type FROM runs"))}
        source_keys = conn.execute(sa.text("SELECT source_key FROM runs ORDER BY id")).scalars()
        assert list(source_keys) == ["import:abc", None]
    engine.dispose()
    assert stored == {old_id: None, new_id: "inference"}


def test_old_database_is_upgraded_on_first_use(history_url: str) -> None:
    migrate(history_url, "0001_base")
    _insert_rev1_rows(history_url)
    with History(history_url) as history:
        assert history.recent_runs()[0].n_results == 2
        assert history.stats().schema_revision == HEAD_REVISION


def test_downgrade_and_upgrade_again(history_url: str) -> None:
    migrate(history_url, "head")
    migrate(history_url, "0002_history_indexes", down=True)
    migrate(history_url, "0001_base", down=True)
    _insert_rev1_rows(history_url)
    migrate(history_url, "head")
    with History(history_url) as history:
        assert len(history.get_run(history.recent_runs()[0].id).measurements) == 2


def test_downgrade_from_test_type_keeps_the_rows(history_url: str) -> None:
    migrate(history_url, "head")
    _insert_rev1_rows(history_url)
    migrate(history_url, "0002_history_indexes", down=True)
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM results")) == 2
        assert "test_type" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}
    engine.dispose()


def _plain_rows(test: str, duration: float) -> list[Measurement]:
    """A plain test's rows as the plugin lists them."""
    return [
        Measurement(test, "duration", duration, unit="s"),
        Measurement(test, "cpu_time", duration / 2, unit="s", kind="system"),
        Measurement(test, "rss_peak_mb", 0.5, unit="MB", kind="system"),
    ]


def test_upgrade_to_test_results_reads_old_and_new_rows_together(history_url: str) -> None:
    """A history as the 0002-era release wrote it (every reading a row of results) keeps
    its rows where they are; sessions stored after the upgrade put plain tests' readings in
    test_results, and every query sees both."""
    migrate(history_url, "0002_history_indexes")
    _insert_rev1_rows(history_url)
    engine = sa.create_engine(history_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO results (run_id, test, metric, value, unit, direction, kind,"
                " marked, outcome) VALUES ((SELECT max(id) FROM runs), 't::a', 'cpu_time',"
                " 0.75, 's', 'lower', 'system', :marked, 'passed')"
            ),
            {"marked": False},
        )
    engine.dispose()
    with History(history_url) as history:
        assert history.upgrade() == ("0002_history_indexes", HEAD_REVISION)
        old_id = history.recent_runs()[0].id
        assert [(x.metric, x.value) for x in history.get_run(old_id).measurements] == [
            ("duration", 1.5),
            ("tps", 99.0),
            ("cpu_time", 0.75),
        ]
        new_rows = _plain_rows("t::a", 2.5)
        new_id = history.save_session(
            RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("old-box")),
            new_rows,
        )
        assert history.get_run(new_id).measurements == new_rows
        assert [p.value for p in history.trend("t::a", "cpu_time")] == [0.75, 1.25]
        assert [r.n_results for r in history.recent_runs()] == [3, 3]
        assert history.stats().n_results == 6
        assert {d.metric: (d.a, d.b) for d in history.compare(old_id, new_id)} == {
            "duration": (1.5, 2.5),
            "cpu_time": (0.75, 1.25),
            "rss_peak_mb": (None, 0.5),
            "tps": (99.0, None),
        }
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM test_results")) == 1
        assert conn.scalar(sa.text("SELECT count(*) FROM results")) == 3
    engine.dispose()


def test_downgrade_from_test_results_moves_the_readings_back(history_url: str) -> None:
    rows = [
        *_plain_rows("t::a", 1.0),
        Measurement("t::a", "tps", 99.0, kind="custom", marked=True),
        *_plain_rows("t::b", 2.0)[:2],
    ]
    with History(history_url) as history:
        run_id = history.save_session(
            RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("box")), rows
        )
    migrate(history_url, "0003_run_test_type", down=True)
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT test, metric, value, unit, kind FROM results ORDER BY id")
        ).all()
        assert "test_results" not in sa.inspect(conn).get_table_names()
    engine.dispose()
    assert [tuple(r) for r in stored] == [
        (x.test, x.metric, x.value, x.unit, x.kind) for x in rows
    ]
    migrate(history_url, "head")
    with History(history_url) as history:
        assert history.get_run(run_id).measurements == rows


def test_fresh_history_is_the_migrated_schema(history_url: str) -> None:
    """A fresh database gets the models' schema and the head stamp without alembic; it is
    what the migrations build: every migration runs down from it, and up again."""
    with History(history_url) as history:
        history.save_session(
            RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("box")),
            _plain_rows("t::a", 1.0),
        )
        assert history.stats().schema_revision == HEAD_REVISION
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == HEAD_REVISION
    engine.dispose()
    migrate(history_url, "0003_run_test_type", down=True)
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM results")) == 3
    engine.dispose()
    migrate(history_url, "base", down=True)
    migrate(history_url, "head")


@pytest.mark.parametrize("made", ["fresh", "migrated"])
def test_plain_blocks_rows_stay_whole_on_postgresql(history_url: str, made: str) -> None:
    """A chunk's row (3.2 kB) keeps its arrays in it on PostgreSQL, whether the schema came
    from the models or the migrations: by default PostgreSQL moves them out of rows over
    2 kB, and a query by test would fetch each run's array from the TOAST table."""
    if not history_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's TOAST")
    if made == "migrated":
        migrate(history_url, "head")
    durations = {f"t::p{i}": 0.01 * (i + 1) for i in range(2 * CHUNK_TESTS)}
    with History(history_url) as history:
        run = RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("box"))
        history.save_session(run, [], plain=_plain_runs(durations))
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        options, toast = conn.execute(
            sa.text(
                "SELECT reloptions, reltoastrelid::regclass::text FROM pg_class"
                " WHERE oid = 'plain_blocks'::regclass"
            )
        ).one()
        assert "toast_tuple_target=8160" in options
        assert conn.scalar(sa.text(f"SELECT count(*) FROM {toast}")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM plain_blocks")) == 2
    engine.dispose()


def _plain_runs(durations: dict[str, float], failed: str = "") -> PlainRuns:
    plain = PlainRuns([("cpu_time", "s"), ("rss_peak_mb", "MB")])
    for test, duration in durations.items():
        plain.ids.append(test)
        plain.outcomes.append("failed" if test == failed else "passed")
        plain.durations.append(duration)
        plain.readings[0][2].append(duration / 2)
        plain.readings[1][2].append(0.5)
    return plain


def test_upgrade_to_plain_blocks_reads_rows_and_blocks_together(history_url: str) -> None:
    """A history as the 0006-era release wrote it (plain tests' readings as test_results
    rows, with ids run_id * 2**32 + position) keeps its rows; sessions stored after the
    upgrade put plain runs in blocks, and every query sees both."""
    migrate(history_url, "0006_run_labels")
    _insert_rev1_rows(history_url)
    engine = sa.create_engine(history_url)
    with engine.begin() as conn:
        run_id = conn.scalar(sa.text("SELECT max(id) FROM runs"))
        base = run_id << 32
        conn.execute(
            sa.text(
                "INSERT INTO test_results (id, run_id, test, marked, outcome, duration,"
                " cpu_time, rss_peak_mb) VALUES (:id, :run_id, :test, :marked, :outcome,"
                " :duration, :cpu, 0.5)"
            ),
            [
                {"id": base + 2, "run_id": run_id, "test": "t::a", "marked": False,
                 "outcome": "passed", "duration": 1.0, "cpu": 0.5},
                {"id": base + 5, "run_id": run_id, "test": "t::b", "marked": False,
                 "outcome": "failed", "duration": 3.0, "cpu": 1.5},
            ],
        )  # fmt: skip
    engine.dispose()
    with History(history_url) as history:
        assert history.upgrade() == ("0006_run_labels", HEAD_REVISION)
        old = [(m.test, m.metric, m.value) for m in history.get_run(run_id).measurements]
        assert old[-6:] == [
            ("t::a", "duration", 1.0), ("t::a", "cpu_time", 0.5), ("t::a", "rss_peak_mb", 0.5),
            ("t::b", "duration", 3.0), ("t::b", "cpu_time", 1.5), ("t::b", "rss_peak_mb", 0.5),
        ]  # fmt: skip
        plain = _plain_runs({"t::a": 2.0, "t::b": 4.0, "t::c": 6.0}, failed="t::c")
        new_id = history.save_session(
            RunInfo(started_at=datetime.now(timezone.utc), platform=PlatformInfo("old-box")),
            [],
            plain=plain,
        )
        assert history.get_run(new_id).measurements == plain.measurements()
        assert [p.value for p in history.trend("t::a", "cpu_time")] == [0.5, 1.0]
        assert [p.outcome for p in history.trend("t::b", "duration")] == ["failed", "passed"]
        assert [(r.n_results, r.n_failed) for r in history.recent_runs()] == [(9, 1), (8, 1)]
        assert history.stats().n_results == 17
        assert history.tests() == ["t::a", "t::b", "t::c"]
        assert {d.test: (d.a, d.b) for d in history.compare(run_id, new_id) if
                d.metric == "duration"} == {
            "t::a": (1.0, 2.0), "t::b": (3.0, 4.0), "t::c": (None, 6.0)
        }  # fmt: skip
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM test_results")) == 2
        assert conn.scalar(sa.text("SELECT count(*) FROM plain_blocks")) == 1
    engine.dispose()


def test_downgrade_from_plain_blocks_moves_the_readings_back(history_url: str) -> None:
    marked = [Measurement("t::m", "duration", 0.25, marked=True, samples=(0.25, 0.3))]
    plain = _plain_runs({"t::a": 1.0, "t::b": 2.0}, failed="t::b")
    at = datetime.now(timezone.utc)
    with History(history_url) as history:
        first = history.save_session(RunInfo(started_at=at, platform=PlatformInfo("box")),
                                     marked, plain=plain)  # fmt: skip
        second = history.save_session(RunInfo(started_at=at, platform=PlatformInfo("box")),
                                      [], plain=plain)  # fmt: skip
        before = {run_id: history.get_run(run_id).measurements for run_id in (first, second)}
    migrate(history_url, "0006_run_labels", down=True)
    engine = sa.create_engine(history_url)
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        assert not {"plain_blocks", "layout_tests", "test_layouts"} & set(tables)
        stored = conn.execute(
            sa.text("SELECT id, run_id, test, outcome, duration, cpu_time, rss_peak_mb"
                    " FROM test_results ORDER BY id")
        ).all()  # fmt: skip
    engine.dispose()
    # Where the 0006-era release put them: ids run_id * 2**32 + position in the session.
    assert [tuple(row) for row in stored] == [
        ((first << 32) + 1, first, "t::a", "passed", 1.0, 0.5, 0.5),
        ((first << 32) + 4, first, "t::b", "failed", 2.0, 1.0, 0.5),
        ((second << 32) + 0, second, "t::a", "passed", 1.0, 0.5, 0.5),
        ((second << 32) + 3, second, "t::b", "failed", 2.0, 1.0, 0.5),
    ]
    migrate(history_url, "head")
    with History(history_url) as history:
        assert {run_id: history.get_run(run_id).measurements for run_id in before} == before


def test_downgrade_from_plain_blocks_reads_every_chunk(history_url: str) -> None:
    """A run of more tests than a chunk holds: each test's readings and outcome come back
    from its own chunk, in the same order and with the same ids."""
    durations = {f"t::p{i}": 0.01 * (i + 1) for i in range(2 * CHUNK_TESTS + 7)}
    failed = f"t::p{CHUNK_TESTS + 3}"
    plain = _plain_runs(durations, failed=failed)
    at = datetime.now(timezone.utc)
    with History(history_url) as history:
        run_id = history.save_session(RunInfo(started_at=at, platform=PlatformInfo("box")),
                                      [], plain=plain)  # fmt: skip
        before = history.get_run(run_id).measurements
    assert before == plain.measurements()
    migrate(history_url, "0006_run_labels", down=True)
    with History(history_url) as history:
        after = history.get_run(run_id)
        assert after.measurements == before
        assert (after.n_results, after.n_failed) == (3 * len(durations), 1)
        assert history.trend(failed, "cpu_time")[0].outcome == "failed"
