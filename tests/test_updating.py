from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_perfguard.baselines import (
    BaselineEntry,
    BaselineFile,
    BaselineMetadata,
    PlatformBaselines,
    load_baselines,
    write_baselines,
)
from pytest_perfguard.results import Direction
from pytest_perfguard.updating import (
    apply_updates,
    format_update_table,
    make_metadata,
    pooled_samples,
    propose_updates,
    update_baselines,
)

P = "linux_x86"
T = "tests/test_a.py::test_q"


@dataclass(frozen=True)
class Series:
    test: str
    metric: str
    values: list[float]
    unit: str = "s"
    direction: Direction = "lower"
    kind: str = "primary"
    marked: bool = True
    run_ids: list[int] = field(default_factory=list)
    samples: list[tuple[float, ...]] = field(default_factory=list)


def history_of(*series: Series) -> dict[tuple[str, str], Series]:
    return {(s.test, s.metric): s for s in series}


@dataclass
class FakeHistory:
    series: dict[tuple[str, str], Series]
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    asked: list[tuple[str, int]] = field(default_factory=list)

    def metric_history(self, platform: str, *, last_runs: int) -> dict[tuple[str, str], Series]:
        self.asked.append((platform, last_runs))
        return self.series if platform == P else {}

    def save_baseline_snapshot(self, platform: str, entries: Mapping[str, Any], *, reason: str,
                               git_commit: str | None, who: str) -> int:
        self.snapshots.append({"platform": platform, "entries": dict(entries), "reason": reason,
                               "git_commit": git_commit, "who": who})
        return len(self.snapshots)


def file_with(entries: dict[tuple[str, str], float], platform: str = P) -> BaselineFile:
    tests: dict[str, dict[str, BaselineEntry]] = {}
    for (test, metric), value in entries.items():
        tests.setdefault(test, {})[metric] = BaselineEntry(value=value, unit="s", threshold=0.3)
    return BaselineFile(platforms={platform: PlatformBaselines(tests=tests)})


def actions(updates: Sequence[Any]) -> list[tuple[str, str]]:
    return [(u.metric, u.action) for u in updates]


FIVE = [1.0, 1.1, 0.9, 1.0, 1.2]


def test_insufficient_runs_are_skipped_with_the_count() -> None:
    [u] = propose_updates(history_of(Series(T, "latency", [1.0, 1.0, 1.0])), BaselineFile(), P)
    assert (u.action, u.n, u.proposed) == ("skip_insufficient", 3, None)
    assert not u.applied


def test_new_metric_is_added_with_median_and_spread() -> None:
    [u] = propose_updates(history_of(Series(T, "latency", FIVE)), BaselineFile(), P)
    assert (u.action, u.current, u.proposed, u.n) == ("add", None, 1.0, 5)
    assert u.spread == 0.1  # MAD of FIVE around 1.0, without float noise in the file


def test_samples_of_the_runs_used_are_pooled_into_the_entry() -> None:
    runs = [(1.0, 1.5), (0.9, 1.4), (1.1,), (), (1.0, 1.2), (9.0, 9.0)]  # newest first
    series = Series(T, "latency", [1.0, 0.9, 1.1, 1.0, 1.0, 9.0], samples=runs)
    [u] = propose_updates(history_of(series), BaselineFile(), P)
    assert u.samples == (0.9, 1.0, 1.0, 1.1, 1.2, 1.4, 1.5)  # the 6th run's are not used
    file = apply_updates(BaselineFile(), P, [u], make_metadata(None))
    entry = file.platforms[P].tests[T]["latency"]
    assert entry.samples == [0.9, 1.0, 1.0, 1.1, 1.2, 1.4, 1.5]
    [plain] = propose_updates(history_of(Series(T, "latency", FIVE)), BaselineFile(), P)
    assert plain.samples == ()
    entry = apply_updates(BaselineFile(), P, [plain], make_metadata(None)).platforms[P]
    assert entry.tests[T]["latency"].samples is None  # not written as an empty list


def test_pooled_samples_are_thinned_to_evenly_spaced_order_statistics() -> None:
    assert pooled_samples([(1.0,)]) == ()
    assert pooled_samples([(3.0,), (1.0, 2.0)]) == (1.0, 2.0, 3.0)
    thinned = pooled_samples([tuple(float(x) for x in range(100))], limit=12)
    assert len(thinned) == 12 and thinned[0] == 0.0 and thinned[-1] == 99.0
    assert thinned == tuple(float(round(i * 9)) for i in range(12))
    assert pooled_samples([(0.123456789, 1.0)]) == (0.123457, 1.0)


def test_only_the_last_min_runs_values_count() -> None:
    series = Series(T, "latency", [2.0, 2.0, 2.0, 9.0, 9.0, 9.0])  # newest first
    [u] = propose_updates(history_of(series), BaselineFile(), P, min_runs=3)
    assert (u.proposed, u.n) == (2.0, 3)


@pytest.mark.parametrize(
    ("baseline", "direction", "accept", "action"),
    [(2.0, "lower", False, "improve"),          # 1.0 vs 2.0: better by 50 %
     (1.04, "lower", False, "keep"),            # better by < 5 %: not worth a change
     (0.5, "lower", False, "keep"),             # worse: kept ...
     (0.5, "lower", True, "accept_regression"),  # ... unless accepted
     (1.0, "lower", True, "keep"),              # unchanged
     (0.5, "higher", False, "improve"),         # throughput 1.0 vs 0.5: better
     (2.0, "higher", True, "accept_regression"),
     (0.0, "lower", False, "keep"), (0.0, "higher", False, "improve")],
)
def test_policy(baseline: float, direction: Direction, accept: bool, action: str) -> None:
    series = history_of(Series(T, "latency", FIVE, direction=direction))
    [u] = propose_updates(series, file_with({(T, "latency"): baseline}), P,
                          accept_regressions=accept)
    assert u.action == action
    assert u.current == baseline


def test_margin_is_configurable() -> None:
    series = history_of(Series(T, "latency", FIVE))
    current = file_with({(T, "latency"): 1.1})
    assert actions(propose_updates(series, current, P, margin=0.05)) == [("latency", "improve")]
    assert actions(propose_updates(series, current, P, margin=0.2)) == [("latency", "keep")]


def test_selection_follows_the_gate_and_includes_steps_of_gated_tests() -> None:
    unmarked = "tests/test_u.py::test_plain"
    series = history_of(
        Series(T, "latency", FIVE),
        Series(T, "step:embed", FIVE, kind="step"),
        Series(T, "tokens", FIVE, kind="custom", direction="higher", unit="tokens/s"),
        Series(T, "cpu_time", FIVE, kind="system"),
        Series(unmarked, "duration", FIVE, marked=False),
        Series(unmarked, "step:x", FIVE, kind="step", marked=False),
    )
    marked = propose_updates(series, BaselineFile(), P)
    assert [(u.test, u.metric) for u in marked] == [
        (T, "latency"), (T, "step:embed"), (T, "tokens")]
    everything = propose_updates(series, BaselineFile(), P, gate="all")
    assert len(everything) == 5
    assert "cpu_time" not in {u.metric for u in everything}


def test_flat_baseline_is_the_current_value_of_a_marked_metric() -> None:
    flat = BaselineFile(
        platforms={P: PlatformBaselines(metrics={"latency": BaselineEntry(value=2)})})
    [u] = propose_updates(history_of(Series(T, "latency", FIVE)), flat, P)
    assert (u.current, u.action) == (2.0, "improve")


def test_apply_updates_keeps_other_platforms_and_thresholds() -> None:
    current = file_with({(T, "latency"): 2.0, (T, "other"): 5.0})
    current.platforms["macos"] = PlatformBaselines(
        tests={T: {"latency": BaselineEntry(value=7.0)}})
    updates = propose_updates(history_of(Series(T, "latency", FIVE)), current, P)
    metadata = BaselineMetadata(last_updated="2026-01-01T00:00:00Z", git_commit="abc",
                                python_version="3.11.9")
    new = apply_updates(current, P, updates, metadata)
    entry = new.lookup(P, T, "latency")
    assert entry is not None
    assert (entry.value, entry.threshold, entry.runs, entry.n, entry.direction) == (
        1.0, 0.3, 5, 5, "lower")
    assert new.lookup(P, T, "other") == current.lookup(P, T, "other")
    assert new.platforms["macos"] == current.platforms["macos"]
    assert new.platforms[P].metadata == metadata
    assert current.lookup(P, T, "latency").value == 2.0  # type: ignore[union-attr]


def test_metadata_is_utc_with_z() -> None:
    metadata = make_metadata("abc123", notes="nightly")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata.last_updated or "")
    assert metadata.python_version and metadata.git_commit == "abc123"
    assert metadata.notes == "nightly"


def test_update_without_history_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    history = FakeHistory(history_of())
    result = update_baselines(history, path, P, git_commit="abc", who="user")
    assert not result.written and result.updates == []
    assert "no recorded runs" in result.message
    assert not path.exists()
    assert history.snapshots == []


def test_update_with_too_few_runs_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_baselines(path, file_with({(T, "latency"): 2.0}))
    before = path.read_text()
    history = FakeHistory(history_of(Series(T, "latency", [1.0, 1.0])))
    result = update_baselines(history, path, P, min_runs=5)
    assert history.asked == [(P, 5)]
    assert [u.action for u in result.updates] == ["skip_insufficient"]
    assert not result.written and path.read_text() == before
    assert "skip (2 of 5 runs)" in format_update_table(result)


def test_update_writes_file_metadata_and_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    start = file_with({(T, "latency"): 2.0})
    start.platforms["macos"] = PlatformBaselines(tests={T: {"latency": BaselineEntry(value=7.0)}})
    write_baselines(path, start)
    history = FakeHistory(history_of(Series(T, "latency", FIVE), Series(T, "new_one", FIVE)))
    result = update_baselines(history, path, P, git_commit="abc123", who="ci")
    assert result.written and result.snapshot_id == 1
    data = json.loads(path.read_text())
    section = data["platforms"][P]
    assert section["tests"][T]["latency"]["value"] == 1.0
    assert section["tests"][T]["new_one"]["value"] == 1.0
    assert section["metadata"]["git_commit"] == "abc123"
    assert section["metadata"]["last_updated"].endswith("Z")
    assert data["platforms"]["macos"]["tests"][T]["latency"]["value"] == 7.0
    [snapshot] = history.snapshots
    assert snapshot["reason"] == "improvement, new metric"
    assert (snapshot["git_commit"], snapshot["who"]) == ("abc123", "ci")
    assert snapshot["entries"][T]["latency"]["reason"] == "improvement"
    assert snapshot["entries"][T]["new_one"]["value"] == 1.0


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "baselines" / "b.json"
    history = FakeHistory(history_of(Series(T, "latency", FIVE)))
    result = update_baselines(history, path, P, dry_run=True)
    assert [u.action for u in result.updates] == ["add"]
    assert not result.written and history.snapshots == []
    assert not path.parent.exists()  # not even the directory
    table = format_update_table(result)
    assert "dry run" in table
    assert re.search(r"latency\s+—\s+1\.00 s\s+—\s+add", table)


def test_nothing_to_apply_does_not_rewrite_the_file(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({P: {"latency": 1.0}}))  # flat, unsorted style preserved
    before = path.read_text()
    result = update_baselines(FakeHistory(history_of(Series(T, "latency", FIVE))), path, P)
    assert [u.action for u in result.updates] == ["keep"]
    assert path.read_text() == before


def test_update_converts_a_flat_file_keeping_its_values(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({P: {"latency": 1.0, "other": 3.0}, "macos": {"latency": 4.0}}))
    history = FakeHistory(history_of(Series(T, "fresh", FIVE)))
    update_baselines(history, path, P)
    file = load_baselines(path)
    assert json.loads(path.read_text())["schema"] == 1
    assert file.lookup(P, "any::test", "other") == BaselineEntry(value=3.0)
    assert file.lookup("macos", "any::test", "latency") == BaselineEntry(value=4.0)
    assert file.lookup(P, T, "fresh") is not None


def test_concurrent_updates_of_different_platforms_keep_each_other(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    platforms = [f"p{i}" for i in range(6)]

    class PlatformHistory(FakeHistory):
        def metric_history(self, platform: str, *, last_runs: int) -> dict[tuple[str, str], Series]:
            return self.series

    def update(platform: str) -> None:
        update_baselines(PlatformHistory(history_of(Series(T, "latency", FIVE))), path, platform)

    threads = [threading.Thread(target=update, args=(p,)) for p in platforms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(load_baselines(path).platforms) == platforms
