"""Headless Chromium for the dashboard's browser tests: the page opened from disk, as a
reader would, and what its script left in the DOM read back."""

from __future__ import annotations

import html as htmllib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)
# The DOM after the page's scripts ran, on a window tall enough for every section.
DUMP_DOM = ("--window-size=1280,2000", "--dump-dom")


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def console_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the page wrote to the console: errors, CSP refusals, uncaught exceptions."""
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def body_attributes(dom: str) -> dict[str, str]:
    match = re.search(r"<body([^>]*)>", dom)
    assert match is not None, dom[:500]
    return {k: htmllib.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', match.group(1))}


def shown_page(tmp_path: Path, page: str) -> tuple[str, dict[str, str]]:
    """The page as a reader opens it: its DOM after its scripts ran, and the body's
    attributes; it loads, and writes nothing to the console."""
    plain = tmp_path / "plain.html"
    plain.write_text(page, encoding="utf-8")
    shown = chromium(tmp_path, plain, *DUMP_DOM)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert console_lines(shown) == []
    return shown.stdout, body_attributes(shown.stdout)


def driven_page(tmp_path: Path, page: str, harness: str) -> tuple[str, dict[str, str]]:
    """The DOM and the body's attributes after `harness` (a script that clicks and picks,
    and writes what it saw into attributes) ran on the page. The page's
    Content-Security-Policy, which refuses inline scripts, is taken out so it can run."""
    driven = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    driven = driven.replace("</body>", f"<script>{harness}</script></body>")
    path = tmp_path / "driven.html"
    path.write_text(driven, encoding="utf-8")
    dom = chromium(tmp_path, path, *DUMP_DOM).stdout
    return dom, body_attributes(dom)
