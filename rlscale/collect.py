"""Collect: tasks -> generate -> verify -> dynamic sampling -> one grouped batch.

One loop drives single- and multi-turn environments alike (`envs.episodes.run_episodes`): every
turn, each running episode's context goes to the generator in one batch, and the episodes are
stepped in a thread pool, each step (a single-turn episode's step is its verification) with its
own time limit counted from when it starts. The first turn asks for a group's G samples in one
request (its prompt is shared), later turns one sample per episode.

The generator is any `generate(prompts, *, n, sampling, seeds) -> list[list[Sample]]` (the
engine pool on Ray; a plain function in the tests), so this stage runs without Ray.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlscale import advantages as adv_lib
from rlscale import metric_names as M
from rlscale.batch import Batch, Group, Sample
from rlscale.envs.base import sample_outside
from rlscale.envs.episodes import StepResult, Transcript, run_episodes
from rlscale.rollout import Sampling
from rlscale.verifiers import format as format_verifier

Generate = Callable[..., list[list[Sample]]]


def derived_seed(*parts) -> int:
    """A seed that is the same in every process (Python's str hash is salted per process)."""
    return random.Random("/".join(map(str, parts))).getrandbits(31)


@dataclass
class Scores:
    """What verification said of each response, [prompts, group] each."""

    rewards: torch.Tensor
    correct: torch.Tensor
    formatted: torch.Tensor  # R1 format score
    errors: torch.Tensor  # 1 where the verifier (or environment) raised
    timeouts: torch.Tensor  # 1 where it ran out of time
    seconds: torch.Tensor  # verification time
    hack_suspects: torch.Tensor  # 1 where the verdict flagged a reward-hacking surface

    @staticmethod
    def cat(parts: list[Scores]) -> Scores:
        return Scores(*(torch.cat([getattr(p, f) for p in parts]) for f in Scores.__dataclass_fields__))


def per_env_metrics(tasks, sc: Scores) -> dict[str, float]:
    """Per environment of a mixture: reward, accuracy, format, verifier errors/timeouts/time."""
    labels = [t.meta.get("env") for t in tasks]
    out = {}
    for label in sorted({lab for lab in labels if lab}):
        rows = torch.tensor([lab == label for lab in labels])
        values = {
            "reward": sc.rewards[rows].mean(),
            "accuracy": sc.correct[rows].mean(),
            "format": sc.formatted[rows].mean(),
            "verifier_errors": sc.errors[rows].sum(),
            "verifier_timeouts": sc.timeouts[rows].sum(),
            "hack_suspects": sc.hack_suspects[rows].sum(),
            "verify_s": sc.seconds[rows].sum(),
            "fraction": rows.float().mean(),
        }
        out.update({M.env_metric(label, name): float(v) for name, v in values.items()})
    return out


def step_bounded(steps: list[tuple], *, workers: int, timeout_s: float) -> list[StepResult]:
    """Step each (episode, action), at most `workers` at once, each in its own daemon thread.

    A step that runs past `timeout_s` from its own start (not from when it was queued) comes
    back as a TimeoutError and gives up its slot: its thread is left to finish unseen, so a hung
    verifier delays nothing queued behind it by more than the time limit."""
    results: list = [None] * len(steps)
    finished = threading.Condition()
    started: dict[int, float] = {}  # running steps: index -> start time

    def run(k: int, episode, action: str) -> None:
        start = time.monotonic()
        try:
            outcome = episode.step(action)
        except Exception as error:  # environment code must not end the run
            outcome = error
        with finished:
            if results[k] is None:  # not already given up as timed out
                results[k] = (outcome, time.monotonic() - start)
                started.pop(k, None)
            finished.notify()

    queue = list(range(len(steps)))[::-1]
    with finished:
        while queue or started:
            while queue and len(started) < workers:
                k = queue.pop()
                started[k] = time.monotonic()
                threading.Thread(target=run, args=(k, *steps[k]), daemon=True).start()
            now = time.monotonic()
            for k in [k for k, t in started.items() if now - t >= timeout_s]:
                results[k] = (TimeoutError(f"over {timeout_s:g} s"), timeout_s)
                del started[k]
            if started and not (queue and len(started) < workers):
                finished.wait(timeout=max(0.0, min(started.values()) + timeout_s - now))
    return results


@dataclass
class Collected:
    """One step's groups, their scores and the learner's batch, with how long they took."""

    tasks: list
    groups: list[Group]  # every group sampled, kept or not
    scores: Scores
    keep: torch.Tensor  # groups that go to the learner (dynamic sampling drops some)
    batch: Batch
    staleness: int  # updates between the weights that sampled it and those it trains
    rollout_s: float
    verify_s: float


class Collector:
    """Turns a step number into a verified, grouped batch (with DAPO refills)."""

    def __init__(
        self,
        env,
        renderer,
        tokenizer,
        generate: Generate,
        *,
        cfg,
    ):
        """`renderer.tokens(prompt)` applies the prompt template (rlscale.prompts); `cfg` is the RunConfig."""
        self.env, self.renderer, self.tokenizer, self.generate = env, renderer, tokenizer, generate
        self.cfg = cfg
        self.held_out: set[str] = set()  # repr of prompts training never draws (evaluation's)
        r = cfg.rollout
        self.sampling = Sampling(
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_tokens,
            stop=env.action_stop,
            stop_token_ids=renderer.stop_token_ids,
        )

    def collect(self, step: int, staleness: int = 0) -> Collected:
        """Sample, generate and verify step `step`'s groups (with DAPO refills) into a batch."""
        cfg, P = self.cfg, self.cfg.rollout.prompts_per_step
        rng = random.Random(derived_seed(cfg.trainer.seed, "tasks", step))
        tasks, groups, scores = [], [], []
        rollout_s = verify_s = 0.0
        for refill in range(cfg.rollout.max_refill_rounds + 1):
            # DAPO dynamic sampling: groups with one reward for all carry no signal; draw more
            kept = (
                0 if refill == 0 else int((~adv_lib.zero_variance_groups(Scores.cat(scores).rewards)).sum())
            )
            new_tasks = [sample_outside(self.env, rng, self.held_out) for _ in range(P - kept)]
            seeds = (cfg.trainer.seed, "sample", step, refill)
            new_groups, new_scores, seconds = self.play(
                new_tasks, cfg.rollout.group_size, seeds, self.sampling
            )
            rollout_s, verify_s = rollout_s + seconds[0], verify_s + seconds[1]
            tasks, groups = tasks + new_tasks, groups + new_groups
            scores.append(new_scores)
            kept = int((~adv_lib.zero_variance_groups(Scores.cat(scores).rewards)).sum())
            if not cfg.algo.dynamic_sampling or kept >= P:
                break
        sc = Scores.cat(scores)
        keep = torch.ones(len(tasks), dtype=torch.bool)
        if cfg.algo.dynamic_sampling:
            keep = ~adv_lib.zero_variance_groups(sc.rewards)
            keep &= keep.cumsum(0) <= P  # at most P groups per update
        batch = Batch([groups[i] for i in keep.nonzero().flatten().tolist()])
        return Collected(tasks, groups, sc, keep, batch, staleness, rollout_s, verify_s)

    def play(
        self, tasks: list, group_size: int, seed_parts: tuple, sampling: Sampling
    ) -> tuple[list[Group], Scores, tuple[float, float]]:
        """G episodes per task to their ends: groups with rewards, scores, (rollout_s, verify_s).

        Token ids are kept per episode (actions as sampled, then the environment's answers,
        masked out of the loss), so the learner trains on exactly what was sampled."""
        G, tok = group_size, self.tokenizer
        prompts = [self.renderer.tokens(t.prompt) for t in tasks]
        samples = [Sample([], [], False) for _ in range(len(tasks) * G)]
        turn = 0

        def policy(transcripts: list[Transcript]) -> list[tuple[str, None]]:
            nonlocal turn
            ks = [tr.index for tr in transcripts]
            for tr in transcripts:
                if tr.turns:  # the environment's answer to the last action
                    samples[tr.index].extend(tok.encode(tr.turns[-1].observation), trained=False)
            if turn == 0:  # every episode at its prompt: one request of G samples per group
                seeds = [derived_seed(*seed_parts, i) for i in range(len(tasks))]
                outs = [
                    o for group in self.generate(prompts, n=G, sampling=sampling, seeds=seeds) for o in group
                ]
            else:
                contexts = [prompts[k // G] + samples[k].token_ids for k in ks]
                seeds = [derived_seed(*seed_parts, turn, k) for k in ks]
                outs = [g[0] for g in self.generate(contexts, n=1, sampling=sampling, seeds=seeds)]
            turn += 1
            for k, out in zip(ks, outs):
                samples[k].extend(out.token_ids, out.logprobs, trained=True)
                samples[k].truncated |= out.truncated
            return [(tok.decode(out.token_ids, skip_special_tokens=True), None) for out in outs]

        verify_s = 0.0

        def step(steps):
            nonlocal verify_s
            start = time.perf_counter()
            results = step_bounded(
                steps, workers=self.cfg.verify.workers, timeout_s=self.cfg.verify.timeout_s
            )
            verify_s += time.perf_counter() - start
            return results

        start = time.perf_counter()
        pairs = [(self.env, task) for task in tasks for _ in range(G)]
        transcripts = run_episodes(pairs, policy, self.cfg.rollout.max_turns, step_fn=step)
        rollout_s = time.perf_counter() - start - verify_s
        scores = self._scores(transcripts, G)
        groups = [
            Group(prompts[i], samples[i * G : (i + 1) * G], scores.rewards[i].tolist())
            for i in range(len(tasks))
        ]
        return groups, scores, (rollout_s, verify_s)

    def _scores(self, transcripts: list[Transcript], G: int) -> Scores:
        def column(values) -> torch.Tensor:
            return torch.tensor([float(v) for v in values], dtype=torch.float32).view(-1, G)

        actions = ["".join(turn.action for turn in tr.turns) for tr in transcripts]
        formatted = column(format_verifier.verify(text).score for text in actions)
        sc = Scores(
            rewards=column(tr.reward for tr in transcripts),
            correct=column(tr.correct for tr in transcripts),
            formatted=formatted,
            errors=column(tr.error is not None and not tr.timed_out for tr in transcripts),
            timeouts=column(tr.timed_out for tr in transcripts),
            seconds=column(tr.seconds for tr in transcripts),
            hack_suspects=column(bool(tr.verdict and tr.verdict.flags) for tr in transcripts),
        )
        sc.rewards += self.cfg.env.format_weight * sc.formatted
        return sc
