"""What every benchmark shares: options, threads, the machine, the models and prompts it runs on."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import torch

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def _opt(args, name: str, default):
    """An option of `args`, or this bench's default when it was not given (None)."""
    value = getattr(args, name, None)
    return default if value is None else value


def _threads() -> int:
    return int(os.environ.get("RLSCALE_THREADS", os.cpu_count() or 1))


def _machine() -> str:
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{platform.machine()} x{os.cpu_count()} cpus{gpu}, torch {torch.__version__}"


def _bench_model(name: str) -> Path:
    """A model directory to benchmark: `builtin:<size>` (random weights, cached) or a path."""
    from rlscale.envs import make_env
    from rlscale.models import resolve_builtin

    if not name.startswith("builtin:"):
        return Path(name)
    env = make_env("arithmetic")
    sft = {"sft_steps": 0, "sft_batch": 1, "sft_lr": 1e-3}
    return resolve_builtin(name.removeprefix("builtin:"), env, {}, sft, seed=0)


def _prompts(tokenizer, n: int) -> list[list[int]]:
    from rlscale.envs import make_env

    env, rng = make_env("arithmetic", digits=3, terms=3), random.Random(0)
    return [tokenizer.encode(env.sample(rng).prompt) for _ in range(n)]
