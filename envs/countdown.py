"""Countdown: reach the target from the given numbers, each used at most once."""

from __future__ import annotations

import ast
import random
from collections import Counter
from fractions import Fraction

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict

_MAX_EXPR_CHARS = 200
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}


@register("countdown")
class Countdown(Environment):
    description = "reach a target with + - * / from `numbers` numbers, each at most once"

    def __init__(self, numbers: int = 3, max_number: int = 10, ops: str = "+-*"):
        if not 2 <= numbers <= 6 or max_number < 1 or not ops or set(ops) - set("+-*/"):
            raise ValueError("need 2 <= numbers <= 6, max_number >= 1, ops within '+-*/'")
        self.numbers, self.max_number, self.ops = numbers, max_number, ops

    def sample(self, rng: random.Random) -> Task:
        nums = [rng.randint(1, self.max_number) for _ in range(self.numbers)]
        while True:  # a left-to-right expression over a shuffled subset gives a reachable target
            used = rng.sample(nums, rng.randint(2, len(nums)))
            expr = str(used[0])
            for n in used[1:]:
                expr = (
                    f"({expr}){rng.choice(self.ops)}{n}"
                    if "/" in self.ops
                    else (f"{expr}{rng.choice(self.ops)}{n}")
                )
            value = evaluate(expr)
            if value is not None and value.denominator == 1 and value >= 0:
                break
        prompt = " ".join(map(str, nums)) + f" to {value}:"
        return Task(prompt=prompt, answer=expr, meta={"numbers": nums, "target": int(value)})

    def score(self, task: Task, response: str) -> Verdict:
        expr = response.strip()
        value = evaluate(expr)
        if value is None:
            return Verdict.wrong("not an arithmetic expression over integers")
        used = Counter(_literals(expr))
        if used - Counter(task.meta["numbers"]):
            return Verdict.wrong("uses a number not given, or one more often than given")
        if value != task.meta["target"]:
            return Verdict.wrong(f"evaluates to {value}, target {task.meta['target']}")
        return Verdict.right()


def _literals(expr: str) -> list[int]:
    return [n.value for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Constant)]


def evaluate(expr: str) -> Fraction | None:
    """Exact value of + - * / over integer literals, or None. Walks the AST; never evals."""
    if not expr or len(expr) > _MAX_EXPR_CHARS:
        return None
    try:
        return _eval_node(ast.parse(expr, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, TypeError):
        return None


def _eval_node(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval_node(node.left), _eval_node(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _eval_node(node.left) / _eval_node(node.right)
    raise ValueError("unsupported expression")
