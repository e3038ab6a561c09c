"""Ray placement: starting or joining Ray, the CPUs and threads each actor gets.

A run without `ray.address` starts its own local Ray instance (`address="local"`), even when
another Ray cluster runs on the machine: joining someone else's cluster by accident would share
its resources, and Ray refuses `num_cpus` when it attaches. With `ray.address` set (`auto`, or
`ray://host:port`) the run joins that cluster on purpose.
"""

from __future__ import annotations

import logging
import os

import ray

from rlscale.config import RunConfig
from rlscale.errors import RunStopped


def init_ray(address: str | None, needed_cpus: float) -> None:
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    if address:
        ray.init(address=address, **kwargs)
    else:  # a local Ray sized so that every actor fits even on a 2-core machine
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(needed_cpus + 0.999)), **kwargs)


def needed_cpus(cfg: RunConfig) -> float:
    """Logical CPUs the run's actors ask Ray for."""
    return cfg.rollout.workers * cfg.ray.worker_cpus + cfg.ray.learner_cpus


def start(cfg: RunConfig) -> None:
    """Ray started or joined, with room for every actor of this run (else a clear refusal)."""
    needed = needed_cpus(cfg)
    init_ray(cfg.ray.address, needed)
    free = ray.available_resources().get("CPU", 0.0)
    if free < needed:  # actors that cannot be placed would wait forever
        raise RunStopped(
            f"Ray has {free:g} free CPUs; this run's actors need {needed:g} "
            "(rollout.workers x ray.worker_cpus + ray.learner_cpus). Lower them or add nodes."
        )


def actor_threads(cfg: RunConfig) -> int:
    """Torch threads per actor: actors busy at the same time split the cores (oversubscribed
    OpenMP threads spin against each other); the engine and a synchronous learner take turns."""
    if "RLSCALE_THREADS" in os.environ:
        return int(os.environ["RLSCALE_THREADS"])
    busy_at_once = cfg.rollout.workers + (1 if cfg.trainer.off_policy_steps else 0)
    return max(1, (os.cpu_count() or 1) // busy_at_once)


def actor_options(cfg: RunConfig, num_cpus: float) -> dict:
    """Ray `.options(...)` for one of this run's actors."""
    env_vars = {
        "OMP_NUM_THREADS": str(actor_threads(cfg)),
        "VLLM_LOGGING_LEVEL": "ERROR",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {"num_cpus": num_cpus, "runtime_env": {"env_vars": env_vars}}
