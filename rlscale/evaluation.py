"""pass@k over an evaluation set, and the metric names a run logs it under.

An evaluation draws n samples for each of a fixed set of tasks and counts the correct ones
per task; pass@k is the mean over tasks of the unbiased estimator `scaling.pass_at_k`.
The orchestrator logs it every few steps as `eval/pass@1`, `eval/pass@2`, ..., `eval/pass@n`
(one column per k in `default_ks(n)`, NaN on steps without an evaluation); `rlscale plot`
draws those columns as pass@k curves.
"""

from __future__ import annotations

import re

import numpy as np

from rlscale.scaling import pass_at_k

PASS_AT_K_PREFIX = "eval/pass@"
PASS_AT_K_COLUMN = re.compile(r"^eval/pass@(\d+)$")


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    return sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})


def pass_at_k_table(correct_counts, n: int, ks=None) -> dict[int, float]:
    """k -> pass@k averaged over tasks, from each task's count of correct samples out of n."""
    counts = np.asarray(correct_counts, dtype=np.int64).ravel()
    if counts.size == 0:
        raise ValueError("pass_at_k_table needs at least one task")
    ks = default_ks(n) if ks is None else [int(k) for k in ks]
    return {k: float(np.mean(pass_at_k(n, counts, k))) for k in ks}


def pass_at_k_metrics(correct_counts, n: int, ks=None) -> dict[str, float]:
    """The same table keyed by metric name: {"eval/pass@1": ..., "eval/pass@n": ...}."""
    return {f"{PASS_AT_K_PREFIX}{k}": v for k, v in pass_at_k_table(correct_counts, n, ks).items()}


def pass_at_k_columns(columns) -> dict[int, str]:
    """k -> column name for the pass@k columns among `columns`, sorted by k."""
    found = {int(m.group(1)): c for c in columns if (m := PASS_AT_K_COLUMN.match(str(c)))}
    return dict(sorted(found.items()))
