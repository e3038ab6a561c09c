"""The per-family demo configs load, and their tasks suit the built-in character-level models."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rlscale.config_io import load_config
from rlscale.envs import make_env

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    ("config", "env_name"), [("math", "linear_equations"), ("code", "humaneval"), ("physics", "physics")]
)
def test_family_config_fits_the_builtin_models(config, env_name):
    from rlscale.models import CHARS, MAX_POSITIONS

    cfg = load_config(CONFIGS / f"{config}.yaml")
    assert cfg.env.name == env_name and cfg.model.startswith("builtin:")
    assert cfg.trainer.steps <= 100 and cfg.rollout.max_tokens <= 64  # a short demo
    env = make_env(cfg.env.name, **cfg.env.kwargs)
    rng = random.Random(0)
    tasks = [env.sample(rng) for _ in range(256)]
    # every character has its own token (anything else would become <unk>)
    assert all(set(t.prompt) <= set(CHARS) and set(env.demonstration(t)) <= set(CHARS) for t in tasks)
    # the engine's context is sized as in the orchestrator: twice the longest prompt plus the response
    assert 2 * max(len(t.prompt) for t in tasks) + cfg.rollout.max_tokens + 8 <= MAX_POSITIONS
    assert all(len(t.prompt) + len(env.demonstration(t)) + 1 <= MAX_POSITIONS for t in tasks)  # warm start
    assert all(env.score(t, env.demonstration(t)).correct for t in tasks[:8])
