"""The driver loop: sample prompts -> generate groups -> verify -> advantages -> update ->
sync weights -> record. Everything heavy runs in Ray actors (rollout engines, learner)."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from envs import Environment, make_env
from rlscale import advantages as adv_lib
from rlscale.config import RunConfig, save_config
from rlscale.learner import Batch, Learner
from rlscale.models import resolve_builtin
from rlscale.rollout import RolloutWorker, Sample
from rlscale.telemetry import MetricsWriter, load_metrics

log = logging.getLogger("rlscale")


def resolve_model(cfg: RunConfig, env: Environment) -> Path:
    if cfg.model.startswith("builtin:"):
        sft = cfg.builtin.model_dump()
        return resolve_builtin(
            cfg.model.removeprefix("builtin:"), env, cfg.env.kwargs, sft, cfg.trainer.seed, log=tqdm.write
        )
    return Path(cfg.model)


def init_ray(address: str | None, needed_cpus: float) -> None:
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    if address:
        ray.init(address=address, **kwargs)
    else:  # a local Ray sized so that every actor fits even on a 2-core machine
        ray.init(num_cpus=max(os.cpu_count() or 1, int(needed_cpus + 0.999)), **kwargs)


def _actor_env() -> dict:
    threads = str(os.environ.get("RLSCALE_THREADS", os.cpu_count() or 1))
    return {
        "env_vars": {
            "OMP_NUM_THREADS": threads,
            "VLLM_LOGGING_LEVEL": "ERROR",
            "TOKENIZERS_PARALLELISM": "false",
        }
    }


def _seed(*parts) -> int:
    """A seed that is the same in every process (Python's str hash is salted per process)."""
    return random.Random("/".join(map(str, parts))).getrandbits(31)


@dataclass
class Totals:
    """Cumulative counters, the x-axes of scaling curves."""

    flops: float = 0.0
    samples: int = 0
    tokens_generated: int = 0
    wall_s: float = 0.0
    verifier_errors: int = 0
    extra: dict = field(default_factory=dict)


class Orchestrator:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.env = make_env(cfg.env.name, **cfg.env.kwargs)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.run_dir / "config.yaml")
        self.model_dir = resolve_model(cfg, self.env)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        r, ray_cfg = cfg.rollout, cfg.ray
        init_ray(ray_cfg.address, r.workers * ray_cfg.worker_cpus + ray_cfg.learner_cpus)
        max_len = self._max_prompt_len() + r.max_tokens + 8
        self.workers = [
            RolloutWorker.options(num_cpus=ray_cfg.worker_cpus, runtime_env=_actor_env()).remote(
                str(self.model_dir),
                seed=cfg.trainer.seed + i,
                max_model_len=max_len,
                kv_cache_gib=r.kv_cache_gib,
            )
            for i in range(r.workers)
        ]
        self.learner = Learner.options(num_cpus=ray_cfg.learner_cpus, runtime_env=_actor_env()).remote(
            str(self.model_dir),
            algo=cfg.algo.model_dump(),
            learner=cfg.learner.model_dump(),
            seed=cfg.trainer.seed,
            max_tokens=r.max_tokens,
        )
        self.n_params = ray.get(self.learner.num_parameters.remote())
        self.totals = Totals()
        self.metrics = MetricsWriter(self.run_dir)

    def _max_prompt_len(self) -> int:
        rng = random.Random(0)
        return max(len(self.tokenizer.encode(self.env.sample(rng).prompt)) for _ in range(256)) * 2

    # -- one step ------------------------------------------------------------------------
    def _rollout(self, step: int, prompts: list[list[int]]) -> list[list[Sample]]:
        r, n = self.cfg.rollout, len(self.workers)
        seeds = [_seed(self.cfg.trainer.seed, "sample", step, i) for i in range(len(prompts))]
        bounds = [len(prompts) * k // n for k in range(n + 1)]
        futures = [
            w.generate.remote(
                prompts[a:b],
                n=r.group_size,
                temperature=r.temperature,
                top_p=r.top_p,
                max_tokens=r.max_tokens,
                seeds=seeds[a:b],
            )
            for w, a, b in zip(self.workers, bounds, bounds[1:])
        ]
        return [group for part in ray.get(futures) for group in part]

    def _verify(self, tasks, groups: list[list[Sample]]) -> tuple[torch.Tensor, torch.Tensor]:
        rewards = torch.zeros(len(tasks), self.cfg.rollout.group_size)
        correct = torch.zeros_like(rewards)
        for i, (task, group) in enumerate(zip(tasks, groups)):
            for j, sample in enumerate(group):
                text = self.tokenizer.decode(sample.token_ids, skip_special_tokens=True)
                try:
                    verdict = self.env.score(task, text)
                except Exception as err:  # a verifier crash scores 0 and is counted, never fatal
                    self.totals.verifier_errors += 1
                    log.warning("verifier %s raised %r; scoring 0", self.env.name, err)
                    continue
                rewards[i, j], correct[i, j] = verdict.score, float(verdict.correct)
        return rewards, correct

    def step(self, step: int) -> dict:
        cfg, algo = self.cfg, self.cfg.algo
        t0 = time.perf_counter()
        rng = random.Random(_seed(cfg.trainer.seed, "tasks", step))
        tasks = [self.env.sample(rng) for _ in range(cfg.rollout.prompts_per_step)]
        prompts = [self.tokenizer.encode(t.prompt) for t in tasks]
        groups = self._rollout(step, prompts)
        t1 = time.perf_counter()
        rewards, correct = self._verify(tasks, groups)
        t2 = time.perf_counter()

        advantages = adv_lib.ADVANTAGE_ESTIMATORS[algo.advantage](rewards)
        keep = torch.ones(len(tasks), dtype=torch.bool)
        if algo.dynamic_sampling:
            keep = ~adv_lib.zero_variance_groups(rewards)
        batch = Batch([], [], [], [], [])
        for i in keep.nonzero().flatten().tolist():
            for j, sample in enumerate(groups[i]):
                batch.prompts.append(prompts[i])
                batch.responses.append(sample.token_ids)
                batch.sampler_logprobs.append(sample.logprobs)
                batch.advantages.append(float(advantages[i, j]))
                batch.group_ids.append(i)
        stats = ray.get(self.learner.update.remote(batch)) if batch.prompts else {}
        t3 = time.perf_counter()
        weights = self.learner.weights.remote()
        ray.get([w.load_weights.remote(weights) for w in self.workers])
        t4 = time.perf_counter()
        return self._record(step, prompts, groups, rewards, correct, keep, stats, (t0, t1, t2, t3, t4))

    def _record(self, step, prompts, groups, rewards, correct, keep, stats, times) -> dict:
        t0, t1, t2, t3, t4 = times
        n, tot = self.n_params, self.totals
        lengths = torch.tensor([len(s.token_ids) for g in groups for s in g], dtype=torch.float32)
        truncated = [s.truncated for g in groups for s in g]
        prompt_tokens = sum(len(p) for p in prompts)
        generated = int(lengths.sum())
        trained = stats.get("tokens/trained", 0.0)
        passes = self.cfg.algo.ppo_epochs + (self.cfg.algo.kl_coef > 0) / 3
        # 2N FLOPs per token forward (prefill + decode), 6N per trained token, 2N per ref pass
        tot.flops += 2 * n * (prompt_tokens + generated) + 6 * n * trained * passes
        tot.samples += len(truncated)
        tot.tokens_generated += generated
        tot.wall_s += t4 - t0
        record = {
            "step": step,
            "time/wall_s": tot.wall_s,
            "compute/flops": tot.flops,
            "samples": tot.samples,
            "tokens/generated": tot.tokens_generated,
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()),
            "accuracy/mean": float(correct.mean()),
            "response_length/mean": float(lengths.mean()),
            "response_length/clip_ratio": sum(truncated) / len(truncated),
            "groups/zero_variance_fraction": float(adv_lib.zero_variance_groups(rewards).float().mean()),
            "batch/effective_samples": int(keep.sum()) * self.cfg.rollout.group_size,
            "verifier/errors": tot.verifier_errors,
            **stats,
            "time/rollout_s": t1 - t0,
            "time/verify_s": t2 - t1,
            "time/learn_s": t3 - t2,
            "time/sync_s": t4 - t3,
        }
        self.metrics.write(record)
        return record

    # -- checkpoints and outputs ---------------------------------------------------------
    def checkpoint(self, step: int) -> Path:
        root = self.run_dir / "checkpoints"
        root.mkdir(exist_ok=True)
        final = root / f"step_{step:06d}"
        tmp = root / f".tmp_step_{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        ray.get(self.learner.save.remote(str(tmp)))
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # atomic: a checkpoint directory is either whole or absent
        for old in sorted(root.glob("step_*"))[: -self.cfg.trainer.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def run(self) -> dict:
        cfg = self.cfg
        steps = cfg.trainer.steps
        bar = tqdm(range(1, steps + 1), desc=cfg.name, unit="step", dynamic_ncols=True)
        last_ckpt = None
        for step in bar:
            rec = self.step(step)
            bar.set_postfix(
                reward=f"{rec['reward/mean']:.3f}",
                acc=f"{rec['accuracy/mean']:.3f}",
                entropy=f"{rec.get('entropy/mean', float('nan')):.3f}",
                refresh=False,
            )
            if step % cfg.trainer.checkpoint_every == 0 or step == steps:
                last_ckpt = self.checkpoint(step)
        bar.close()
        self.metrics.close()
        return self.finish(last_ckpt)

    def finish(self, last_ckpt: Path | None) -> dict:
        from rlscale.plots import plot_run

        frame = load_metrics(self.run_dir)
        frame.to_parquet(self.run_dir / "metrics.parquet")
        plots = plot_run(self.run_dir, frame)
        tail = max(1, len(frame) // 10)
        summary = {
            "name": self.cfg.name,
            "steps": int(frame["step"].max()),
            "wall_s": float(frame["time/wall_s"].iloc[-1]),
            "reward_first_10pct": float(frame["reward/mean"].head(tail).mean()),
            "reward_last_10pct": float(frame["reward/mean"].tail(tail).mean()),
            "reward_best": float(frame["reward/mean"].max()),
            "accuracy_last_10pct": float(frame["accuracy/mean"].tail(tail).mean()),
            "entropy_last": float(frame["entropy/mean"].iloc[-1]),
            "compute_flops": float(frame["compute/flops"].iloc[-1]),
            "model": str(self.model_dir),
            "params": self.n_params,
            "run_dir": str(self.run_dir),
            "metrics": str(self.run_dir / "metrics.jsonl"),
            "checkpoint": str(last_ckpt) if last_ckpt else None,
            "plots": [str(p) for p in plots],
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def shutdown(self) -> None:
        for actor in [*self.workers, self.learner]:
            ray.kill(actor)


def run(cfg: RunConfig) -> dict:
    orch = Orchestrator(cfg)
    try:
        return orch.run()
    finally:
        orch.shutdown()
