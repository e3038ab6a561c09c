"""The environment interface the orchestrator drives.

Single-turn: `Environment` (a prompt, one response, a verdict). Multi-turn: `MultiTurnEnvironment`,
gymnasium's API with text observations and actions. `as_episode(env, task)` turns either into a
gymnasium episode, so one loop (rlscale.envs.episodes.run_episodes) drives both.
"""

from __future__ import annotations

import copy
import random
import string
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from rlscale.verifiers import Verdict


@dataclass(frozen=True)
class Task:
    # text, or chat messages [{"role": "system"|"user"|..., "content": ...}]; the run's
    # `prompt.template` decides how it becomes tokens (rlscale.prompts)
    prompt: str | list[dict]
    answer: str
    meta: dict = field(default_factory=dict)


class Environment:
    """A task source plus a rule-based verifier.

    `sample` draws one task from a seeded generator; `score` judges a response and never
    raises on model output; `demonstration` is a correct response, used to warm-start the
    built-in models with a short supervised pass.
    """

    name: str = ""
    description: str = ""
    action_stop: tuple[str, ...] = ()  # text that ends a response besides the model's EOS
    uses_sandbox: bool = False  # runs model-written code: the run refuses to start unsandboxed

    def sample(self, rng: random.Random) -> Task:
        raise NotImplementedError

    def score(self, task: Task, response: str) -> Verdict:
        raise NotImplementedError

    def demonstration(self, task: Task) -> str:
        return task.answer


# Text in, text out: gymnasium only checks these spaces in its env checker.
TEXT_SPACE = gymnasium.spaces.Text(max_length=1 << 20, min_length=0, charset=string.printable)


class MultiTurnEnvironment(gymnasium.Env):
    """A text game played over several turns, with gymnasium's API.

    `reset(seed=..., options={"task": task}) -> (observation, info)`: the first observation is
    the prompt. `step(action) -> (observation, reward, terminated, truncated, info)`; the info
    of the step that ends the episode holds "verdict", a Verdict saying whether it succeeded.
    `sample(rng)` draws a Task describing an episode's hidden setup, so that a group of
    episodes can replay the same one (GRPO compares answers to the same prompt);
    `demonstration(task)` is the text after the prompt of a good play (actions and
    observations), used like Environment.demonstration to warm-start the built-in models.
    """

    name: str = ""
    description: str = ""
    # where an action ends: the policy stops generating there (e.g. vLLM's `stop`), so the model
    # does not go on to write the environment's reply itself
    action_stop: tuple[str, ...] = ()
    uses_sandbox: bool = False  # runs model-written code: the run refuses to start unsandboxed
    metadata = {"render_modes": []}
    observation_space = TEXT_SPACE
    action_space = TEXT_SPACE

    def sample(self, rng: random.Random) -> Task:
        raise NotImplementedError

    def demonstration(self, task: Task) -> str:
        raise NotImplementedError


class SingleTurnEpisode(MultiTurnEnvironment):
    """One task of a single-turn Environment as a one-step episode: prompt, response, verdict."""

    def __init__(self, env: Environment, task: Task):
        self.env, self.task = env, task

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        return self.task.prompt, {"task": self.task}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        verdict = self.env.score(self.task, action)
        return "", verdict.score, True, False, {"verdict": verdict}


class _ReplayTask(gymnasium.Wrapper):
    """Resets the wrapped environment to one task, whatever options reset() is given."""

    def __init__(self, env: MultiTurnEnvironment, task: Task):
        super().__init__(env)
        self.task = task

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        return self.env.reset(seed=seed, options={**(options or {}), "task": self.task})


def sample_outside(env: Environment, rng: random.Random, held_out) -> Task:
    """The next task whose prompt (repr) is not in `held_out` (eval.held_out: the evaluation's);
    bounded, since a small task space may hold nothing else."""
    for _ in range(1000):
        task = env.sample(rng)
        if repr(task.prompt) not in held_out:
            return task
    raise RuntimeError(
        "eval.held_out: 1,000 draws in a row were evaluation tasks; the task space is too small"
    )


def as_episode(env: Environment | MultiTurnEnvironment, task: Task) -> gymnasium.Env:
    """A fresh gymnasium episode of `task` (from env.sample): one step for a single-turn env."""
    if isinstance(env, MultiTurnEnvironment):
        return _ReplayTask(copy.deepcopy(env), task)  # its own copy: episodes run side by side
    return SingleTurnEpisode(env, task)
