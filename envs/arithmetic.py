"""Procedural integer arithmetic: `37+45=` -> `82`.

The built-in character-level models learn the bare form (`37+45=`, judged as one integer).
A pretrained chat model is asked in words (`prompt_template`, with `{expr}` = "37+45" and
`{spaced}` = "37 + 45") and answers in free text, so `scorer: math` judges its response with
`verifiers.math` (boxed answers, `<answer>` tags, "the answer is", LaTeX) instead.
"""

from __future__ import annotations

import random
import re

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import math as math_verifier

_INTEGER = re.compile(r"^\s*(-?\d{1,12})\s*$")
SCORERS = ("integer", "math")  # integer: the response is one integer; math: free-form, verifiers.math


@register("arithmetic")
class Arithmetic(Environment):
    description = "integer arithmetic with `terms` operands of up to `digits` digits"

    def __init__(
        self,
        digits: int = 2,
        terms: int = 2,
        ops: str = "+-",
        min_digits: int = 1,
        prompt_template: str = "{expr}=",
        scorer: str = "integer",
    ):
        if not 1 <= min_digits <= digits <= 6 or terms < 2 or not ops or set(ops) - set("+-*"):
            raise ValueError("need 1 <= min_digits <= digits <= 6, terms >= 2, ops within '+-*'")
        if "{expr}" not in prompt_template and "{spaced}" not in prompt_template:
            raise ValueError("prompt_template must contain {expr} or {spaced}")
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, not {scorer!r}")
        self.digits, self.terms, self.ops, self.min_digits = digits, terms, ops, min_digits
        self.prompt_template, self.scorer = prompt_template, scorer

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
        spaced = re.sub(r"([+\-*])", r" \1 ", expr)
        prompt = self.prompt_template.replace("{expr}", expr).replace("{spaced}", spaced)
        return Task(prompt=prompt, answer=str(value))

    def score(self, task: Task, response: str) -> Verdict:
        if self.scorer == "math":
            return math_verifier.verify(response, task.answer)
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
