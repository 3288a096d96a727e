from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_perfguard.baselines import (
    BaselineEntry,
    BaselineFile,
    BaselinesError,
    PlatformBaselines,
    baselines_lock,
    load_baselines,
    parse_baselines,
    parse_entry,
    write_baselines,
)
from pytest_perfguard.baselines_model import _common_entry, _entry
from pytest_perfguard.cli.console import json_default

# Files as 0.2 (pydantic models) read them: each input, what it wrote back (written/) and
# what `perfguard baselines show --json` printed (shown/), plus the error it reported for
# each of a few hundred broken inputs (errors.json). Captured before the models became
# dataclasses; the bytes and messages must not change.
FILES = Path(__file__).parent / "baselines_files"
INPUTS = sorted(p.name for p in FILES.glob("*.json") if p.name != "errors.json")

SCHEMA = {
    "schema": 1,
    "platforms": {
        "linux_x86": {
            "metadata": {"last_updated": "2026-01-07T10:00:00Z", "git_commit": "abc123",
                         "python_version": "3.11.9", "notes": ""},
            "tests": {
                "tests/test_rag.py::test_query": {
                    "query_latency": {"value": 8.0, "unit": "s", "direction": "lower",
                                      "threshold": 0.2, "runs": 5},
                },
            },
        },
        "macos_arm64": {"tests": {"tests/test_rag.py::test_query": {
            "query_latency": {"value": 6.0, "unit": "s", "direction": "lower"}}}},
    },
}
FLAT = {
    "linux_x86": {"query_latency": 8.0, "tokens_per_s": 1200, "metadata": {"git_commit": "abc"}},
    "macos_arm64": {"query_latency": 6.5},
}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_schema_file_loads_and_looks_up(tmp_path: Path) -> None:
    file = load_baselines(write_json(tmp_path / "b.json", SCHEMA))
    entry = file.lookup("linux_x86", "tests/test_rag.py::test_query", "query_latency")
    assert entry is not None
    assert (entry.value, entry.unit, entry.direction, entry.threshold, entry.runs) == (
        8.0, "s", "lower", 0.2, 5)
    assert file.platforms["linux_x86"].metadata.git_commit == "abc123"
    assert file.lookup("linux_x86", "tests/test_rag.py::other", "query_latency") is None
    assert file.lookup("windows", "tests/test_rag.py::test_query", "query_latency") is None


def test_flat_file_matches_any_test_by_metric_name(tmp_path: Path) -> None:
    file = load_baselines(write_json(tmp_path / "b.json", FLAT))
    entry = file.lookup("linux_x86", "tests/test_any.py::test_x", "query_latency")
    assert entry is not None and entry.value == 8.0
    assert entry.direction is None  # the flat format does not say; the test decides
    assert file.lookup("linux_x86", "t", "tokens_per_s") == BaselineEntry(value=1200)
    assert file.lookup("linux_x86", "t", "query_latency", by_name=False) is None
    assert file.lookup("linux_x86", "t", "metadata") is None
    assert file.platforms["linux_x86"].metadata.git_commit == "abc"


def test_test_entry_wins_over_platform_wide_entry() -> None:
    file = BaselineFile(platforms={"p": PlatformBaselines(
        tests={"t": {"m": BaselineEntry(value=1.0)}}, metrics={"m": BaselineEntry(value=9.0)})})
    assert file.lookup("p", "t", "m") == BaselineEntry(value=1.0)
    assert file.lookup("p", "other", "m") == BaselineEntry(value=9.0)


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_baselines(tmp_path / "nope.json") == BaselineFile()


def test_spread_and_n_are_optional_and_kept(tmp_path: Path) -> None:
    data = {"schema": 1, "platforms": {"p": {"tests": {"t": {"m": {
        "value": 2.0, "spread": 0.1, "n": 5, "future_field": "kept"}}}}}}
    path = write_json(tmp_path / "b.json", data)
    file = load_baselines(path)
    entry = file.lookup("p", "t", "m")
    assert entry is not None and (entry.spread, entry.n) == (0.1, 5)
    write_baselines(path, file)
    assert json.loads(path.read_text())["platforms"]["p"]["tests"]["t"]["m"]["future_field"] \
        == "kept"


def _entry_with(**fields: object) -> dict[str, object]:
    entry = {"value": 1.0, "unit": "s", "direction": "lower", **fields}
    return {"schema": 1, "platforms": {"linux_x86": {"tests": {"tests/test_a.py::t": {
        "duration": entry}}}}}


ENTRY_PATH = "platforms.linux_x86.tests.tests/test_a.py::t.duration"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": 1, "platforms": {"linux', "not valid JSON (line 1, column 29"),
        ('{"schema": 1,\n "platforms": {}\n', "not valid JSON (line 3, column 1"),
        ("", "not valid JSON (line 1, column 1"),
        (_entry_with(value=-1.0), f"{ENTRY_PATH}.value: must be >= 0"),
        (_entry_with(value="8.0"),
         f"{ENTRY_PATH}.value: wrong type: expected a number, got a string ('8.0')"),
        (_entry_with(value=True), f"{ENTRY_PATH}.value: wrong type: expected a number"),
        (_entry_with(direction="faster"),
         f"{ENTRY_PATH}.direction: unknown direction 'faster' (expected 'lower' or 'higher')"),
        (_entry_with(threshold=0), f"{ENTRY_PATH}.threshold: must be > 0"),
        (_entry_with(runs=2.5), f"{ENTRY_PATH}.runs: wrong type: expected an integer"),
        ({"schema": 1, "platforms": {"linux_x86": {"tests": {"t": {"m": {}}}}}},
         "platforms.linux_x86.tests.t.m.value: required field is missing"),
        ({"schema": 1, "platforms": {"linux_x86": {"tests": []}}},
         "platforms.linux_x86.tests: wrong type: expected an object, got an array"),
        ({"schema": 2, "platforms": {}}, "schema: unknown schema version 2"),
        ({"schema": "1", "platforms": {}}, "schema: unknown schema version '1'"),
        ([1, 2], "expected a JSON object at the top level, got an array"),
        ({"linux_x86": {"query_latency": -3}}, "linux_x86.query_latency: must be >= 0"),
        ({"linux_x86": {"query_latency": "fast"}},
         "linux_x86.query_latency: wrong type: expected a number, got a string ('fast')"),
        ({"linux_x86": 5}, "linux_x86: expected an object of metric values, got a number"),
        ({"linux_x86": {"metadata": {"git_commit": 5}}},
         "linux_x86.metadata.git_commit: wrong type: expected a string, got a number"),
    ],
)
def test_errors_are_one_line_naming_file_and_json_path(
    tmp_path: Path, content: object, message: str
) -> None:
    path = tmp_path / "baselines" / "perf_baselines.json"
    path.parent.mkdir()
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(BaselinesError) as info:
        load_baselines(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text


@pytest.mark.parametrize("name", INPUTS)
def test_files_are_written_byte_for_byte_as_before(name: str, tmp_path: Path) -> None:
    file = load_baselines(FILES / name)
    written = (FILES / "written" / name).read_text(encoding="utf-8")
    path = tmp_path / name
    write_baselines(path, file)
    assert path.read_bytes() == written.encode("utf-8")
    shown = json.dumps(file.to_data(), indent=2, default=json_default, ensure_ascii=False)
    assert shown + "\n" == (FILES / "shown" / name).read_text(encoding="utf-8")
    assert load_baselines(path) == file or name == "newer_version.json"  # inf -> null


def test_unknown_keys_survive_a_rewrite() -> None:
    file = load_baselines(FILES / "newer_version.json")
    section = file.platforms["RTX_4090_24GB"]
    assert section.metadata.extra["hardware"]["cpu_count"] == 32
    entry = section.tests["tests/test_gpu.py::test_embed[batch=32]"]["tokens_per_s"]
    assert entry.extra["confidence"] == {"low": 1190.5, "high": None}
    assert entry.value == 1200.0 and isinstance(entry.value, float)


@pytest.mark.parametrize("case", json.loads((FILES / "errors.json").read_text(encoding="utf-8")))
def test_error_messages_are_as_before(case: dict[str, object]) -> None:
    with pytest.raises(BaselinesError) as info:
        parse_baselines(case["data"])
    assert str(info.value) == case["message"]


def test_parse_entry_validates_one_entry() -> None:
    assert parse_entry({"value": 2, "unit": "s", "x": 1}) == BaselineEntry(
        value=2.0, unit="s", extra={"x": 1})
    with pytest.raises(BaselinesError, match=r"^snapshot: value: must be >= 0 \(and 1 more"):
        parse_entry({"value": -1, "runs": 2.0}, source="snapshot")
    with pytest.raises(BaselinesError, match=r"^<baseline entry>: wrong type: expected an object"):
        parse_entry([1.0])


def _assert_the_shortcut_agrees(data: dict[str, object]) -> None:
    """`_common_entry` (the fast path) accepts only what `_entry` accepts, as the same."""
    shortcut = _common_entry(data)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    checked = _entry(data, (), problems)
    assert (checked is None) == bool(problems)
    if shortcut is not None:
        assert repr(checked) == repr(shortcut) and problems == [], data  # 1 != 1.0 here


_FULL_ENTRY = {"value": 1.0, "unit": "s", "direction": "lower", "threshold": 0.2, "runs": 5,
               "spread": 0.1, "n": 5, "samples": [1.0, 2.0]}
_NEAR = [0, 1, -1, 0.0, -0.0, -1.0, 3.0, 5e-324, -5e-324, 1.7e308, 2**1100, float("nan"),
         float("inf"), float("-inf"), True, False, None, "lower", "higher", "up", "Lower", "8.0",
         [], [0.0, -1.0], [1.0, True], [1.0, 2], [float("nan")], [float("inf")], [None], {}]


@pytest.mark.parametrize("key", [*_FULL_ENTRY, "future"])
def test_the_common_entry_shortcut_agrees_with_the_full_check(key: str) -> None:
    assert _common_entry(_FULL_ENTRY) is not None  # the shortcut is taken for what we write
    for value in _NEAR:
        _assert_the_shortcut_agrees({**_FULL_ENTRY, key: value})
        _assert_the_shortcut_agrees({"value": 2.5, key: value})


_FLOAT = st.floats(min_value=0.0, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"value": _FLOAT},
        optional={
            "unit": st.just("s"),
            "direction": st.sampled_from(["lower", "higher"]),
            "threshold": st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
            "runs": st.integers(0, 10),
            "spread": _FLOAT,
            "n": st.integers(0, 10),
            "samples": st.lists(_FLOAT, max_size=3),
        },
    ),
    st.sampled_from([*_FULL_ENTRY, "future"]),
    st.one_of(st.floats(), st.integers(), st.sampled_from(_NEAR)),
)
def test_the_shortcut_takes_written_entries_and_agrees_on_changed_ones(
    written: dict[str, object], key: str, value: object
) -> None:
    assert _common_entry(written) is not None
    _assert_the_shortcut_agrees(written)
    _assert_the_shortcut_agrees({**written, key: value})


def test_non_finite_values_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text('{"linux": {"lat": NaN}}')
    with pytest.raises(BaselinesError, match=r"linux\.lat: must be a finite number"):
        load_baselines(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(BaselinesError, match="cannot be read"):
        load_baselines(tmp_path)  # a directory


def test_write_is_sorted_indented_and_newline_terminated(tmp_path: Path) -> None:
    path = write_json(tmp_path / "b.json", SCHEMA)
    write_baselines(path, load_baselines(path))
    text = path.read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert set(data["platforms"]) == {"linux_x86", "macos_arm64"}
    assert data["schema"] == 1
    assert load_baselines(path) == load_baselines(write_json(tmp_path / "orig.json", SCHEMA))


def test_samples_are_written_on_one_line_and_read_back(tmp_path: Path) -> None:
    path = write_json(tmp_path / "b.json", SCHEMA)
    file = load_baselines(path)
    samples = [0.00012, 0.5, 1.0, 2.25, 1e-05]
    file.platforms["linux_x86"].tests["t"] = {"m": BaselineEntry(value=0.5, samples=samples)}
    write_baselines(path, file)
    text = path.read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert '"samples": [0.00012, 0.5, 1.0, 2.25, 1e-05],' in lines
    assert load_baselines(path).platforms["linux_x86"].tests["t"]["m"].samples == samples
    assert text.count("[") == text.count("]") and json.loads(text)


def test_changing_one_platform_keeps_the_others(tmp_path: Path) -> None:
    path = write_json(tmp_path / "b.json", SCHEMA)
    file = load_baselines(path)
    file.platforms["linux_x86"].tests["t"] = {"m": BaselineEntry(value=3.0)}
    write_baselines(path, file)
    again = load_baselines(path)
    assert again.lookup("macos_arm64", "tests/test_rag.py::test_query", "query_latency") \
        == BaselineEntry(value=6.0, unit="s", direction="lower")
    assert again.lookup("linux_x86", "t", "m") == BaselineEntry(value=3.0)


def test_flat_file_is_written_as_schema_1_keeping_its_values(tmp_path: Path) -> None:
    path = write_json(tmp_path / "b.json", FLAT)
    flat = load_baselines(path)
    write_baselines(path, flat)
    data = json.loads(path.read_text())
    assert data["schema"] == 1
    assert data["platforms"]["linux_x86"]["metrics"]["query_latency"] == {"unit": "", "value": 8.0}
    assert data["platforms"]["linux_x86"]["metadata"]["git_commit"] == "abc"
    assert load_baselines(path) == flat


def test_crash_mid_write_leaves_the_original_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_json(tmp_path / "b.json", SCHEMA)
    before = path.read_text()
    file = load_baselines(path)
    file.platforms.clear()

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_baselines(path, file)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["b.json"]  # the temporary file was removed


def test_write_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "baselines" / "perf_baselines.json"
    write_baselines(path, BaselineFile())
    assert json.loads(path.read_text()) == {"platforms": {}, "schema": 1}


def _big_file(writer: int) -> BaselineFile:
    tests = {f"tests/test_{i}.py::t": {"duration": BaselineEntry(value=writer + i / 1000)}
             for i in range(300)}
    return BaselineFile(platforms={f"p{writer}": PlatformBaselines(tests=tests)})


def test_concurrent_writers_never_leave_a_half_written_file(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_baselines(path, _big_file(0))
    stop = threading.Event()
    errors: list[Exception] = []
    seen = 0

    def reader() -> None:
        nonlocal seen
        while not stop.is_set():
            try:
                file = load_baselines(path)
            except Exception as exc:  # collected and asserted on below
                errors.append(exc)
                return
            assert len(next(iter(file.platforms.values())).tests) == 300
            seen += 1

    def writer(n: int) -> None:
        for _ in range(15):
            write_baselines(path, _big_file(n))

    read = threading.Thread(target=reader)
    read.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(1, 7)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    read.join()
    assert errors == []
    assert seen > 0
    assert len(load_baselines(path).platforms) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]


def _locked_update(path_and_platform: tuple[str, str]) -> None:
    path, platform = Path(path_and_platform[0]), path_and_platform[1]
    for i in range(10):
        with baselines_lock(path):
            file = load_baselines(path)
            section = file.platforms.setdefault(platform, PlatformBaselines())
            section.tests[f"t{i}"] = {"m": BaselineEntry(value=float(i))}
            write_baselines(path, file)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_concurrent_processes_updating_under_the_lock_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    platforms = [f"platform_{n}" for n in range(4)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_locked_update, [(str(path), p) for p in platforms])
    file = load_baselines(path)
    assert sorted(file.platforms) == platforms
    assert all(len(section.tests) == 10 for section in file.platforms.values())
