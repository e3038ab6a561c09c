"""The environment interface the orchestrator drives."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from verifiers import Verdict


@dataclass(frozen=True)
class Task:
    prompt: str
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

    def sample(self, rng: random.Random) -> Task:
        raise NotImplementedError

    def score(self, task: Task, response: str) -> Verdict:
        raise NotImplementedError

    def demonstration(self, task: Task) -> str:
        return task.answer
