"""Guess a hidden integer in [1, high]; after each guess the environment says higher or lower.

A multi-turn environment (gymnasium API, text in and out). The transcript reads
`guess 1-100:` `50` `\\nhigher:` `75` `\\nlower:` `62` `\\ncorrect`: the model sees the whole
transcript before each guess. Reward 1 when the number is found within `max_turns` guesses;
with `shaping` > 0, each guess that is consistent with everything said so far (inside the
interval still possible) earns `shaping`, so a policy gets credit for using the feedback
before it can find the number.
"""

from __future__ import annotations

import math
import random
import re

from rlscale.envs import register
from rlscale.envs.base import MultiTurnEnvironment, Task
from rlscale.verifiers import Verdict

_INTEGER = re.compile(r"-?\d{1,12}")


@register("guess_number")
class GuessNumber(MultiTurnEnvironment):
    description = "multi-turn: find a hidden integer in [1, high] from higher/lower answers"
    action_stop = ("\n",)  # every answer of the environment starts on a new line

    def __init__(self, high: int = 100, max_turns: int | None = None, shaping: float = 0.0):
        if high < 2 or (max_turns is not None and max_turns < 1) or not 0 <= shaping <= 1:
            raise ValueError("need high >= 2, max_turns >= 1, 0 <= shaping <= 1")
        self.high = high
        # enough for binary search by default, so a perfect player always wins
        self.max_turns = max_turns or math.ceil(math.log2(high + 1))
        self.shaping = shaping
        self.target = None

    def sample(self, rng: random.Random) -> Task:
        target = rng.randint(1, self.high)
        return Task(prompt=self._prompt(), answer=str(target), meta={"target": target})

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        task = (options or {}).get("task")
        self.target = task.meta["target"] if task else int(self.np_random.integers(1, self.high + 1))
        self.low_bound, self.high_bound, self.turns = 1, self.high, 0
        return self._prompt(), {"target": self.target}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.target is None:
            raise RuntimeError("call reset() before step()")
        self.turns += 1
        out_of_turns = self.turns >= self.max_turns
        match = _INTEGER.search(action)
        guess = int(match.group()) if match else None
        if guess == self.target:
            return "\ncorrect", 1.0, True, False, {"verdict": Verdict.right(f"found in {self.turns} turns")}
        consistent = guess is not None and self.low_bound <= guess <= self.high_bound
        reward = self.shaping if consistent else 0.0
        if guess is None:
            observation = "\nnot a number"
        elif guess < self.target:
            observation, self.low_bound = "\nhigher", max(self.low_bound, guess + 1)
        else:
            observation, self.high_bound = "\nlower", min(self.high_bound, guess - 1)
        if out_of_turns:
            verdict = Verdict.wrong(f"not found in {self.max_turns} turns (it was {self.target})")
            return observation, reward, True, False, {"verdict": verdict}
        return observation + ":", reward, False, False, {}

    def demonstration(self, task: Task) -> str:
        """Binary search: the transcript after the prompt of a play that always wins."""
        target, low, high, text = task.meta["target"], 1, self.high, ""
        while True:
            guess = (low + high) // 2
            if guess == target:
                return text + f"{guess}\ncorrect"
            low, high = (guess + 1, high) if guess < target else (low, guess - 1)
            text += f"{guess}\n{'higher' if guess < target else 'lower'}:"

    def _prompt(self) -> str:
        return f"guess 1-{self.high}:"
