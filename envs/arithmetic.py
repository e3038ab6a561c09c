"""Procedural integer arithmetic: `37+45=` -> `82`."""

from __future__ import annotations

import random
import re

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict

_INTEGER = re.compile(r"^\s*(-?\d{1,12})\s*$")


@register("arithmetic")
class Arithmetic(Environment):
    description = "integer arithmetic with `terms` operands of up to `digits` digits"

    def __init__(self, digits: int = 2, terms: int = 2, ops: str = "+-", min_digits: int = 1):
        if not 1 <= min_digits <= digits <= 6 or terms < 2 or not ops or set(ops) - set("+-*"):
            raise ValueError("need 1 <= min_digits <= digits <= 6, terms >= 2, ops within '+-*'")
        self.digits, self.terms, self.ops, self.min_digits = digits, terms, ops, min_digits

    def sample(self, rng: random.Random) -> Task:
        nums = [
            rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)
            for n in (rng.randint(self.min_digits, self.digits) for _ in range(self.terms))
        ]
        expr = str(nums[0])
        for n in nums[1:]:
            expr += rng.choice(self.ops) + str(n)
        # operands are non-negative literals joined by + - *: Python's int grammar gives the value
        value = _evaluate(expr)
        return Task(prompt=f"{expr}=", answer=str(value))

    def score(self, task: Task, response: str) -> Verdict:
        match = _INTEGER.match(response)
        if not match:
            return Verdict.wrong("not a single integer")
        if int(match.group(1)) == int(task.answer):
            return Verdict.right()
        return Verdict.wrong(f"expected {task.answer}, got {match.group(1)}")


def _evaluate(expr: str) -> int:
    """Evaluate our own generated `a+b*c-d` (never model output) with precedence."""
    total, term, sign = 0, None, 1
    for tok in re.findall(r"\d+|[+\-*]", expr):
        if tok.isdigit():
            term = int(tok) if term is None else term * int(tok)
        elif tok == "*":
            continue
        else:
            total += sign * term
            term, sign = None, 1 if tok == "+" else -1
    return total + sign * term
