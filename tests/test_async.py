"""k-step asynchronous RL (`trainer.off_policy_steps=k`): staleness bookkeeping, the real stack,
and an exact resume of a run whose batches were sampled ahead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from rlscale.config import ConfigError
from rlscale.config_io import build_config
from rlscale.orchestrator import Lookahead
from rlscale.telemetry import load_metrics


@pytest.mark.parametrize("k", range(9))
def test_config_accepts_up_to_eight_steps_ahead(k):
    assert build_config({"trainer": {"off_policy_steps": k}}).trainer.off_policy_steps == k


def test_config_refuses_nine_steps_ahead():
    with pytest.raises(ConfigError, match="trainer.off_policy_steps"):
        build_config({"trainer": {"off_policy_steps": 9}})


class _Fake:
    """A collected batch that remembers which weights sampled it."""

    def __init__(self, step, staleness, weights):
        self.step, self.staleness, self.weights = step, staleness, weights


def _simulate(k: int, steps: int, *, resume_at: int | None = None):
    """The orchestrator's schedule with a fake collector: (trained batch, stats) per step.

    `resume_at`: after that step the queue goes through save/restore (a checkpoint and a resume)."""
    ahead, engine = Lookahead(k, steps), 0
    learner = 0  # updates applied
    out = []

    def collect(target, staleness):
        return _Fake(target, staleness, engine)

    for step in range(1, steps + 1):
        ahead.top_up(collect, step, engine)
        got = ahead.pop(step)
        engine = learner  # the sync: weights from before this update
        ahead.top_up(collect, step + 1, engine)
        assert got.step == step and got.staleness == learner - got.weights  # the lag is what it says
        out.append((got, ahead.stats(got)))
        learner += 1
        if step == resume_at:
            import pickle

            queue = pickle.loads(pickle.dumps(ahead.queue))
            ahead = Lookahead(k, steps)
            ahead.queue = queue
            engine = learner  # a resumed engine loads the checkpoint's weights
    return out


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_staleness_climbs_to_k_and_never_exceeds_it(k):
    out = _simulate(k, 20)
    lags = [got.staleness for got, _ in out]
    assert lags == [min(s, k) for s in range(20)]  # fresh start: 0, 1, ..., k, then k
    for step, (_, stats) in enumerate(out, start=1):
        assert stats["async/staleness_max"] <= k
        in_flight = 1 + min(k, 20 - step)  # the batch trained now and those queued
        assert sum(stats[f"async/staleness_hist/{j}"] for j in range(k + 1)) == in_flight
    assert out[-1][1]["async/staleness_hist/" + str(k)] == 1  # the last step: nothing queued


def test_one_step_schedule_is_todays():
    """k=1: the first batch on-policy, every later one sampled a step ahead with the weights
    from before the previous update (the schedule tests/test_e2e.py checks on the real stack)."""
    out = _simulate(1, 4)
    assert [got.staleness for got, _ in out] == [0, 1, 1, 1]
    assert [got.weights for got, _ in out] == [0, 0, 1, 2]


def test_a_restored_queue_trains_the_same_batches():
    straight = _simulate(4, 12)
    resumed = _simulate(4, 12, resume_at=6)
    assert [(g.step, g.staleness, g.weights) for g, _ in straight] == [
        (g.step, g.staleness, g.weights) for g, _ in resumed
    ]


def test_restore_drops_what_a_smaller_k_cannot_train(tmp_path):
    ahead = Lookahead(4, 20)
    ahead.queue = [(s, _Fake(s, lag, 0)) for s, lag in [(5, 1), (6, 2), (7, 3), (8, 4)]]
    ahead.save(tmp_path / "q.pkl")
    smaller = Lookahead(2, 20)
    smaller.restore(tmp_path / "q.pkl", 5)
    assert [s for s, _ in smaller.queue] == [5, 6]
    shorter = Lookahead(4, 6)  # a run resumed with fewer steps
    shorter.restore(tmp_path / "q.pkl", 5)
    assert [s for s, _ in shorter.queue] == [5, 6]
    wrong = Lookahead(4, 20)  # the queue belongs to other steps: nothing kept
    wrong.restore(tmp_path / "q.pkl", 3)
    assert wrong.queue == []


@pytest.mark.e2e
def test_four_steps_ahead_on_the_real_stack(ray_session, tmp_path):
    """off_policy_steps=4 through Ray + vLLM: staleness climbs 0..4 and stays at 4, never more;
    the histogram counts the batches in flight; the run learns or at least trains."""
    from rlscale.orchestrator import Orchestrator

    cfg = build_config(
        {
            "name": "k4",
            "output_dir": str(tmp_path),
            "env": {"name": "arithmetic", "kwargs": {"digits": 1, "ops": "+"}},
            "algo": {"kl_coef": 0.0},
            "rollout": {"group_size": 4, "prompts_per_step": 8, "max_tokens": 4},
            "learner": {"lr": 1e-2},
            "trainer": {"steps": 8, "off_policy_steps": 4, "checkpoint_every": 8},
            "builtin": {"sft_steps": 20, "sft_batch": 16},
        },
        source="k4",
    )
    orch = Orchestrator(cfg)
    try:
        summary = orch.run()
    finally:
        orch.shutdown()
    frame = load_metrics(tmp_path / "k4")
    assert frame["step"].tolist() == list(range(1, 9)) and summary["steps"] == 8
    assert frame["async/staleness"].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert frame["async/staleness_max"].tolist() == [4] * 8  # from step 1 on, step 5's batch is queued
    in_flight = frame[[f"async/staleness_hist/{j}" for j in range(5)]].sum(axis=1)
    assert in_flight.tolist() == [5, 5, 5, 5, 4, 3, 2, 1]
    assert (frame["samples"].diff().dropna() == 32).all() and (frame["entropy/mean"] > 0).all()
    assert frame[["grad_norm", "mismatch/kl", "loss/policy"]].notna().all().all()  # it trains; the
    # 100-step demo runs with and without k=4 (in the README) show it learning


STEPS = 12
OVERRIDES = [
    "env.kwargs={digits: 1, terms: 2, ops: '+'}",
    "rollout.group_size=4",
    "rollout.prompts_per_step=8",
    "rollout.max_tokens=4",
    "learner.lr=1e-2",
    f"trainer.steps={STEPS}",
    "trainer.checkpoint_every=3",
    "trainer.off_policy_steps=4",
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


@pytest.mark.e2e
def test_kill_9_resume_of_a_four_steps_ahead_run_matches_an_uninterrupted_one(tmp_path):
    """The batches sampled ahead are in the checkpoint: a run killed with kill -9 and resumed
    trains on exactly the batches an uninterrupted run trains on (same per-step rewards)."""
    _finish(_rlscale("configs/demo.yaml", "name=straight", f"output_dir={tmp_path}", *OVERRIDES))
    straight = load_metrics(tmp_path / "straight")

    run_dir = tmp_path / "killed"
    proc = _rlscale(
        "configs/demo.yaml", "name=killed", f"output_dir={tmp_path}", *OVERRIDES, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _steps_recorded(run_dir) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    assert 8 <= _steps_recorded(run_dir) < STEPS
    assert (run_dir / "checkpoints" / "step_000006" / "sampled_ahead.pkl").is_file()

    log = _finish(_rlscale("--resume", str(run_dir)))
    assert "resuming" in log and "step_000006" in log
    resumed = load_metrics(run_dir)
    assert list(resumed["step"]) == list(range(1, STEPS + 1))
    assert resumed["async/staleness"].tolist() == [0, 1, 2, 3] + [4] * 8
    assert resumed["reward/mean"].tolist() == straight["reward/mean"].tolist()
    assert resumed["samples"].tolist() == straight["samples"].tolist()
    assert resumed["grad_norm"].tolist() == pytest.approx(straight["grad_norm"].tolist(), abs=1e-6)
