"""Drive many episodes at once with a batched policy: single-turn and multi-turn alike.

`run_episodes(envs_and_tasks, policy_fn, max_turns)` resets one episode per (env, task) pair
(`rlscale.envs.base.as_episode`), then each round asks `policy_fn` for the next action of every
episode still running, in one batch (the collect stage plugs its vLLM engines in here), and
steps them. A single-turn environment's episode ends after one action.

`policy_fn(transcripts) -> actions` gets the running episodes' `Transcript`s (`.text()` is the
whole context so far: prompt, then each action followed by the environment's answer; `.index`
is the episode's position in the input) and returns one action per transcript: a string, or
`(string, payload)` where payload (e.g. token ids and sampler log-probs) is kept on the turn.

`step_fn(steps) -> results` steps the episodes: given (episode, action) pairs it returns, for
each, `(outcome, seconds)` where outcome is gymnasium's step tuple or the exception the step
raised (a `TimeoutError` means it ran out of time). The default steps them one after another;
the collect stage steps them in its verifier pool, each with its own time limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rlscale.envs.base import Environment, MultiTurnEnvironment, Task, as_episode
from rlscale.verifiers import Verdict


@dataclass
class Turn:
    action: str
    observation: str
    reward: float
    payload: Any = None
    seconds: float = 0.0  # the environment's time on this step, verification included


@dataclass
class Transcript:
    prompt: str
    index: int = 0  # position in run_episodes' input
    turns: list[Turn] = field(default_factory=list)
    verdict: Verdict | None = None  # how the episode ended; None while it runs
    error: str | None = None  # the environment raised or timed out: reward 0
    timed_out: bool = False

    @property
    def done(self) -> bool:
        return self.verdict is not None

    @property
    def reward(self) -> float:
        """The episode's return: the sum of its per-turn rewards (0 if the environment failed)."""
        return 0.0 if self.error else sum(self.turn_rewards)

    @property
    def turn_rewards(self) -> list[float]:
        return [turn.reward for turn in self.turns]

    @property
    def correct(self) -> bool:
        return bool(self.verdict and self.verdict.correct)

    @property
    def seconds(self) -> float:
        return sum(turn.seconds for turn in self.turns)

    def text(self) -> str:
        return self.prompt + "".join(turn.action + turn.observation for turn in self.turns)


PolicyFn = Callable[[list[Transcript]], Sequence[str | tuple[str, Any]]]
StepResult = tuple[tuple | BaseException, float]
StepFn = Callable[[list[tuple[Any, str]]], list[StepResult]]


def step_serially(steps: list[tuple[Any, str]]) -> list[StepResult]:
    """Each (episode, action) stepped in turn; an exception is returned, not raised."""
    results = []
    for episode, action in steps:
        start = time.perf_counter()
        try:
            outcome = episode.step(action)
        except Exception as error:  # environment code must not end the run
            outcome = error
        results.append((outcome, time.perf_counter() - start))
    return results


def run_episodes(
    envs_and_tasks: Sequence[tuple[Environment | MultiTurnEnvironment, Task]],
    policy_fn: PolicyFn,
    max_turns: int,
    *,
    step_fn: StepFn = step_serially,
) -> list[Transcript]:
    """Play every (env, task) to its end or to max_turns actions; transcripts in input order."""
    if max_turns < 1:
        raise ValueError("max_turns must be >= 1")
    episodes = [as_episode(env, task) for env, task in envs_and_tasks]
    transcripts = [Transcript(prompt=episode.reset()[0], index=i) for i, episode in enumerate(episodes)]
    running = list(range(len(episodes)))
    for _ in range(max_turns):
        if not running:
            break
        actions = list(policy_fn([transcripts[i] for i in running]))
        if len(actions) != len(running):
            raise ValueError(f"policy_fn returned {len(actions)} actions for {len(running)} transcripts")
        actions = [action if isinstance(action, tuple) else (action, None) for action in actions]
        results = step_fn([(episodes[i], action) for i, (action, _) in zip(running, actions)])
        for i, (action, payload), (outcome, seconds) in zip(running, actions, results):
            _record(transcripts[i], Turn(action, "", 0.0, payload, seconds), outcome)
        running = [i for i in running if not transcripts[i].done]
    for i in running:  # still playing when the turns ran out
        transcripts[i].verdict = Verdict.wrong(f"no result within {max_turns} turns")
    return transcripts


def _record(transcript: Transcript, turn: Turn, outcome: tuple | BaseException) -> None:
    transcript.turns.append(turn)
    if isinstance(outcome, BaseException):  # the episode scores 0
        transcript.timed_out = isinstance(outcome, TimeoutError)
        transcript.error = "timed out" if transcript.timed_out else repr(outcome)
        transcript.verdict = Verdict.wrong(f"environment error: {transcript.error}")
        return
    observation, reward, terminated, truncated, info = outcome
    turn.observation, turn.reward = observation, float(reward)
    if terminated or truncated:
        # environments should say how the episode went (info["verdict"]); else judge by the last reward
        transcript.verdict = info.get("verdict") or Verdict(
            min(max(float(reward), 0.0), 1.0),
            reward >= 1,
            "episode truncated" if truncated else "episode over",
        )
