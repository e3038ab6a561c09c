"""Faults during a real run: verifier crashes and hangs, a killed rollout actor, NaN updates,
a full disk, a corrupt checkpoint. Real processes, real Ray, a real tmpfs."""

from __future__ import annotations

import json
import math
import subprocess
import time

import pytest

from rlscale import checkpoint
from rlscale.envs import register
from rlscale.envs.arithmetic import Arithmetic
from rlscale.errors import RunStopped
from rlscale.telemetry import MetricsWriter, TelemetryError, load_metrics

BEHAVIOUR = {"mode": "normal"}


@register("faulty_arithmetic")
class FaultyArithmetic(Arithmetic):
    """Arithmetic whose verifier misbehaves on demand (the test flips BEHAVIOUR['mode'])."""

    description = "test-only: arithmetic with a verifier that crashes, hangs or returns NaN"
    calls = 0

    def score(self, task, response):
        FaultyArithmetic.calls += 1
        mode = BEHAVIOUR["mode"]
        if mode == "crash_and_hang" and FaultyArithmetic.calls % 5 == 0:
            raise RuntimeError("verifier bug")
        if mode == "crash_and_hang" and FaultyArithmetic.calls % 7 == 0:
            time.sleep(3)  # longer than verify.timeout_s
        verdict = super().score(task, response)
        if mode == "nan":
            return type(verdict)(float("nan"), verdict.correct, "nan reward")
        return verdict


@pytest.fixture(scope="module")
def faulty_run(ray_session, tmp_path_factory):
    from rlscale.config_io import build_config
    from rlscale.orchestrator import Orchestrator

    cfg = build_config(
        {
            "name": "faulty",
            "output_dir": str(tmp_path_factory.mktemp("runs")),
            "model": "builtin:tiny",
            "env": {"name": "faulty_arithmetic", "kwargs": {"digits": 1, "ops": "+"}},
            "algo": {"name": "grpo", "kl_coef": 0.0},
            "rollout": {"group_size": 4, "prompts_per_step": 8, "max_tokens": 4},
            "trainer": {"steps": 100, "max_consecutive_skips": 2},
            "verify": {"timeout_s": 1.0},
            "builtin": {"sft_steps": 30, "sft_batch": 32},
        },
        source="faulty_run",
    )
    orch = Orchestrator(cfg)
    yield orch
    orch.shutdown()


@pytest.mark.e2e
def test_verifier_crash_and_timeout_score_zero_and_are_counted(faulty_run):
    faulty_run.step(1)  # warm-up: the engine's first generation is slow
    start = time.monotonic()
    faulty_run.step(2)
    normal = time.monotonic() - start
    BEHAVIOUR["mode"] = "crash_and_hang"
    try:
        start = time.monotonic()
        record = faulty_run.step(3)
        elapsed = time.monotonic() - start
    finally:
        BEHAVIOUR["mode"] = "normal"
    assert record["verifier/errors"] >= 4  # 32 responses, every 5th call raises
    assert record["verifier/timeouts"] >= 1
    assert elapsed < normal + 1.0 + 2.0  # hung verifications hold the step no longer than the timeout
    assert 0.0 <= record["reward/mean"] <= 1.0


@pytest.mark.e2e
def test_killed_rollout_actor_is_restarted_with_current_weights(faulty_run, ray_session):
    old = faulty_run.engines.engines[0]
    ray_session.kill(old)  # a real actor death; the next step finds it dead mid-rollout
    record = faulty_run.step(4)
    assert record["faults/worker_restarts"] == 1
    assert faulty_run.engines.engines[0] is not old
    seq = [5, 9, 13, 20, 1]
    engine = ray_session.get(faulty_run.engines.engines[0].sequence_logprobs.remote([seq]))[0]
    learner = ray_session.get(faulty_run.learner.sequence_logprobs.remote([seq]))[0]
    assert max(abs(a - b) for a, b in zip(engine, learner)) < 1e-4


@pytest.mark.e2e
def test_nan_updates_are_skipped_then_the_run_stops_with_a_checkpoint(faulty_run):
    BEHAVIOUR["mode"] = "nan"
    try:
        first = faulty_run.step(5)
        assert first["learner/skipped_updates"] == 1 and math.isnan(first["reward/mean"])
        with pytest.raises(RunStopped, match="2 updates in a row had NaN/inf"):
            faulty_run.step(6)
    finally:
        BEHAVIOUR["mode"] = "normal"
    saved = checkpoint.latest_valid(faulty_run.run_dir / "checkpoints")
    assert saved is not None and saved.name == "step_000006"
    assert checkpoint.driver_state(saved)["totals"]["skipped_updates"] == 2
    assert load_metrics(faulty_run.run_dir)["step"].tolist() == [1, 2, 3, 4, 5]


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs: writes past it fail with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    assert done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.decode()}"
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_while_writing_metrics_is_a_clear_error_and_keeps_records(tiny_disk):
    writer = MetricsWriter(tiny_disk)
    payload = "x" * 4000
    with pytest.raises(TelemetryError, match="No space left on device.*intact") as info:
        for step in range(1, 10_000):
            writer.write({"step": step, "reward/mean": 0.5, "note": payload})
    writer.close()
    failed_at = int(str(info.value).split("step ")[1].split(" ")[0])
    frame = load_metrics(tiny_disk)
    assert frame["step"].tolist() == list(range(1, failed_at))


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tiny_disk):
    root = tiny_disk / "checkpoints"
    small = checkpoint.write(root, 1, lambda d: (d / "weights.bin").write_bytes(b"w" * 1000), {"step": 1}, 3)
    with pytest.raises(checkpoint.CheckpointError, match="No space left on device.*intact"):
        checkpoint.write(root, 2, lambda d: (d / "weights.bin").write_bytes(b"w" * 400_000), {"step": 2}, 3)
    assert [p.name for p in root.iterdir()] == ["step_000001"]  # no partial directory left
    assert checkpoint.latest_valid(root) == small


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (2, 4):
        checkpoint.write(root, step, lambda d: (d / "w.bin").write_bytes(b"weights" * 100), {"step": step}, 3)
    with open(root / "step_000004" / "w.bin", "r+b") as f:
        f.write(b"garbage")
    messages = []
    assert checkpoint.latest_valid(root, log=messages.append) == root / "step_000002"
    assert messages == [
        "checkpoint step_000004 is unusable (w.bin does not match its checksum); "
        "falling back to the previous one"
    ]
    (root / "step_000002" / checkpoint.MANIFEST).unlink()  # a partial write: no manifest
    assert checkpoint.latest_valid(root, log=messages.append) is None
    assert "no readable manifest" in messages[-1]
    assert json.loads((root / "step_000004" / checkpoint.DRIVER_STATE).read_text()) == {"step": 4}
