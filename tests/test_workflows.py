"""The GitHub workflows: actionlint, the fork-safety rules, and the comment script itself.

`actionlint` runs where its binary is installed (next to this Python or on PATH) and is
skipped otherwise; the structural checks need only PyYAML. The comment script of
perf-comment.yml is run under Node with a fake GitHub API when `node` is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("ci.yml", "perf.yml", "perf-comment.yml", "nightly.yml")


def load(name: str) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean true.
    return {("on" if key is True else key): value for key, value in raw.items()}


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses(workflow: dict[str, Any]) -> list[str]:
    return [step["uses"].split("@")[0] for step in steps(workflow) if "uses" in step]


def run_text(workflow: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(workflow))


def find_actionlint() -> str | None:
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.exists() else shutil.which("actionlint")


@pytest.mark.skipif(find_actionlint() is None, reason="actionlint is not installed")
def test_actionlint() -> None:
    files = [str(WORKFLOWS / name) for name in NAMES]
    result = subprocess.run(
        [find_actionlint(), "-color=false", *files],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_workflow_is_there_and_none_uses_pull_request_target() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == sorted(NAMES)
    for name in NAMES:
        text = (WORKFLOWS / name).read_text(encoding="utf-8")
        assert "pull_request_target" not in text, name
        workflow = load(name)
        assert "permissions" in workflow, f"{name}: set the token's permissions explicitly"


def test_ci_runs_lint_types_and_tests_on_every_python_with_postgresql() -> None:
    ci = load("ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    assert "pull_request" in ci["on"] and "push" in ci["on"]
    commands = run_text(ci)
    assert "ruff check" in commands and "mypy" in commands and "pytest" in commands
    test = ci["jobs"]["test"]
    assert test["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    assert test["services"]["postgres"]["image"] == "postgres:16"
    assert test["env"]["PERFGUARD_TEST_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_perf_gates_the_pull_request_with_a_read_only_token() -> None:
    perf = load("perf.yml")
    assert list(perf["on"]) == ["pull_request"]
    assert perf["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in perf["jobs"].values())
    assert "secrets." not in (WORKFLOWS / "perf.yml").read_text(encoding="utf-8")
    command = " ".join(run_text(perf).split())
    assert (
        "pytest examples -p no:cacheprovider --perf-record "
        "--perf-report perf-report.md --perf-json perf-report.json"
    ) in command
    upload = next(s for s in steps(perf) if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["name"] == "perfguard-report"
    assert upload["with"]["path"].split() == [
        "perf-report.md", "perf-report.json", "selfperf-report.md", "selfperf-report.json",
        "ab-report.md", "ab-report.json",
    ]  # fmt: skip
    assert "!cancelled()" in upload["if"]  # uploaded when the gate fails too
    assert "actions/cache/save" not in uses(perf)  # a PR never writes the shared history


def test_perf_gates_the_pull_request_against_its_base_side_by_side() -> None:
    """The A/B step: the PR's base sha (from the event, through the environment, never
    interpolated into the script) measured next to the PR's code; full-depth checkout."""
    perf = load("perf.yml")
    checkout = next(s for s in steps(perf) if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    step = next(s for s in steps(perf) if "PERFGUARD_AGAINST" in s.get("env", {}))
    assert step["env"]["PERFGUARD_AGAINST"] == "${{ github.event.pull_request.base.sha }}"
    assert "${{" not in step["run"]
    assert "--perf-json ab-report.json" in " ".join(step["run"].split())


SELF_SUITE = (
    "PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no -q "
    "--callgrind-out-file=.perfguard/callgrind/callgrind.out.%p "
    "\"$(python -c 'import sys; print(sys.executable)')\" -m pytest benchmarks/selfperf "
    "-p no:cacheprovider --perf-instructions --perf-platform selfperf_callgrind_py3.11"
)


def _python(workflow: dict[str, Any]) -> str:
    setup = next(s for s in steps(workflow) if s.get("uses", "").startswith("actions/setup-python"))
    return str(setup["with"]["python-version"])


def test_perf_gates_this_repository_on_its_own_committed_baselines() -> None:
    """The self-suite runs under callgrind with the platform key its committed baselines
    are under, on the Python they were counted with, and can fail the job."""
    perf = load("perf.yml")
    command = " ".join(run_text(perf).replace("\\\n", " ").split())
    assert SELF_SUITE in command
    assert "apt-get install -y -qq valgrind" in command
    assert _python(perf) == "3.11"
    step = next(s for s in steps(perf) if "benchmarks/selfperf" in str(s.get("run", "")))
    assert "continue-on-error" not in step and "if" not in step
    baselines = json.loads((ROOT / "baselines" / "perf_baselines.json").read_text("utf-8"))
    tests = baselines["platforms"]["selfperf_callgrind_py3.11"]["tests"]
    assert sorted(tests) == [
        "benchmarks/selfperf/test_selfperf.py::test_a_session_of_plain_tests",
        "benchmarks/selfperf/test_selfperf.py::test_session_end_write",
    ]
    assert all(set(metrics) == {"instructions"} for metrics in tests.values())


def test_perf_comment_never_runs_pull_request_code() -> None:
    comment = load("perf-comment.yml")
    perf = load("perf.yml")
    trigger = comment["on"]["workflow_run"]
    assert list(comment["on"]) == ["workflow_run"]
    assert trigger["workflows"] == [perf["name"]] and trigger["types"] == ["completed"]
    assert comment["permissions"] == {}
    [job] = comment["jobs"].values()
    assert job["permissions"] == {"pull-requests": "write", "actions": "read"}
    assert "actions/checkout" not in uses(comment)
    assert all("run" not in step for step in steps(comment)), "no shell steps at all"
    for step in steps(comment):
        script = step.get("with", {}).get("script", "")
        # Untrusted values reach the script as data (context, env), never spliced into code.
        assert "${{" not in script
    download = next(s for s in steps(comment) if "download-artifact" in s.get("uses", ""))
    assert download["with"]["name"] == "perfguard-report"
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    assert "<!-- perfguard-report -->" in (WORKFLOWS / "perf-comment.yml").read_text("utf-8")


def test_nightly_records_publishes_and_opens_issue_and_baselines_pr() -> None:
    nightly = load("nightly.yml")
    assert "schedule" in nightly["on"]
    command = " ".join(run_text(nightly).split())
    assert "--perf-run-type nightly --perf-record" in command
    assert "--perf-update-baselines" in command
    assert "perfguard dashboard" in command and "gh issue create" in command
    used = uses(nightly)
    assert "actions/cache/restore" in used and "actions/cache/save" in used
    assert "peter-evans/create-pull-request" in used
    artifact = next(s for s in steps(nightly) if "upload-artifact" in s.get("uses", ""))
    assert "dashboard.html" in artifact["with"]["path"].split()
    [job] = nightly["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    # The self-suite is recorded each night and its baselines proposed with the others'.
    assert SELF_SUITE + " --perf-run-type nightly --perf-record --perf-update-baselines" in (
        " ".join(run_text(nightly).replace("\\\n", " ").split())
    )
    assert _python(nightly) == _python(load("perf.yml"))
    pull_request = next(s for s in steps(nightly) if "create-pull-request" in s.get("uses", ""))
    assert pull_request["with"]["add-paths"] == "baselines/perf_baselines.json"
    failing = next(s for s in steps(nightly) if s.get("name") == "Fail on a failed run")
    assert "steps.selfperf.outcome == 'failure'" in failing["if"]


# -- the comment script, under Node with a fake GitHub API ---------------------------------

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")
MARKER = "<!-- perfguard-report -->"
HEAD = "0123456789abcdef0123456789abcdef01234567"

HARNESS = r"""
const fs = require('fs');
const [scriptFile, stateFile] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
const calls = [];
const github = {
  rest: {
    actions: { listWorkflowRunArtifacts: 'artifacts' },
    pulls: { list: 'pulls' },
    issues: {
      listComments: 'comments',
      createComment: async (args) => { calls.push(['create', args]); },
      updateComment: async (args) => { calls.push(['update', args]); },
    },
  },
  paginate: async (what, args) => {
    if (what === 'artifacts') return state.artifacts;
    if (what === 'comments') return state.comments;
    return state.pulls.filter((p) => !args.head || args.head === p.head.label);
  },
};
const core = {
  notice: (m) => calls.push(['notice', m]),
  setFailed: (m) => calls.push(['failed', m]),
  info: () => {},
};
const context = { repo: { owner: 'org', repo: 'proj' }, payload: { workflow_run: state.run } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const script = fs.readFileSync(scriptFile, 'utf8');
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then((result) => console.log(JSON.stringify({ result, calls })))
  .catch((error) => { console.error(error); process.exit(1); });
"""


def comment_scripts() -> list[str]:
    return [
        s["with"]["script"]
        for s in steps(load("perf-comment.yml"))
        if "github-script" in s.get("uses", "")
    ]


def run_script(
    tmp_path: Path, script: str, report: str | None = None, **state: Any
) -> dict[str, Any]:
    run = {
        "id": 7,
        "run_number": 3,
        "html_url": "https://github.com/org/proj/actions/runs/7",
        "head_sha": HEAD,
        "head_branch": "feature",
        "head_repository": {"owner": {"login": "forker"}},
    }
    state = {"run": run, "artifacts": [], "pulls": [], "comments": [], **state}
    (tmp_path / "harness.js").write_text(HARNESS, encoding="utf-8")
    (tmp_path / "script.js").write_text(script, encoding="utf-8")
    (tmp_path / "state.json").write_text(json.dumps(state), encoding="utf-8")
    path = tmp_path / "perf-report.md"
    if report is not None:
        path.write_text(report, encoding="utf-8")
    env = {**os.environ, "REPORT": str(path)}
    result = subprocess.run(
        [str(NODE), "harness.js", "script.js", "state.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


PR = {"number": 12, "head": {"sha": HEAD, "label": "forker:feature"}}


@needs_node
def test_artifact_size_is_checked_before_download(tmp_path: Path) -> None:
    check = comment_scripts()[0]
    small = {"name": "perfguard-report", "expired": False, "size_in_bytes": 2_000}
    huge = {**small, "size_in_bytes": 50_000_000}
    assert run_script(tmp_path, check, artifacts=[small])["result"] == "ok"
    out = run_script(tmp_path, check, artifacts=[huge])
    assert out["result"] == "too-large" and out["calls"][0][0] == "failed"
    assert run_script(tmp_path, check, artifacts=[])["result"] == "none"


@needs_node
def test_comment_is_created_once_with_one_marker_and_no_mentions(tmp_path: Path) -> None:
    post = comment_scripts()[1]
    report = f"{MARKER}\n## ❌ 1 performance regression\nping @octocat about #3 {MARKER}\n"
    out = run_script(tmp_path, post, report, pulls=[PR])
    [(kind, args)] = out["calls"]
    assert kind == "create" and args["issue_number"] == 12
    body = args["body"]
    assert body.startswith(MARKER) and body.count(MARKER) == 1
    assert "@octocat" not in body and "@\u200boctocat" in body and "#\u200b3" in body


@needs_node
def test_the_bots_comment_is_updated_and_nobody_elses(tmp_path: Path) -> None:
    post = comment_scripts()[1]
    comments = [
        {"id": 1, "user": {"login": "mallory"}, "body": f"{MARKER} mine"},
        {"id": 2, "user": {"login": "github-actions[bot]"}, "body": f"{MARKER}\nold report"},
    ]
    out = run_script(tmp_path, post, "new report", pulls=[PR], comments=comments)
    [(kind, args)] = out["calls"]
    assert kind == "update" and args["comment_id"] == 2 and "new report" in args["body"]


@needs_node
def test_oversized_or_missing_reports_and_unknown_pull_requests(tmp_path: Path) -> None:
    post = comment_scripts()[1]
    out = run_script(tmp_path, post, "x" * (2 * 1024 * 1024), pulls=[PR])
    assert [c[0] for c in out["calls"]] == ["failed"]
    long = run_script(tmp_path, post, "y" * 200_000, pulls=[PR])
    [(kind, args)] = long["calls"]
    assert kind == "create" and len(args["body"]) < 65_536 and "truncated" in args["body"]
    (tmp_path / "perf-report.md").unlink()
    assert [c[0] for c in run_script(tmp_path, post, None, pulls=[PR])["calls"]] == ["notice"]
    other = {"number": 9, "head": {"sha": "f" * 40, "label": "forker:feature"}}
    out = run_script(tmp_path, post, "report", pulls=[other])
    assert [c[0] for c in out["calls"]] == ["notice"]


def guide_workflows() -> dict[str, str]:
    """The workflow files the guide offers for users' own repositories."""
    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n# \.github/workflows/([\w.-]+)\n(.*?)```", guide, re.S)
    return {name: text for name, text in blocks}


def test_the_guides_pr_job_is_fork_safe_too() -> None:
    examples = guide_workflows()
    assert sorted(examples) == ["perf-comment.yml", "perf.yml"]
    perf = yaml.safe_load(examples["perf.yml"])
    comment = yaml.safe_load(examples["perf-comment.yml"])
    assert perf["permissions"] == {"contents": "read"}
    assert comment["permissions"] == {}
    assert comment[True]["workflow_run"]["workflows"] == [perf["name"]]
    comment_steps = [s for job in comment["jobs"].values() for s in job["steps"]]
    assert not any("checkout" in s.get("uses", "") or "run" in s for s in comment_steps)
    assert "pull_request_target" not in "".join(examples.values())


@pytest.mark.skipif(find_actionlint() is None, reason="actionlint is not installed")
def test_actionlint_on_the_guides_pr_job(tmp_path: Path) -> None:
    files = []
    for name, text in guide_workflows().items():
        path = tmp_path / ".github" / "workflows" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files.append(str(path))
    result = subprocess.run(
        [find_actionlint(), "-color=false", *files],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
