"""Session fixtures: one Ray, one real run through vLLM, tiny models made here (no downloads)."""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Built-in models are cached per test session, never in the user's home."""
    os.environ["RLSCALE_CACHE"] = str(tmp_path_factory.mktemp("rlscale-cache"))
    os.environ.setdefault("RLSCALE_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random tiny Qwen2 model with the character tokenizer, saved in HF format."""
    from rlscale.models import BUILTIN_SIZES, build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer()
    build_model(BUILTIN_SIZES["tiny"], len(tokenizer), seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from rlscale.cluster import init_ray

    # logical CPUs for placement only: several orchestrators (2 actors each) live at once here
    init_ray(None, needed_cpus=16)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def live_run(ray_session, tmp_path_factory):
    """A real GRPO run of a few steps: Ray actors, a vLLM engine, the learner, weight syncs.

    Yields the orchestrator (actors still alive) plus log-probs of a fixed sequence taken
    before any update, from both the engine and the learner.
    """
    from rlscale.config_io import build_config
    from rlscale.orchestrator import Orchestrator

    out = tmp_path_factory.mktemp("runs")
    cfg = build_config(
        {
            "name": "e2e",
            "output_dir": str(out),
            "model": "builtin:tiny",
            "env": {"name": "arithmetic", "kwargs": {"digits": 1, "ops": "+"}},
            "algo": {"name": "grpo", "kl_coef": 0.01},
            "rollout": {"group_size": 4, "prompts_per_step": 8, "max_tokens": 4},
            "learner": {"lr": 1e-2},
            "trainer": {"steps": 3, "checkpoint_every": 2},
            "builtin": {"sft_steps": 30, "sft_batch": 32},
            "eval": {"every": 2, "tasks": 4, "samples": 4},
            "scaling": {"refit_every": 2},
        },
        source="live_run",
    )
    orch = Orchestrator(cfg)
    rng = random.Random(7)
    task = orch.env.sample(rng)
    fixed = orch.tokenizer.encode(task.prompt + task.answer) + [orch.tokenizer.eos_token_id]
    before = {
        "engine": ray_session.get(orch.engines.engines[0].sequence_logprobs.remote([fixed]))[0],
        "learner": ray_session.get(orch.learner.sequence_logprobs.remote([fixed]))[0],
        "weights": dict(ray_session.get(orch.learner.weights.remote()).tensors()),
    }
    summary = orch.run()
    yield orch, fixed, before, summary
    orch.shutdown()
