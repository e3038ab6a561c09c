"""A quiet terminal: the actors' output (vLLM, transformers, Ray workers) stays in Ray's log
folder, linked from the run directory, unless RLSCALE_ACTOR_LOGS=1; Ray's start-up notices
that a researcher cannot act on are not printed."""

from __future__ import annotations

import logging

import pytest

from rlscale import cluster


@pytest.fixture
def fake_init(monkeypatch):
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        logging.getLogger(cluster._AUTH_NOTICE).warning(
            "Token authentication is enabled for this Ray cluster"
        )

    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster.ray, "init", init)
    return calls


def test_actor_output_is_not_sent_to_the_terminal_by_default(fake_init, monkeypatch, caplog):
    monkeypatch.delenv("RLSCALE_ACTOR_LOGS", raising=False)
    with caplog.at_level(logging.WARNING):
        cluster.init_ray(None, 2)
    (kwargs,) = fake_init
    assert kwargs["log_to_driver"] is False and kwargs["address"] == "local"
    assert "Token authentication" not in caplog.text
    assert logging.getLogger(cluster._AUTH_NOTICE).level == logging.NOTSET  # restored


def test_rlscale_actor_logs_1_shows_them(fake_init, monkeypatch):
    monkeypatch.setenv("RLSCALE_ACTOR_LOGS", "1")
    cluster.init_ray("auto", 2)
    assert fake_init[0]["log_to_driver"] is True and fake_init[0]["address"] == "auto"


def test_the_run_directory_links_rays_logs(tmp_path, monkeypatch):
    logs = tmp_path / "session" / "logs"
    logs.mkdir(parents=True)
    (logs / "worker-1.err").write_text("vLLM says hello\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setattr(cluster, "ray_logs_dir", lambda: logs)
    assert cluster.link_logs(run_dir) == run_dir / "ray_logs"
    assert (run_dir / "ray_logs" / "worker-1.err").read_text() == "vLLM says hello\n"
    assert cluster.link_logs(run_dir) == run_dir / "ray_logs"  # a resumed run relinks
    monkeypatch.setattr(cluster, "ray_logs_dir", lambda: None)
    assert cluster.link_logs(tmp_path / "other") is None
