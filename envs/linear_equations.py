"""Procedural linear equations in one unknown: `Solve for x: 3x+5=20` -> `\\boxed{5}`.

Knobs: `max_coef` bounds the coefficients; `both_sides` puts x on both sides
(`3x+5=x-7`); `fractions` allows solutions that are fractions (answered as `7/3` or
`\\frac{7}{3}`). Judged by the math verifier, so any equivalent form of the answer counts.
"""

from __future__ import annotations

import random
from fractions import Fraction

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import math as math_verifier


@register("linear_equations")
class LinearEquations(Environment):
    description = "solve a linear equation in x; answer in \\boxed{} (math verifier)"

    def __init__(self, max_coef: int = 9, both_sides: bool = False, fractions: bool = False):
        if max_coef < 2:
            raise ValueError("max_coef must be >= 2")
        self.max_coef, self.both_sides, self.fractions = max_coef, both_sides, fractions

    def sample(self, rng: random.Random) -> Task:
        def coefficient(zero_ok: bool = True) -> int:
            values = [n for n in range(-self.max_coef, self.max_coef + 1) if zero_ok or n != 0]
            return rng.choice(values)

        a, c = coefficient(zero_ok=False), coefficient(zero_ok=False) if self.both_sides else 0
        while a == c:  # the x terms must not cancel
            c = coefficient(zero_ok=False)
        b = coefficient()
        if self.fractions:  # any right-hand side: x = (d - b) / (a - c) is often a fraction
            d = coefficient()
            x = Fraction(d - b, a - c)
        else:  # pick the solution first so that it is an integer
            x = Fraction(coefficient())
            d = (a - c) * int(x) + b
        equation = f"{_linear(a, b)}={_linear(c, d)}"
        return Task(prompt=f"Solve for x: {equation}\n", answer=str(x), meta={"equation": equation})

    def score(self, task: Task, response: str) -> Verdict:
        return math_verifier.verify(response, task.answer)

    def demonstration(self, task: Task) -> str:
        return f"\\boxed{{{task.answer}}}"


def _linear(slope: int, constant: int) -> str:
    """`3x+5`, `-x`, `x-2`, `7`: slope*x + constant written as people write it."""
    if slope == 0:
        return str(constant)
    text = {1: "x", -1: "-x"}.get(slope, f"{slope}x")
    return text + (f"{constant:+d}" if constant else "")
