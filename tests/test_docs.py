"""Docs that cannot drift: every option, ini key, environment variable and CLI command is
documented, the links between pages resolve, and the guide's code examples run.

Code blocks run when the line before their ```python fence says so:

- `<!-- runnable -->`: a script, run with this Python in an empty directory;
- `<!-- runnable: pytest -->`: a test module, run with `pytest --perf` (pytester), which
  must pass; a `<!-- runnable: conftest -->` block just before it is its conftest.py.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_perfguard.config import OPTIONS, Option

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
TEXT = "\n".join(page.read_text(encoding="utf-8") for page in [*PAGES, ROOT / "README.md"])

# The commands of the contract (INTERFACE.md), for as long as the CLI has no parser to ask.
CONTRACT_COMMANDS = [
    "summary", "runs", "show", "trend", "compare", "export", "report", "dashboard",
    "baselines show", "baselines update", "baselines check", "record", "import", "platform",
    "stats", "db upgrade", "db vacuum",
]  # fmt: skip


def in_code(name: str) -> bool:
    """`name` appears as inline code, alone or followed by its value (`--perf-db URL`)."""
    return re.search("`" + re.escape(name) + r"(?:[ =][^`\n]*)?`", TEXT) is not None


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.flag)
def test_every_option_is_documented_with_its_flag_env_and_ini_names(option: Option) -> None:
    missing = [name for name in (option.flag, option.env, option.ini) if not in_code(name)]
    assert not missing, f"document {missing} in docs/guide.md (Environment variables and ini keys)"


@pytest.mark.parametrize("alias", sorted({a for o in OPTIONS for a in o.env_aliases}))
def test_seed_environment_aliases_are_documented(alias: str) -> None:
    assert in_code(alias)


def cli_commands() -> tuple[list[str], list[str]]:
    """(commands, long options) of the `perfguard` parser; the contract's list before it exists."""
    try:
        build_parser = importlib.import_module("pytest_perfguard.cli").build_parser
    except (ImportError, AttributeError):
        return CONTRACT_COMMANDS, []
    commands: list[str] = []
    options: set[str] = set()

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            options.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    command = f"{prefix} {name}".strip()
                    if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        commands.append(command)
                    walk(sub, command)

    walk(build_parser(), "")
    return commands, sorted(options - {"--help"})


COMMANDS, CLI_OPTIONS = cli_commands()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_command_is_documented(command: str) -> None:
    assert re.search(r"perfguard " + re.escape(command) + r"\b", TEXT), (
        f"document `perfguard {command}` in docs/cli.md"
    )


@pytest.mark.parametrize("option", CLI_OPTIONS or ["--db"])
def test_every_cli_option_is_documented(option: str) -> None:
    assert re.search(re.escape(option) + r"(?![\w-])", TEXT), f"document {option} in docs/cli.md"


def test_links_between_pages_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: broken link to {target}"


def test_guide_sections_follow_the_seed_guide() -> None:
    headings = re.findall(r"^## (.+)$", (DOCS / "guide.md").read_text("utf-8"), re.M)
    assert headings == [
        "Overview",
        "Quick start",
        "Markers and the `perf` fixture",
        "Multi-platform baselines",
        "CI/CD integration",
        "Dashboard",
        "Baseline management",
        "Tracked metrics",
        "Environment variables and ini keys",
        "The Python API",
        "xdist and PostgreSQL",
        "Troubleshooting",
        "Migrating",
    ]


# -- runnable examples -----------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    kind: str  # "script" or "pytest"
    code: str
    conftest: str = ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


_BLOCK = re.compile(r"<!-- runnable(?:: (\w+))? -->\n```python\n(.*?)\n```", re.S)


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        conftest = ""
        for match in _BLOCK.finditer(text):
            kind, code = match.group(1) or "script", match.group(2)
            line = text.count("\n", 0, match.start()) + 1
            if kind == "conftest":
                conftest = code
                continue
            assert kind in ("script", "pytest"), f"{page.name}:{line}: unknown kind {kind}"
            found.append(Example(page.name, line, kind, code, conftest if kind == "pytest" else ""))
            conftest = ""
    return found


EXAMPLES = examples()


def test_the_guide_has_runnable_examples() -> None:
    kinds = {(e.page, e.kind) for e in EXAMPLES}
    assert {("guide.md", "script"), ("guide.md", "pytest")} <= kinds


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "script"], ids=str)
def test_script_examples_run(example: Example, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{example}:\n{result.stderr}"


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "pytest"], ids=str)
def test_pytest_examples_pass(example: Example, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=example.code)
    if example.conftest:
        pytester.makeconftest(example.conftest)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--perf")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, f"{example}:\n" + "\n".join(result.outlines[-40:])
    assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed")
