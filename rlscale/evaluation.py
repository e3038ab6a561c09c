"""Evaluation: pass@k of the current policy on a fixed task set, and the columns it is logged in.

An evaluation draws n samples for each of a fixed set of tasks and counts the correct ones
per task; pass@k is the mean over tasks of the unbiased estimator `scaling.pass_at_k`.
The orchestrator logs it every few steps as `eval/pass@1`, `eval/pass@2`, ..., `eval/pass@n`
(one column per k in `default_ks(n)`, NaN on steps without an evaluation); `rlscale plot`
draws those columns as pass@k curves.
"""

from __future__ import annotations

import random
import re

import numpy as np

from rlscale import metric_names as M
from rlscale.scaling import pass_at_k

PASS_AT_K_COLUMN = re.compile(r"^eval/pass@(\d+)$")


class Evaluator:
    """A fixed task set drawn with its own seed; `evaluate` samples it with the current engines.

    `collector.play` does the sampling and verification, exactly as for training."""

    def __init__(self, env, cfg):
        from rlscale.collect import derived_seed
        from rlscale.rollout import Sampling

        self.cfg = cfg
        rng = random.Random(derived_seed(cfg.trainer.seed, "eval"))
        self.tasks = [env.sample(rng) for _ in range(cfg.eval.tasks)]
        self.sampling = Sampling(
            temperature=cfg.eval.temperature,
            top_p=1.0,
            max_tokens=cfg.rollout.max_tokens,
            stop=env.action_stop,
        )

    def evaluate(self, collector, step: int) -> dict[str, float]:
        n = self.cfg.eval.samples
        _, scores, _ = collector.play(self.tasks, n, (self.cfg.trainer.seed, "eval", step), self.sampling)
        return pass_at_k_metrics(scores.correct.sum(1).long().tolist(), n)


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
    return {M.pass_at(k): v for k, v in pass_at_k_table(correct_counts, n, ks).items()}


def pass_at_k_columns(columns) -> dict[int, str]:
    """k -> column name for the pass@k columns among `columns`, sorted by k."""
    found = {int(m.group(1)): c for c in columns if (m := PASS_AT_K_COLUMN.match(str(c)))}
    return dict(sorted(found.items()))
