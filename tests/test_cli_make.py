"""`make demo` runs again into a fresh run directory; `make setup` is quiet unless it fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def fake_rlscale(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rlscale").write_text('#!/bin/sh\necho "rlscale $*"\n')
    (bin_dir / "rlscale").chmod(0o755)
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")  # the stamp's prerequisites, older than it
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints" / "cpu.txt").touch()
    (tmp_path / "stamp").touch()
    return ["make", "-s", "demo", f"BIN={bin_dir}", f"STAMP={tmp_path / 'stamp'}"]


def test_make_demo_uses_runs_demo_first_then_a_fresh_directory(tmp_path, fake_rlscale):
    first = subprocess.run(fake_rlscale, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("rlscale run configs/demo.yaml name=demo")
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "metrics.jsonl").write_text("")
    again = subprocess.run(fake_rlscale, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    said, ran = again.stdout.strip().splitlines()
    assert "runs/demo already holds a run" in said and "--resume runs/demo" in said
    assert ran.startswith("rlscale run configs/demo.yaml name=demo-")


def test_make_setup_prints_its_log_only_when_it_fails(tmp_path):
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-s", "setup", f"VENV={venv}", "PYTHON=sh -c 'echo pip says why; exit 1' --"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"setting up {venv}")
    assert f"make setup failed; the end of {venv}/setup.log:" in lines
    assert lines[-1] == "pip says why"
