"""The orchestrator: the training loop and its cadence, wiring the stages together.

One step: collect (tasks -> generate -> verify -> grouped batch) -> learner update -> weight sync
-> telemetry record. Around the steps: evaluation, live refits, checkpoints, early stop.
Components do not reference the orchestrator; it builds them and passes each what it needs.

Off-policy (`trainer.off_policy_steps=k`, PipelineRL-style): the engines take the weights from
before an update and sample a batch k steps ahead while the learner trains, so a batch is trained
at most k updates after the weights that sampled it (`Lookahead`). The batches sampled ahead are
checkpointed with the learner, so a resumed off-policy run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import random
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import ray
from tqdm import tqdm
from transformers import AutoTokenizer

from rlscale import accounting, checkpoint, cluster, learner_group, run_dir
from rlscale import metric_names as M
from rlscale.collect import Collected, Collector, derived_seed
from rlscale.config import RunConfig
from rlscale.envs import make_env
from rlscale.envs.base import MultiTurnEnvironment
from rlscale.errors import RunInterrupted, RunStopped
from rlscale.evaluation import Evaluator
from rlscale.models import resolve_model
from rlscale.phases import StartupPhases
from rlscale.prompts import PromptRenderer
from rlscale.rollout import EnginePool, RolloutActor
from rlscale.telemetry import MetricsWriter, Sinks, load_metrics, step_record
from rlscale.verifiers import code as code_verifier

log = logging.getLogger("rlscale")

AHEAD_FILE = "sampled_ahead.pkl"  # in a checkpoint: the batches an off-policy run sampled ahead


class Lookahead:
    """The batches of a k-step off-policy run sampled ahead, and their staleness bookkeeping.

    The batch trained at step s sampled with the weights after v updates has staleness
    (s - 1) - v: the updates between those weights and the ones it trains. Before each update the
    queue is topped up to hold k batches; in steady state the engines hold the weights before
    step s's update (s - 1 updates) and sample step s + k's batch: staleness k, never more.
    """

    def __init__(self, k: int, last_step: int):
        self.k, self.last_step = k, last_step
        self.queue: list[tuple[int, Collected]] = []  # (the step that trains it, the batch)

    def next_step(self, step: int) -> int:
        return self.queue[-1][0] + 1 if self.queue else step

    def top_up(self, collect, step: int, engine_updates: int) -> list[Collected]:
        """Sample (`collect(target, staleness=...)`) until the queue holds step .. step + k - 1
        (not past the last step) with the engines' weights after `engine_updates` updates."""
        if self.queue and self.queue[0][0] != step:  # not the batches this run needs (a changed config)
            self.queue.clear()
        sampled = []
        while len(self.queue) < self.k and self.next_step(step) <= self.last_step:
            target = self.next_step(step)
            got = collect(target, staleness=target - 1 - engine_updates)
            self.queue.append((target, got))
            sampled.append(got)
        return sampled

    def pop(self, step: int) -> Collected:
        target, got = self.queue.pop(0)
        assert target == step, f"off-policy queue out of order: step {step} got step {target}'s batch"
        assert 0 <= got.staleness <= self.k, f"step {step}: staleness {got.staleness} > k={self.k}"
        return got

    def stats(self, trained: Collected) -> dict[str, float]:
        """Staleness of the batches in flight (the one trained now and those queued)."""
        lags = [trained.staleness] + [c.staleness for _, c in self.queue]
        hist = {M.staleness_hist(lag): float(lags.count(lag)) for lag in range(self.k + 1)}
        return {M.STALENESS_MAX: float(max(lags)), **hist}

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(self.queue, f)

    def restore(self, path: Path, step: int) -> None:
        """The queue a checkpoint holds, keeping the batches this run can still train from `step`."""
        if not path.is_file():
            return
        with open(path, "rb") as f:
            queue = pickle.load(f)
        for target, got in queue:
            if target != self.next_step(step) or got.staleness > self.k or len(self.queue) == self.k:
                break
            if target <= self.last_step:
                self.queue.append((target, got))


class Orchestrator:
    def __init__(self, cfg: RunConfig, *, resume: bool = False):
        self.cfg, self.run_dir = cfg, cfg.run_dir
        phases = StartupPhases(log=tqdm.write)  # a line per phase, with its duration, before the bar
        with phases.phase(f"environment {cfg.env.name}"):
            self.env = make_env(cfg.env.name, **cfg.env.kwargs)
        if self.env.uses_sandbox:  # fail closed before any work: model-written code needs the sandbox
            try:
                code_verifier.require_sandbox(cfg.verify.allow_unsandboxed)
            except RuntimeError as err:
                raise RunStopped(str(err)) from None
        self.totals, start_from = run_dir.prepare(cfg, resume=resume, log=tqdm.write)
        self.evaluator = Evaluator(self.env, cfg) if cfg.eval.every else None
        held_out = self.evaluator.held_out_prompts() if self.evaluator is not None else set()
        with phases.phase(f"model {cfg.model} (build or load)"):
            self.model_dir = resolve_model(cfg, self.env, held_out=held_out, log=tqdm.write)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            self.renderer = PromptRenderer(cfg.prompt, self.tokenizer, self.model_dir)
        self._show_prompt()
        with phases.phase("Ray", announce=False):  # cluster.start says what it starts or joins
            cluster.start(cfg)
        policy_dir = str(start_from or self.model_dir)  # where the current weights live on disk
        # the learner and the engines start at once; each is timed until it is ready
        # world_size 1: one LearnerActor; more: a LearnerGroup of FSDP ranks behind the same calls
        phases.begin("learner")
        self.learner = learner_group.start(
            cfg,
            policy_dir,
            algo=cfg.algo,
            learner=cfg.learner,
            seed=cfg.trainer.seed,
            max_tokens=cfg.rollout.max_tokens,
            off_policy=bool(cfg.trainer.off_policy_steps),
            base_dir=str(self.model_dir),  # LoRA: the frozen base a checkpoint's adapters go on
        )
        turns = cfg.rollout.max_turns if isinstance(self.env, MultiTurnEnvironment) else 1
        max_model_len = self._max_prompt_len() + turns * (cfg.rollout.max_tokens + 64) + 8
        engines = f"{cfg.rollout.workers} rollout engine{'s' * (cfg.rollout.workers > 1)} (vLLM)"
        phases.begin(engines)
        self.engines = EnginePool(
            lambda index: RolloutActor.options(**cluster.engine_options(cfg)).remote(
                policy_dir,
                seed=cfg.trainer.seed + index,
                max_model_len=max_model_len,
                kv_cache_gib=cfg.rollout.kv_cache_gib,
                tensor_parallel_size=cfg.rollout.tensor_parallel_size,
                sleep_mode=cfg.rollout.colocate,
            ),
            cfg.rollout.workers,
            max_restarts=cfg.trainer.max_worker_restarts,
            current_weights=lambda: self.learner.weights.remote(),
            on_restart=self._count_restart,
            colocated=cfg.rollout.colocate,
        )
        self.n_params = ray.get(self.learner.num_parameters.remote())
        self.n_lora = ray.get(self.learner.lora_parameters.remote())
        phases.end("learner")
        self.engines.wait_ready()  # not in step 1's time, nor in the bar's ETA
        phases.end(engines)
        phases.done(f"training to step {cfg.trainer.steps}")
        self.collector = Collector(self.env, self.renderer, self.tokenizer, self.engines.generate, cfg=cfg)
        self.collector.held_out = held_out
        self.metrics = MetricsWriter(self.run_dir)
        self.sinks = Sinks(
            cfg.telemetry.sinks, self.run_dir, cfg.name, cfg.model_dump(mode="json"), tqdm.write
        )
        self.stop_reason: str | None = None
        # off-policy: the batches sampled ahead; the engines' weights are after this many updates
        self.ahead = Lookahead(cfg.trainer.off_policy_steps, cfg.trainer.steps)
        self._engine_updates = self.totals.step
        if start_from is not None and cfg.trainer.off_policy_steps:
            self.ahead.restore(Path(start_from) / AHEAD_FILE, self.totals.step + 1)

    def _max_prompt_len(self) -> int:
        rng = random.Random(0)
        return max(len(self.renderer.tokens(self.env.sample(rng).prompt)) for _ in range(256)) * 2

    def _show_prompt(self) -> None:
        """The first task exactly as the model sees it: printed, and kept in the run directory."""
        task = self.env.sample(random.Random(derived_seed(self.cfg.trainer.seed, "tasks", 1)))
        text = self.renderer.text(task.prompt)
        (self.run_dir / "prompt_example.txt").write_text(text)
        tqdm.write(
            f"prompt template {self.renderer.template!r}; the first task as the model sees it:\n{text}"
        )

    def _count_restart(self, index: int, err: Exception) -> None:
        self.totals.worker_restarts += 1
        log.warning("rollout engine %d died (%s); restarting it with the current weights", index, err)
        tqdm.write(f"rollout engine {index} died; restarting it with the current weights")

    # -- one step ------------------------------------------------------------------------
    def step(self, step: int, extra: dict | None = None, *, final_eval: bool = False) -> dict:
        """One update. Times are what the step waited for each part (they add up to the step)."""
        t0 = time.perf_counter()
        if self.cfg.trainer.off_policy_steps:
            got, stats, times = self._step_off_policy(step)
        else:
            got = self.collector.collect(step)
            t_learn = time.perf_counter()
            with self.engines.asleep():  # colocated: vLLM frees the GPU for the update
                stats = ray.get(self.learner.update.remote(got.batch)) if got.batch.groups else {}
            t_sync = time.perf_counter()
            sync_s = self.engines.sync(self.learner.weights.remote())
            times = {
                "rollout": got.rollout_s,
                "verify": got.verify_s,
                "learn": t_sync - t_learn,
                "sync": sync_s,
            }
        self._count_skips(step, stats.get(M.SKIPPED_IN_UPDATE, 0.0))
        times["total"] = time.perf_counter() - t0
        record = step_record(
            step,
            self.totals,
            got,
            {**(extra or {}), **stats},
            times,
            algo=self.cfg.algo,
            n_params=self.n_params,
            lora_params=self.n_lora,
        )
        if final_eval:  # after the last update: the end point of the curve
            record.update(self.evaluate(step))
        self.metrics.write(record)
        self.sinks.write(record)
        return record

    def _step_off_policy(self, step: int) -> tuple[Collected, dict, dict]:
        """The engines take the weights from before this update and sample and verify the batch
        k steps ahead while the learner trains on this one (`Lookahead`)."""
        sampled = self.ahead.top_up(self.collector.collect, step, self._engine_updates)  # fresh start
        got = self.ahead.pop(step)
        weights = self.learner.weights.remote()  # queued before the update: the older weights
        update = self.learner.update.remote(got.batch) if got.batch.groups else None
        sync_s = self.engines.sync(weights)
        self._engine_updates = step - 1
        sampled += self.ahead.top_up(self.collector.collect, step + 1, self._engine_updates)
        t_learn = time.perf_counter()
        stats = ray.get(update) if update else {}
        stats = {**stats, **self.ahead.stats(got)}
        times = {
            "rollout": sum(c.rollout_s for c in sampled),
            "verify": sum(c.verify_s for c in sampled),
            "learn": time.perf_counter() - t_learn,  # the part of the update not hidden
            "sync": sync_s,
        }
        return got, stats, times

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

    def evaluate(self, step: int) -> dict[str, float]:
        """Evaluate the engines' current weights (synced first if they lag the learner)."""
        start = time.perf_counter()
        if self.cfg.trainer.off_policy_steps and self._engine_updates < self.totals.step:  # they lag
            self.engines.sync(self.learner.weights.remote())
            self._engine_updates = self.totals.step
        metrics, tokens = self.evaluator.evaluate(self.collector, step)
        self.totals.eval_flops += accounting.generation_flops(self.n_params, tokens)
        seconds = time.perf_counter() - start
        tqdm.write(
            f"eval after {self.totals.step} updates: "
            + "  ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in metrics.items())
            + f"  ({seconds:.1f} s)"
        )
        return {
            **metrics,
            M.EVAL_TRAIN_FLOPS: self.totals.flops,
            M.EVAL_FLOPS: self.totals.eval_flops,
            M.EVAL_S: seconds,
        }

    # -- the loop ------------------------------------------------------------------------
    def checkpoint(self, step: int) -> Path:
        def save_files(tmp: Path) -> None:
            ray.get(self.learner.save.remote(str(tmp)))
            self.tokenizer.save_pretrained(tmp)
            if self.ahead.queue:  # off-policy: what was sampled ahead, so a resume is exact
                self.ahead.save(tmp / AHEAD_FILE)

        state = {"totals": asdict(self.totals), "config": self.cfg.model_dump(mode="json")}
        return checkpoint.write(
            self.run_dir / "checkpoints", step, save_files, state, self.cfg.trainer.keep_checkpoints
        )

    def run(self) -> dict:
        with _stop_on_signals() as interrupted:
            return self._run(interrupted)

    def _run(self, interrupted: list[str]) -> dict:
        cfg, steps = self.cfg, self.cfg.trainer.steps
        first = self.totals.step + 1
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
            final_eval = bool(cfg.eval.every and cfg.eval.final and step == steps)
            # the last step is evaluated after its update; before it only if it is also the first
            extra = self.evaluate(step) if cfg.eval.due(step) and not (final_eval and step > 1) else {}
            if cfg.scaling.refit_every and step > 1 and (step - 1) % cfg.scaling.refit_every == 0:
                extra.update(self._refit())
            rec = self.step(step, extra=extra, final_eval=final_eval)
            bar.set_postfix(
                reward=f"{rec[M.REWARD]:.3f}",
                acc=f"{rec[M.ACCURACY]:.3f}",
                entropy=f"{rec.get(M.ENTROPY, float('nan')):.3f}",
                refresh=False,
            )
            if step % cfg.trainer.checkpoint_every == 0 or step == steps or self.stop_reason or interrupted:
                last_ckpt = self.checkpoint(step)
            if interrupted:
                bar.close()
                self.metrics.close()
                self.sinks.close()
                raise RunInterrupted(self.run_dir, step, interrupted[0])
            if self.stop_reason:
                tqdm.write(f"stopping early at step {step}: {self.stop_reason}")
                break
        bar.close()
        self.metrics.close()
        self.sinks.close()
        return run_dir.finish(
            cfg,
            model_dir=self.model_dir,
            n_params=self.n_params,
            last_ckpt=last_ckpt,
            stopped=self.stop_reason,
        )

    def _refit(self) -> dict[str, float]:
        """The run fits its own curves so far (rlscale.live_refit.refit_run): logs the fit,
        prints the entropy collapse warning, sets the early stop."""
        from rlscale.live_refit import refit_run

        outcome = refit_run(load_metrics(self.run_dir), self.cfg.scaling, self.cfg.trainer.steps)
        if outcome.warning:
            tqdm.write(outcome.warning)
        if outcome.stop_reason:
            self.stop_reason = outcome.stop_reason
        return outcome.metrics

    def shutdown(self) -> None:
        self.engines.shutdown()
        learner_group.kill(self.learner)


@contextlib.contextmanager
def _stop_on_signals():
    """The first SIGINT/SIGTERM lets the step in flight finish (the loop then checkpoints and
    stops); a second one stops at once. Yields the list the signal's name is put in."""
    interrupted: list[str] = []

    def handler(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signal.Signals(signum).name)
        tqdm.write(f"{interrupted[0]}: finishing this step, then checkpointing (again to stop at once)")

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield interrupted
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(cfg: RunConfig, *, resume: bool = False) -> dict:
    orch = Orchestrator(cfg, resume=resume)
    try:
        return orch.run()
    finally:
        orch.shutdown()
