"""Ray placement: starting or joining Ray, the CPUs and threads each actor gets.

A run without `ray.address` starts its own local Ray instance (`address="local"`), even when
another Ray cluster runs on the machine: joining someone else's cluster by accident would share
its resources, and Ray refuses `num_cpus` when it attaches. With `ray.address` set (`auto`, or
`ray://host:port`) the run joins that cluster on purpose.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray

from rlscale.config import RunConfig
from rlscale.errors import RunStopped

# Ray's notice that the private Ray it starts uses token authentication: nothing to act on
_AUTH_NOTICE = "ray._private.authentication.authentication_token_setup"


def actor_logs_shown() -> bool:
    """RLSCALE_ACTOR_LOGS=1: the actors' output (vLLM, transformers, Ray workers) in the terminal
    too; by default it stays in Ray's log folder, linked from the run directory as ray_logs/."""
    return os.environ.get("RLSCALE_ACTOR_LOGS") == "1"


def init_ray(address: str | None, needed_cpus: float) -> None:
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=actor_logs_shown())
    if address:
        ray.init(address=address, **kwargs)
    else:  # a local Ray sized so that every actor fits even on a 2-core machine
        notice = logging.getLogger(_AUTH_NOTICE)
        level = notice.level
        notice.setLevel(logging.ERROR)
        try:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(needed_cpus + 0.999)), **kwargs)
        finally:
            notice.setLevel(level)


def ray_logs_dir() -> Path | None:
    """This machine's folder of Ray's logs for the running session (workers' stdout/stderr)."""
    try:
        path = Path(ray._private.worker._global_node.get_logs_dir_path())
    except Exception:  # a Ray Client connection, or Ray internals that moved
        return None
    return path if path.is_dir() else None


def link_logs(run_dir: Path) -> Path | None:
    """`<run_dir>/ray_logs` -> Ray's log folder of this session; the link, or None."""
    target = ray_logs_dir()
    if target is None:
        return None
    link = Path(run_dir) / "ray_logs"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    except OSError:
        return None
    return link


def needed_cpus(cfg: RunConfig) -> float:
    """Logical CPUs the run's actors ask Ray for."""
    return cfg.rollout.workers * cfg.ray.worker_cpus + cfg.ray.learner_cpus * cfg.learner.world_size


def start(cfg: RunConfig) -> None:
    """Ray started or joined, with room for every actor of this run (else a clear refusal)."""
    needed = needed_cpus(cfg)
    where = f"joining Ray at {cfg.ray.address}" if cfg.ray.address else "starting a local Ray"
    print(f"{where} ...", flush=True)
    init_ray(cfg.ray.address, needed)
    link = link_logs(cfg.run_dir)
    where = link if link is not None else "Ray's log folder (/tmp/ray/session_latest/logs)"
    if actor_logs_shown():
        print(f"Ray ready; engine and learner output shown here, and kept in {where}")
    else:
        print(f"Ray ready; engine, learner and Ray logs: {where} (RLSCALE_ACTOR_LOGS=1 shows them here)")
    tp = cfg.rollout.tensor_parallel_size
    gpus = _cluster_gpus()
    if tp > 1 and gpus < tp:  # vLLM's tensor parallelism splits a model over GPUs: none on CPU
        raise RunStopped(
            f"rollout.tensor_parallel_size={tp}: tensor parallelism needs {tp} GPUs per engine; "
            f"this Ray cluster has {gpus:g}. Set rollout.tensor_parallel_size=1."
        )
    if cfg.rollout.colocate and gpus < cfg.learner.world_size:  # vLLM's sleep mode is CUDA only
        raise RunStopped(
            f"rollout.colocate: vLLM's sleep mode needs CUDA GPUs, one per learner rank "
            f"({cfg.learner.world_size}); this Ray cluster has {gpus:g}. Set rollout.colocate=false."
        )
    wanted = gpus_wanted(cfg, gpus)
    if wanted > gpus:  # disaggregated on GPUs: actors that cannot be placed would wait forever
        raise RunStopped(
            f"this run's engines and learner ranks need {wanted:g} GPUs (one per learner rank, "
            f"rollout.tensor_parallel_size per engine); this Ray cluster has {gpus:g}. "
            "Set rollout.colocate=true to share them, or add GPUs."
        )
    free = ray.available_resources().get("CPU", 0.0)
    if free < needed:  # actors that cannot be placed would wait forever
        raise RunStopped(
            f"Ray has {free:g} free CPUs; this run's actors need {needed:g} "
            "(rollout.workers x ray.worker_cpus + ray.learner_cpus x learner.world_size). "
            "Lower them or add nodes."
        )


def actor_threads(cfg: RunConfig) -> int:
    """Torch threads per actor: actors busy at the same time split the cores (oversubscribed
    OpenMP threads spin against each other); the engine and a synchronous learner take turns."""
    if "RLSCALE_THREADS" in os.environ:
        return int(os.environ["RLSCALE_THREADS"])
    busy_at_once = cfg.rollout.workers + (1 if cfg.trainer.off_policy_steps else 0)
    return max(1, (os.cpu_count() or 1) // busy_at_once)


def gpu_shares(cfg: RunConfig, cluster_gpus: float) -> tuple[float, float]:
    """GPUs asked of Ray by (each engine, each learner rank): none on a cluster without GPUs;
    disaggregated, `tensor_parallel_size` per engine and one per rank; colocated, half a GPU
    each, so that Ray puts one engine and one rank on every GPU."""
    if cluster_gpus <= 0:
        return 0.0, 0.0
    if cfg.rollout.colocate:
        return 0.5, 0.5
    return float(cfg.rollout.tensor_parallel_size), 1.0


def gpus_wanted(cfg: RunConfig, cluster_gpus: float) -> float:
    engine, rank = gpu_shares(cfg, cluster_gpus)
    return cfg.rollout.workers * engine + cfg.learner.world_size * rank


def actor_options(cfg: RunConfig, num_cpus: float, num_gpus: float = 0.0) -> dict:
    """Ray `.options(...)` for one of this run's actors."""
    env_vars = {
        "OMP_NUM_THREADS": str(actor_threads(cfg)),
        "VLLM_LOGGING_LEVEL": "ERROR",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {"num_cpus": num_cpus, "num_gpus": num_gpus, "runtime_env": {"env_vars": env_vars}}


def engine_options(cfg: RunConfig) -> dict:
    """`.options(...)` of one rollout engine: its CPUs and, on GPUs, its share (`gpu_shares`)."""
    return actor_options(cfg, cfg.ray.worker_cpus, gpu_shares(cfg, _cluster_gpus())[0])


def learner_options(cfg: RunConfig) -> dict:
    """`.options(...)` of one learner rank: its CPUs and, on GPUs, its share (`gpu_shares`)."""
    return actor_options(cfg, cfg.ray.learner_cpus, gpu_shares(cfg, _cluster_gpus())[1])


def _cluster_gpus() -> float:
    return ray.cluster_resources().get("GPU", 0.0)
