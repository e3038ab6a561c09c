"""Verifier throughput: math verifications/s by kind, sandboxed code programs/s."""

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
    from rlscale.envs.humaneval import problems
    from rlscale.verifiers import code, math

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
    items = [
        (p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})")
        for p in list(problems().values())[: int(_opt(args, "programs", 32))]
    ]
    start = time.perf_counter()
    verdicts = code.verify_many(items, max_workers=_threads())
    result["code_per_s"] = len(items) / (time.perf_counter() - start)
    result["code_passed"] = sum(v.correct for v in verdicts)
    result["code_programs"] = len(items)
    print(f"verify bench  ({result['machine']})")
    for kind in _MATH_CASES:
        print(f"  math, {kind:<9} {result[f'math_{kind}_per_s']:>10.0f} verifications/s")
    print(
        f"  code (sandbox) {result['code_per_s']:>9.1f} programs/s  "
        f"({result['code_passed']}/{len(items)} HumanEval canonical solutions passed)"
    )
    return result
