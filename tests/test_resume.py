"""A real `kill -9` of a real run's process group, then `--resume`: contiguous steps, same rewards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from rlscale.telemetry import load_metrics

pytestmark = pytest.mark.e2e

STEPS = 8
OVERRIDES = [
    "env.kwargs={digits: 1, terms: 2, ops: '+'}",
    "rollout.group_size=4",
    "rollout.prompts_per_step=8",
    "rollout.max_tokens=4",
    "learner.lr=1e-2",
    f"trainer.steps={STEPS}",
    "trainer.checkpoint_every=2",
    "builtin.sft_steps=20",
]


def _rlscale(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlscale.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def _steps_recorded(run_dir) -> int:
    try:
        return sum(1 for _ in open(run_dir / "metrics.jsonl"))
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    _finish(_rlscale("configs/demo.yaml", "name=straight", f"output_dir={out}", *OVERRIDES))
    return load_metrics(out / "straight")


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, straight):
    out = str(tmp_path)

    run_dir = tmp_path / "killed"
    proc = _rlscale(
        "configs/demo.yaml", "name=killed", f"output_dir={out}", *OVERRIDES, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _steps_recorded(run_dir) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, mid-run
    proc.wait()
    for child in tree:  # Ray daemons may have left the group; the test leaves nothing behind
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    killed_at = _steps_recorded(run_dir)
    assert 5 <= killed_at < STEPS

    log = _finish(_rlscale("--resume", str(run_dir)))
    assert "resuming" in log and "step_000004" in log
    resumed = load_metrics(run_dir)
    assert list(resumed["step"]) == list(range(1, STEPS + 1))  # none missing, none doubled
    raw = [json.loads(line)["step"] for line in open(run_dir / "metrics.jsonl")]
    assert raw == list(range(1, STEPS + 1))  # reconciled on disk too, not only when loading
    assert resumed["reward/mean"].tolist() == straight["reward/mean"].tolist()
    assert resumed["samples"].tolist() == straight["samples"].tolist()


def test_sigint_finishes_the_step_checkpoints_and_resumes_with_nothing_lost(tmp_path, straight):
    """Ctrl-C mid-run: the step in flight completes, a checkpoint of it is written, one line says
    how to resume, exit 130 without a traceback; `--resume` then matches the uninterrupted run."""
    run_dir = tmp_path / "interrupted"
    args = ["configs/demo.yaml", "name=interrupted", f"output_dir={tmp_path}", *OVERRIDES]
    proc = _rlscale(*args, "trainer.checkpoint_every=100", start_new_session=True)
    deadline = time.monotonic() + 300
    while _steps_recorded(run_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)  # the driver only, as a terminal's Ctrl-C reaches it
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out
    stopped_at = _steps_recorded(run_dir)
    assert 3 <= stopped_at < STEPS
    last = out.strip().splitlines()[-1]
    assert last == (
        f"rlscale: SIGINT at step {stopped_at}: checkpoint written; continue with "
        f"`rlscale run --resume {run_dir}`"
    )
    assert (run_dir / "checkpoints" / f"step_{stopped_at:06d}").is_dir()  # nothing lost

    _finish(_rlscale("--resume", str(run_dir)))
    resumed = load_metrics(run_dir)
    assert list(resumed["step"]) == list(range(1, STEPS + 1))
    assert resumed["reward/mean"].tolist() == straight["reward/mean"].tolist()
