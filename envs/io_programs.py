"""Procedural stdin/stdout programs: the classic form of competitive-programming tasks, small
enough for the wind tunnel's character-level models.

The prompt names a small task with one worked example (`# sum of the numbers` `# in: 3 9 4`
`# out: 16`); the response is a Python program. It runs in the code sandbox once per hidden
test case (stdin in, stdout compared outside the sandbox, whitespace-normalised), each case with
its own time limit; it is correct when every case passes (rlscale.verifiers.code.verify_io).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import code as code_verifier


def _numbers(rng: random.Random) -> str:
    return " ".join(str(rng.randint(-20, 99)) for _ in range(rng.randint(2, 4)))


def _pair(rng: random.Random) -> str:
    return f"{rng.randint(0, 99)} {rng.randint(0, 99)}"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7)))


def _words(rng: random.Random) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(2, 4)))


def _ints(line: str) -> list[int]:
    return [int(token) for token in line.split()]


# solution programs: one line each, no whitespace needed, short enough for the built-in models
SUM = "print(sum(map(int,input().split())))"
MAX = "print(max(map(int,input().split())))"
MIN = "print(min(map(int,input().split())))"
SORT = "print(*sorted(map(int,input().split())))"
PRODUCT = "a,b=map(int,input().split());print(a*b)"
# name -> (description, input generator, reference solution on the input line, a solution program)
KINDS: dict[str, tuple[str, Callable[[random.Random], str], Callable[[str], str], str]] = {
    "sum": ("sum of the numbers", _numbers, lambda s: str(sum(_ints(s))), SUM),
    "max": ("largest number", _numbers, lambda s: str(max(_ints(s))), MAX),
    "min": ("smallest number", _numbers, lambda s: str(min(_ints(s))), MIN),
    "sort": ("numbers sorted", _numbers, lambda s: " ".join(map(str, sorted(_ints(s)))), SORT),
    "product": ("a times b", _pair, lambda s: str(_ints(s)[0] * _ints(s)[1]), PRODUCT),
    "reverse": ("the word reversed", _word, lambda s: s[::-1], "print(input()[::-1])"),
    "upper": ("the words in capitals", _words, lambda s: s.upper(), "print(input().upper())"),
    "count": ("how many words", _words, lambda s: str(len(s.split())), "print(len(input().split()))"),
}

_FENCE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.DOTALL)


@register("io_programs")
class IOPrograms(Environment):
    description = "write a Python program from stdin to stdout; hidden cases run in the code sandbox"
    uses_sandbox = True  # the orchestrator checks the sandbox (code.require_sandbox) before a run

    def __init__(self, kinds: list[str] | None = None, cases: int = 3, timeout_s: float = 5.0):
        """kinds: a subset of KINDS (default all); cases: hidden test cases per task, each run
        in its own sandbox within timeout_s."""
        self.kinds = list(kinds or KINDS)
        if set(self.kinds) - set(KINDS) or not self.kinds or cases < 1:
            raise ValueError(f"kinds must be a non-empty subset of {sorted(KINDS)} and cases >= 1")
        self.cases, self.timeout_s = cases, timeout_s

    def sample(self, rng: random.Random) -> Task:
        kind = rng.choice(self.kinds)
        description, make_input, solve, program = KINDS[kind]
        example = make_input(rng)
        inputs = [make_input(rng) for _ in range(self.cases)]
        prompt = f"# {description}\n# in: {example}\n# out: {solve(example)}\n"
        return Task(prompt, program, {"kind": kind, "cases": [(line, solve(line)) for line in inputs]})

    def score(self, task: Task, response: str) -> Verdict:
        cases = [(stdin + "\n", expected) for stdin, expected in task.meta["cases"]]
        return code_verifier.verify_io(program_of(response), cases, timeout_s=self.timeout_s)


def program_of(response: str) -> str:
    """The program in a response: its first fenced code block if it has one, else all of it."""
    fenced = _FENCE.search(response)
    return fenced.group(1) if fenced else response
