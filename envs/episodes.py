"""Drive many episodes at once with a batched policy: single-turn and multi-turn alike.

`run_episodes(envs_and_tasks, policy_fn, max_turns)` resets one episode per (env, task) pair
(`rlscale.envs.base.as_episode`), then each round asks `policy_fn` for the next action of every
episode still running, in one batch (the orchestrator plugs its vLLM engines in here), and
steps them. A single-turn environment's episode ends after one action.

`policy_fn(transcripts) -> actions` gets the running episodes' `Transcript`s (`.text()` is the
whole context so far: prompt, then each action followed by the environment's answer) and
returns one action per transcript: a string, or `(string, payload)` where payload (e.g. token
ids and sampler log-probs) is kept on the turn for the learner.
"""

from __future__ import annotations

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


@dataclass
class Transcript:
    prompt: str
    turns: list[Turn] = field(default_factory=list)
    verdict: Verdict | None = None  # how the episode ended; None while it runs
    error: str | None = None  # the environment raised: reward 0, counted as a verifier error

    @property
    def done(self) -> bool:
        return self.verdict is not None

    @property
    def reward(self) -> float:
        """The episode's return: the sum of its per-turn rewards (0 if the environment raised)."""
        return 0.0 if self.error else sum(self.turn_rewards)

    @property
    def turn_rewards(self) -> list[float]:
        return [turn.reward for turn in self.turns]

    @property
    def correct(self) -> bool:
        return bool(self.verdict and self.verdict.correct)

    def text(self) -> str:
        return self.prompt + "".join(turn.action + turn.observation for turn in self.turns)


PolicyFn = Callable[[list[Transcript]], Sequence[str | tuple[str, Any]]]


def run_episodes(
    envs_and_tasks: Sequence[tuple[Environment | MultiTurnEnvironment, Task]],
    policy_fn: PolicyFn,
    max_turns: int,
) -> list[Transcript]:
    """Play every (env, task) to its end or to max_turns actions; transcripts in input order."""
    if max_turns < 1:
        raise ValueError("max_turns must be >= 1")
    episodes = [as_episode(env, task) for env, task in envs_and_tasks]
    transcripts = [Transcript(prompt=episode.reset()[0]) for episode in episodes]
    running = list(range(len(episodes)))
    for _ in range(max_turns):
        if not running:
            break
        actions = list(policy_fn([transcripts[i] for i in running]))
        if len(actions) != len(running):
            raise ValueError(f"policy_fn returned {len(actions)} actions for {len(running)} transcripts")
        for i, action in zip(running, actions):
            action, payload = action if isinstance(action, tuple) else (action, None)
            _step(episodes[i], transcripts[i], action, payload)
        running = [i for i in running if not transcripts[i].done]
    for i in running:  # still playing when the turns ran out
        transcripts[i].verdict = Verdict.wrong(f"no result within {max_turns} turns")
    return transcripts


def _step(episode, transcript: Transcript, action: str, payload: Any) -> None:
    try:
        observation, reward, terminated, truncated, info = episode.step(action)
    except Exception as error:  # environment code must not end the run; the episode scores 0
        transcript.turns.append(Turn(action, "", 0.0, payload))
        transcript.error = repr(error)
        transcript.verdict = Verdict.wrong(f"environment error: {error!r}")
        return
    transcript.turns.append(Turn(action, observation, float(reward), payload))
    if terminated or truncated:
        # environments should say how the episode went (info["verdict"]); else judge by the last reward
        transcript.verdict = info.get("verdict") or Verdict(
            min(max(float(reward), 0.0), 1.0),
            reward >= 1,
            "episode truncated" if truncated else "episode over",
        )
