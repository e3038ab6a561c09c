"""Verifier throughput: math verifications/s by kind, sandboxed code programs/s.

Code is checked the way a run checks it: HumanEval episodes stepped by `collect.step_bounded`
(each check with its own time limit, `verify.timeout_s`, at most RLSCALE_THREADS at once)."""

from __future__ import annotations

import time

from rlscale.bench.common import _machine, _opt, _threads

_MATH_CASES = {
    "integer": lambda n: (f"so the answer is {n}.", str(n + n % 2), n % 2 == 0),
    "fraction": lambda n: (f"\\boxed{{\\frac{{{n}}}{{4}}}}", str(n / 4), True),
    "latex": lambda n: (f"\\boxed{{(x+{n})^2}}", f"x^2+{2 * n}x+{n * n}", True),
}


def bench_verify(args) -> dict:
    """Verifications per second on this machine: math (by kind) and sandboxed code."""
    from rlscale.collect import step_bounded
    from rlscale.config import VerifyConfig
    from rlscale.envs.base import Task, as_episode
    from rlscale.envs.humaneval import HumanEval, problems
    from rlscale.verifiers import math

    result = {"machine": _machine()}
    seconds = max(0.5, float(_opt(args, "seconds", 3.0)))
    for kind, case in _MATH_CASES.items():
        math.verify(*case(1)[:2])  # warm-up: worker processes, parsers
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            response, gold, expected = case(done + 2)
            verdict = math.verify(response, gold)
            assert verdict.correct == expected, (response, gold, verdict)
            done += 1
        result[f"math_{kind}_per_s"] = done / (time.perf_counter() - start)
    env = HumanEval()
    tasks = [
        Task(problems()[i]["prompt"], problems()[i]["canonical_solution"], {"task_id": i})
        for i in env.task_ids[: int(_opt(args, "programs", 32))]
    ]
    steps = [(as_episode(env, task), task.answer) for task in tasks]  # the canonical solutions
    start = time.perf_counter()
    results = step_bounded(steps, workers=_threads(), timeout_s=VerifyConfig().timeout_s)
    result["code_per_s"] = len(steps) / (time.perf_counter() - start)
    result["code_passed"] = sum(
        not isinstance(outcome, BaseException) and outcome[4]["verdict"].correct for outcome, _ in results
    )
    result["code_programs"] = len(steps)
    print(f"verify bench  ({result['machine']})")
    for kind in _MATH_CASES:
        print(f"  math, {kind:<9} {result[f'math_{kind}_per_s']:>10.0f} verifications/s")
    print(
        f"  code (sandbox) {result['code_per_s']:>9.1f} programs/s  "
        f"({result['code_passed']}/{len(steps)} HumanEval canonical solutions passed)"
    )
    return result
