"""The driver loop: sample prompts -> generate groups -> verify -> advantages -> update ->
sync weights -> record. Everything heavy runs in Ray actors (rollout engines, learner)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from rlscale import advantages as adv_lib
from rlscale import checkpoint
from rlscale.config import RunConfig, save_config
from rlscale.envs import Environment, make_env
from rlscale.envs.base import MultiTurnEnvironment
from rlscale.errors import RunStopped
from rlscale.evaluation import pass_at_k_metrics
from rlscale.learner import Batch, Learner
from rlscale.models import resolve_builtin
from rlscale.rollout import RolloutWorker, Sample
from rlscale.telemetry import MetricsWriter, Sinks, load_metrics, truncate_metrics
from rlscale.verifiers import format as format_verifier

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


def actor_threads(cfg: RunConfig) -> int:
    """Torch threads per actor: actors busy at the same time split the cores (oversubscribed
    OpenMP threads spin against each other); the engine and a synchronous learner take turns."""
    if "RLSCALE_THREADS" in os.environ:
        return int(os.environ["RLSCALE_THREADS"])
    busy_at_once = cfg.rollout.workers + (1 if cfg.trainer.off_policy_steps else 0)
    return max(1, (os.cpu_count() or 1) // busy_at_once)


def _actor_env(threads: int) -> dict:
    return {
        "env_vars": {
            "OMP_NUM_THREADS": str(threads),
            "VLLM_LOGGING_LEVEL": "ERROR",
            "TOKENIZERS_PARALLELISM": "false",
        }
    }


@dataclass
class Scores:
    """What verification said of each response, [prompts, group] each."""

    rewards: torch.Tensor
    correct: torch.Tensor
    formatted: torch.Tensor  # R1 format score
    errors: torch.Tensor  # 1 where the verifier raised
    timeouts: torch.Tensor  # 1 where it ran out of time
    seconds: torch.Tensor  # verification time

    @staticmethod
    def cat(parts: list[Scores]) -> Scores:
        return Scores(*(torch.cat([getattr(p, f) for p in parts]) for f in Scores.__dataclass_fields__))


@dataclass
class Collected:
    """One step's groups, their scores and the learner's batch, with how long they took."""

    tasks: list
    prompts: list[list[int]]
    groups: list[list[Sample]]
    scores: Scores
    keep: torch.Tensor  # groups that go to the learner (dynamic sampling drops some)
    batch: Batch
    staleness: int  # updates between the weights that sampled it and those it trains
    rollout_s: float
    verify_s: float


def _timed(score, task, text):
    start = time.perf_counter()
    return score(task, text), time.perf_counter() - start


def _per_env_metrics(tasks, sc: Scores) -> dict[str, float]:
    """Per environment of a mixture: reward, accuracy, format, verifier errors/timeouts/time."""
    labels = [t.meta.get("env") for t in tasks]
    out = {}
    for label in sorted({lab for lab in labels if lab}):
        rows = torch.tensor([lab == label for lab in labels])
        out[f"env/{label}/reward"] = float(sc.rewards[rows].mean())
        out[f"env/{label}/accuracy"] = float(sc.correct[rows].mean())
        out[f"env/{label}/format"] = float(sc.formatted[rows].mean())
        out[f"env/{label}/verifier_errors"] = float(sc.errors[rows].sum())
        out[f"env/{label}/verifier_timeouts"] = float(sc.timeouts[rows].sum())
        out[f"env/{label}/verify_s"] = float(sc.seconds[rows].sum())
        out[f"env/{label}/fraction"] = float(rows.float().mean())
    return out


def _seed(*parts) -> int:
    """A seed that is the same in every process (Python's str hash is salted per process)."""
    return random.Random("/".join(map(str, parts))).getrandbits(31)


@dataclass
class Totals:
    """Cumulative counters (the x-axes of scaling curves) and fault counts; checkpointed."""

    step: int = 0
    flops: float = 0.0
    samples: int = 0
    tokens_generated: int = 0
    wall_s: float = 0.0
    verifier_errors: int = 0
    verifier_timeouts: int = 0
    worker_restarts: int = 0
    skipped_updates: int = 0
    consecutive_skips: int = 0
    flops_by_part: dict = field(default_factory=dict)


def _devices() -> int:
    """Accelerators if there are any, else CPU cores: the unit of `compute/device_hours`."""
    return torch.cuda.device_count() or os.cpu_count() or 1


class Orchestrator:
    def __init__(self, cfg: RunConfig, *, resume: bool = False):
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.env = make_env(cfg.env.name, **cfg.env.kwargs)
        if isinstance(self.env, MultiTurnEnvironment) and cfg.eval.every:
            raise ValueError("eval.every: periodic pass@k evaluation is for single-turn environments")
        self.totals = Totals()
        start_from = self._prepare_run_dir(resume)
        self.model_dir = resolve_model(cfg, self.env)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        r, ray_cfg = cfg.rollout, cfg.ray
        needed = r.workers * ray_cfg.worker_cpus + ray_cfg.learner_cpus
        init_ray(ray_cfg.address, needed)
        free = ray.available_resources().get("CPU", 0.0)
        if free < needed:  # actors that cannot be placed would wait forever
            raise RunStopped(
                f"Ray has {free:g} free CPUs; this run's actors need {needed:g} "
                "(rollout.workers x ray.worker_cpus + ray.learner_cpus). Lower them or add nodes."
            )
        turns = r.max_turns if isinstance(self.env, MultiTurnEnvironment) else 1
        self.max_model_len = self._max_prompt_len() + turns * (r.max_tokens + 64) + 8
        self.policy_dir = start_from or self.model_dir  # where the current weights live on disk
        self.workers = [self._start_worker(i) for i in range(r.workers)]
        self.learner = Learner.options(
            num_cpus=ray_cfg.learner_cpus, runtime_env=_actor_env(actor_threads(cfg))
        ).remote(
            str(self.policy_dir),
            algo=cfg.algo.model_dump(),
            learner=cfg.learner.model_dump(),
            seed=cfg.trainer.seed,
            max_tokens=r.max_tokens,
            off_policy=bool(cfg.trainer.off_policy_steps),
        )
        self.n_params = ray.get(self.learner.num_parameters.remote())
        self.metrics = MetricsWriter(self.run_dir)
        self.sinks = Sinks(
            cfg.telemetry.sinks, self.run_dir, cfg.name, cfg.model_dump(mode="json"), tqdm.write
        )
        self.verify_pool = cf.ThreadPoolExecutor(cfg.verify.workers, thread_name_prefix="verify")
        self.stop_reason: str | None = None
        self._next: Collected | None = None  # off-policy: the next step's batch, sampled ahead

    def _prepare_run_dir(self, resume: bool) -> Path | None:
        """Fresh run: refuse to overwrite one. Resume: the newest valid checkpoint, metrics cut to it."""
        has_metrics = (self.run_dir / "metrics.jsonl").is_file()
        if has_metrics and not resume:
            raise FileExistsError(
                f"{self.run_dir} already holds a run; continue it with `rlscale run --resume "
                f"{self.run_dir}` or choose another `name`/`output_dir`"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.yaml")
        if not resume:
            return None
        ckpt = checkpoint.latest_valid(self.run_dir / "checkpoints", log=tqdm.write)
        if ckpt is None:
            tqdm.write(f"{self.run_dir}: no usable checkpoint; starting again from step 0")
            truncate_metrics(self.run_dir, 0)
            return None
        self.totals = Totals(**checkpoint.driver_state(ckpt)["totals"])
        dropped = truncate_metrics(self.run_dir, self.totals.step)
        tqdm.write(
            f"resuming {self.run_dir} from {ckpt.name} (step {self.totals.step}); "
            f"{dropped} metric records after it will be recorded again"
        )
        return ckpt

    def _start_worker(self, index: int):
        return RolloutWorker.options(
            num_cpus=self.cfg.ray.worker_cpus, runtime_env=_actor_env(actor_threads(self.cfg))
        ).remote(
            str(self.policy_dir),
            seed=self.cfg.trainer.seed + index,
            max_model_len=self.max_model_len,
            kv_cache_gib=self.cfg.rollout.kv_cache_gib,
        )

    def _max_prompt_len(self) -> int:
        rng = random.Random(0)
        return max(len(self.tokenizer.encode(self.env.sample(rng).prompt)) for _ in range(256)) * 2

    # -- one step ------------------------------------------------------------------------
    def _rollout(self, step: int, prompts: list[list[int]], refill: int = 0) -> list[list[Sample]]:
        seeds = [_seed(self.cfg.trainer.seed, "sample", step, refill, i) for i in range(len(prompts))]
        return self._generate(prompts, self.cfg.rollout.group_size, seeds)

    def _generate(
        self,
        prompts: list[list[int]],
        group: int,
        seeds: list[int],
        stop_token_ids: list[int] | None = None,
        sampling: dict | None = None,
    ) -> list[list[Sample]]:
        """`group` samples per prompt, prompts split over the engines; dead engines are restarted.

        `sampling` overrides the rollout's temperature/top_p (evaluation samples its own way)."""
        r, n = self.cfg.rollout, len(self.workers)
        sampling = {"temperature": r.temperature, "top_p": r.top_p, **(sampling or {})}
        bounds = [len(prompts) * k // n for k in range(n + 1)]
        parts: list = [None] * n
        for attempt in range(self.cfg.trainer.max_worker_restarts + 1):
            pending = {
                i: self.workers[i].generate.remote(
                    prompts[bounds[i] : bounds[i + 1]],
                    n=group,
                    max_tokens=r.max_tokens,
                    **sampling,
                    seeds=seeds[bounds[i] : bounds[i + 1]],
                    stop_token_ids=stop_token_ids,
                )
                for i in range(n)
                if parts[i] is None
            }
            for i, future in pending.items():
                try:
                    parts[i] = ray.get(future)
                except ray.exceptions.RayActorError as err:
                    if attempt == self.cfg.trainer.max_worker_restarts:
                        msg = f"rollout worker {i} died {attempt + 1} times in a row"
                        raise RunStopped(msg) from err
                    self._restart_worker(i, err)
        return [group for part in parts for group in part]

    def _play(self, step: int, tasks, prompts: list[list[int]], refill: int):
        """Multi-turn: G episodes per task; each turn, every running episode acts in one batch.

        Token ids are kept per episode (actions as sampled, then the environment's answers), so
        the learner trains on exactly what was sampled; the environment's tokens are masked out.
        Environment time is part of the rollout time here.
        """
        from rlscale.envs.episodes import run_episodes

        G, tok = self.cfg.rollout.group_size, self.tokenizer
        pairs = [(self.env, task) for task in tasks for _ in range(G)]
        # an action ends where the environment's reply would start (a stop string of one token)
        stops = [ids[0] for ids in (tok.encode(s) for s in self.env.action_stop) if len(ids) == 1]
        samples = [Sample([], [], False, []) for _ in pairs]
        index: dict[int, int] = {}
        turn = [0]

        def policy(transcripts):
            if not index:  # the first call sees every episode, in order
                index.update({id(tr): k for k, tr in enumerate(transcripts)})
            ks = [index[id(tr)] for tr in transcripts]
            for tr, k in zip(transcripts, ks):
                if tr.turns:  # the environment's answer to the last action
                    obs = tok.encode(tr.turns[-1].observation)
                    samples[k].token_ids += obs
                    samples[k].logprobs += [0.0] * len(obs)
                    samples[k].loss_mask += [0.0] * len(obs)
            contexts = [prompts[k // G] + samples[k].token_ids for k in ks]
            seeds = [_seed(self.cfg.trainer.seed, "play", step, refill, turn[0], k) for k in ks]
            turn[0] += 1
            actions = []
            for k, (out,) in zip(ks, self._generate(contexts, 1, seeds, stops or None)):
                samples[k].token_ids += out.token_ids
                samples[k].logprobs += out.logprobs
                samples[k].loss_mask += [1.0] * len(out.token_ids)
                samples[k].truncated |= out.truncated
                actions.append(tok.decode(out.token_ids, skip_special_tokens=True))
            return actions

        transcripts = run_episodes(pairs, policy, self.cfg.rollout.max_turns)
        self.totals.verifier_errors += sum(tr.error is not None for tr in transcripts)
        rewards = torch.tensor([tr.reward for tr in transcripts], dtype=torch.float32).view(-1, G)
        correct = torch.tensor([float(tr.correct) for tr in transcripts]).view(-1, G)
        errors = torch.tensor([float(tr.error is not None) for tr in transcripts]).view(-1, G)
        zeros = torch.zeros_like(rewards)
        scores = Scores(rewards, correct, zeros, errors, zeros, zeros)
        return [samples[k : k + G] for k in range(0, len(samples), G)], scores, 0.0

    def _restart_worker(self, index: int, err: Exception) -> None:
        """A dead engine is replaced and given the learner's current weights; the step retries."""
        self.totals.worker_restarts += 1
        log.warning("rollout worker %d died (%s); restarting it with the current weights", index, err)
        tqdm.write(f"rollout worker {index} died; restarting it with the current weights")
        self.workers[index] = self._start_worker(index)
        ray.get(self.workers[index].load_weights.remote(self.learner.weights.remote()))

    def _verify(self, tasks, groups: list[list[Sample]], group_size: int | None = None) -> Scores:
        """Score every response in a thread pool; a crash or a timeout scores 0 and is counted."""
        shape = (len(tasks), group_size or self.cfg.rollout.group_size)
        sc = Scores(*(torch.zeros(shape) for _ in range(6)))
        futures = {}
        for i, (task, group) in enumerate(zip(tasks, groups)):
            for j, sample in enumerate(group):
                text = self.tokenizer.decode(sample.token_ids, skip_special_tokens=True)
                sc.formatted[i, j] = format_verifier.verify(text).score
                futures[self.verify_pool.submit(_timed, self.env.score, task, text)] = (i, j)
        deadline = time.monotonic() + self.cfg.verify.timeout_s
        for future, (i, j) in futures.items():
            try:
                verdict, sc.seconds[i, j] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except cf.TimeoutError:
                self.totals.verifier_timeouts += 1
                sc.timeouts[i, j] = 1.0
                continue
            except Exception as err:  # a verifier crash scores 0 and is counted, never fatal
                self.totals.verifier_errors += 1
                sc.errors[i, j] = 1.0
                log.warning("verifier %s raised %r; scoring 0", self.env.name, err)
                continue
            sc.rewards[i, j], sc.correct[i, j] = verdict.score, float(verdict.correct)
        sc.rewards += self.cfg.env.format_weight * sc.formatted
        return sc

    def _collect(self, step: int, staleness: int = 0) -> Collected:
        """Sample, generate and verify step `step`'s groups (with DAPO refills) into a batch."""
        cfg, algo, P = self.cfg, self.cfg.algo, self.cfg.rollout.prompts_per_step
        rng = random.Random(_seed(cfg.trainer.seed, "tasks", step))
        tasks, prompts, groups, scores = [], [], [], []
        rollout_s = verify_s = 0.0
        for refill in range(cfg.rollout.max_refill_rounds + 1):
            # DAPO dynamic sampling: groups with one reward for all carry no signal; draw more
            need = (
                P
                if refill == 0
                else P - int((~adv_lib.zero_variance_groups(Scores.cat(scores).rewards)).sum())
            )
            new_tasks = [self.env.sample(rng) for _ in range(need)]
            new_prompts = [self.tokenizer.encode(t.prompt) for t in new_tasks]
            start = time.perf_counter()
            if isinstance(self.env, MultiTurnEnvironment):
                new_groups, new_scores, verify_time = self._play(step, new_tasks, new_prompts, refill)
                rollout_s, verify_s = (
                    rollout_s + time.perf_counter() - start - verify_time,
                    verify_s + verify_time,
                )
            else:
                new_groups = self._rollout(step, new_prompts, refill)
                mid = time.perf_counter()
                new_scores = self._verify(new_tasks, new_groups)
                rollout_s, verify_s = rollout_s + mid - start, verify_s + time.perf_counter() - mid
            tasks, prompts, groups = tasks + new_tasks, prompts + new_prompts, groups + new_groups
            scores.append(new_scores)
            kept = int((~adv_lib.zero_variance_groups(Scores.cat(scores).rewards)).sum())
            if not algo.dynamic_sampling or kept >= P:
                break
        sc = Scores.cat(scores)
        keep = torch.ones(len(tasks), dtype=torch.bool)
        if algo.dynamic_sampling:
            keep = ~adv_lib.zero_variance_groups(sc.rewards)
            keep &= keep.cumsum(0) <= P  # at most P groups per update
        batch = Batch([], [], [], [], [], [])
        for i in keep.nonzero().flatten().tolist():
            for j, sample in enumerate(groups[i]):
                batch.prompts.append(prompts[i])
                batch.responses.append(sample.token_ids)
                batch.sampler_logprobs.append(sample.logprobs)
                batch.rewards.append(float(sc.rewards[i, j]))
                batch.group_ids.append(i)
                batch.loss_masks.append(sample.loss_mask or [1.0] * len(sample.token_ids))
        return Collected(tasks, prompts, groups, sc, keep, batch, staleness, rollout_s, verify_s)

    def _sync(self, weights) -> float:
        """The learner's weights (an object ref) into every engine; the seconds waited."""
        start = time.perf_counter()
        ray.get([w.load_weights.remote(weights) for w in self.workers])
        return time.perf_counter() - start

    def step(self, step: int, extra: dict | None = None) -> dict:
        """One update. Times are what the step waited for each part (they add up to the step).

        Off-policy (`trainer.off_policy_steps=1`) the engines take the weights from before this
        update and sample and verify the next step's batch while the learner trains on this one.
        """
        t0 = time.perf_counter()
        if self.cfg.trainer.off_policy_steps:
            fresh = self._next is None  # first step, or just resumed: nothing was sampled ahead
            got, self._next = self._next or self._collect(step), None
            weights = self.learner.weights.remote()  # queued before the update: the older weights
            update = self.learner.update.remote(got.batch) if got.batch.prompts else None
            sync_s = self._sync(weights)
            ahead = self._collect(step + 1, staleness=1) if step < self.cfg.trainer.steps else None
            t_learn = time.perf_counter()
            stats = ray.get(update) if update else {}
            self._next = ahead
            sampled = ([got] if fresh else []) + ([ahead] if ahead else [])
            times = {
                "rollout": sum(c.rollout_s for c in sampled),
                "verify": sum(c.verify_s for c in sampled),
                "learn": time.perf_counter() - t_learn,  # the part of the update not hidden
                "sync": sync_s,
            }
        else:
            got = self._collect(step)
            t_learn = time.perf_counter()
            stats = ray.get(self.learner.update.remote(got.batch)) if got.batch.prompts else {}
            t_sync = time.perf_counter()
            sync_s = self._sync(self.learner.weights.remote())
            times = {
                "rollout": got.rollout_s,
                "verify": got.verify_s,
                "learn": t_sync - t_learn,
                "sync": sync_s,
            }
        self._count_skips(step, stats.get("learner/skipped_updates", 0.0))
        times["total"] = time.perf_counter() - t0
        sc = got.scores
        extra = {
            **(extra or {}),
            "reward/format": float(sc.formatted.mean()),
            "async/staleness": got.staleness,
        }
        extra.update(_per_env_metrics(got.tasks, sc))
        return self._record(
            step, got.prompts, got.groups, sc.rewards, sc.correct, got.keep, {**stats, **extra}, times
        )

    def evaluate(self, step: int) -> dict[str, float]:
        """pass@k of the current policy on a fixed task set, n samples per task."""
        if self.cfg.trainer.off_policy_steps and step > 1:  # the engines lag one update: catch up
            self._sync(self.learner.weights.remote())
        ev = self.cfg.eval
        rng = random.Random(_seed(self.cfg.trainer.seed, "eval"))
        tasks = [self.env.sample(rng) for _ in range(ev.tasks)]
        prompts = [self.tokenizer.encode(t.prompt) for t in tasks]
        seeds = [_seed(self.cfg.trainer.seed, "eval", step, i) for i in range(len(prompts))]
        groups = self._generate(
            prompts, ev.samples, seeds, sampling={"temperature": ev.temperature, "top_p": 1.0}
        )
        correct = self._verify(tasks, groups, group_size=ev.samples).correct
        return pass_at_k_metrics(correct.sum(1).long().tolist(), ev.samples)

    def _count_skips(self, step: int, skipped: float) -> None:
        tot = self.totals
        tot.skipped_updates += int(skipped)
        tot.consecutive_skips = tot.consecutive_skips + 1 if skipped else 0
        if tot.consecutive_skips >= self.cfg.trainer.max_consecutive_skips:
            self.checkpoint(step)
            raise RunStopped(
                f"step {step}: {tot.consecutive_skips} updates in a row had NaN/inf loss or gradients "
                f"and were skipped; stopping. Checkpoint written to {self.run_dir / 'checkpoints'}. "
                "Lower learner.lr or check the rewards."
            )

    def _flops(self, n: int, generation_tokens: int, trained: float) -> dict[str, float]:
        """2N FLOPs per token forward, 6N per token forward+backward (Kaplan et al. 2020)."""
        algo = self.cfg.algo
        updates = algo.ppo_epochs
        old_logp_pass = (
            algo.ppo_epochs > 1 or algo.mini_batches > 1 or (algo.kl_in_reward and algo.kl_coef > 0)
        )
        ref_passes = 0 if not algo.kl_coef else (1 if algo.kl_in_reward else updates)
        critic = 0.0
        if algo.critic:
            trunk = 2 * n * trained * (1 + 3 * updates)  # old values + training, if a separate model
            critic = trunk if algo.critic_mode == "separate" else 0.0
        return {
            "generation": 2 * n * generation_tokens,
            "training": 6 * n * trained * updates + 2 * n * trained * old_logp_pass,
            "reference": 2 * n * trained * ref_passes,
            "critic": critic,
        }

    def _record(self, step, prompts, groups, rewards, correct, keep, stats, times) -> dict:
        n, tot = self.n_params, self.totals
        lengths = torch.tensor([len(s.token_ids) for g in groups for s in g], dtype=torch.float32)
        truncated = [s.truncated for g in groups for s in g]
        prompt_tokens = sum(len(p) for p in prompts)
        generated = int(lengths.sum())
        trained = stats.get("tokens/trained", 0.0)
        for part, flops in self._flops(n, prompt_tokens + generated, trained).items():
            tot.flops_by_part[part] = tot.flops_by_part.get(part, 0.0) + flops
            tot.flops += flops
        tot.samples += len(truncated)
        tot.tokens_generated += generated
        tot.wall_s += times["total"]
        tot.step = step
        record = {
            "step": step,
            "time/wall_s": tot.wall_s,
            "compute/flops": tot.flops,
            **{f"compute/flops_{part}": v for part, v in tot.flops_by_part.items()},
            "compute/device_hours": tot.wall_s * _devices() / 3600,
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
            "verifier/timeouts": tot.verifier_timeouts,
            "faults/worker_restarts": tot.worker_restarts,
            "faults/skipped_updates": tot.skipped_updates,
            **stats,
            **{f"time/{k}_s": v for k, v in times.items() if k != "total"},
        }
        self.metrics.write(record)
        self.sinks.write(record)
        return record

    # -- checkpoints and outputs ---------------------------------------------------------
    def checkpoint(self, step: int) -> Path:
        def save_files(tmp: Path) -> None:
            ray.get(self.learner.save.remote(str(tmp)))
            self.tokenizer.save_pretrained(tmp)

        state = {"totals": asdict(self.totals), "config": self.cfg.model_dump(mode="json")}
        keep = self.cfg.trainer.keep_checkpoints
        return checkpoint.write(self.run_dir / "checkpoints", step, save_files, state, keep)

    def run(self) -> dict:
        cfg = self.cfg
        steps, first = cfg.trainer.steps, self.totals.step + 1
        bar = tqdm(
            range(first, steps + 1),
            desc=cfg.name,
            unit="step",
            dynamic_ncols=True,
            initial=first - 1,
            total=steps,
        )
        last_ckpt = checkpoint.latest_valid(self.run_dir / "checkpoints", log=lambda _: None)
        for step in bar:
            extra = self.evaluate(step) if cfg.eval.every and (step - 1) % cfg.eval.every == 0 else {}
            if cfg.scaling.refit_every and step > 1 and (step - 1) % cfg.scaling.refit_every == 0:
                extra.update(self._refit(step))
            rec = self.step(step, extra=extra)
            bar.set_postfix(
                reward=f"{rec['reward/mean']:.3f}",
                acc=f"{rec['accuracy/mean']:.3f}",
                entropy=f"{rec.get('entropy/mean', float('nan')):.3f}",
                refresh=False,
            )
            if step % cfg.trainer.checkpoint_every == 0 or step == steps or self.stop_reason:
                last_ckpt = self.checkpoint(step)
            if self.stop_reason:
                tqdm.write(f"stopping early at step {step}: {self.stop_reason}")
                break
        bar.close()
        self.metrics.close()
        self.sinks.close()
        return self.finish(last_ckpt)

    def _refit(self, step: int) -> dict[str, float]:
        """The run fits its own curves so far: predicted asymptote, final reward, entropy collapse."""
        from rlscale.fitting import live_refit

        sc, steps = self.cfg.scaling, self.cfg.trainer.steps
        fit = live_refit(load_metrics(self.run_dir), x=sc.x, planned_steps=steps)
        collapse = fit.get("fit/entropy_collapse_step", float("nan"))
        if collapse == collapse and collapse < steps:  # not NaN, and before the planned end
            tqdm.write(f"warning: entropy is on course to collapse by step {int(collapse)} of {steps}")
        gain = fit.get("fit/predicted_gain", float("nan"))
        if sc.early_stop_min_gain is not None and fit.get("fit/ok") == 1.0 and gain < sc.early_stop_min_gain:
            self.stop_reason = f"predicted remaining gain {gain:.4f} < scaling.early_stop_min_gain"
        return fit

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
            "stopped_early": self.stop_reason,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def shutdown(self) -> None:
        self.verify_pool.shutdown(wait=False, cancel_futures=True)
        for actor in [*self.workers, self.learner]:
            ray.kill(actor)


def run(cfg: RunConfig, *, resume: bool = False) -> dict:
    orch = Orchestrator(cfg, resume=resume)
    try:
        return orch.run()
    finally:
        orch.shutdown()
