"""Evaluation: pass@k of the current policy on a fixed task set, and the columns it is logged in.

An evaluation draws n samples for each of a fixed set of tasks and counts the correct ones
per task; pass@k is the mean over tasks of the unbiased estimator `scaling_stats.pass_at_k`.
The orchestrator logs `eval/pass@1`, `eval/pass@2`, ..., `eval/pass@n` and `eval/mean@n`
(one column per k in `default_ks(n)`, NaN on steps without an evaluation); `rlscale plot`
draws those columns as pass@k curves.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

import numpy as np

from rlscale import metric_names as M
from rlscale.scaling_stats import pass_at_k

PASS_AT_K_COLUMN = re.compile(r"^eval/pass@(\d+)$")


class Evaluator:
    """A fixed task set drawn with its own seed; `evaluate` samples it with the current engines.

    `collector.play` does the sampling and verification, exactly as for training."""

    def __init__(self, env, cfg):
        from rlscale.collect import derived_seed

        self.cfg = cfg
        rng = random.Random(derived_seed(cfg.eval.seed, "eval"))
        self.tasks = [env.sample(rng) for _ in range(cfg.eval.tasks)]

    def held_out_prompts(self) -> set:
        """The prompts training must not draw (eval.held_out)."""
        return {repr(t.prompt) for t in self.tasks} if self.cfg.eval.held_out else set()

    def evaluate(self, collector, step: int) -> tuple[dict[str, float], int]:
        """(eval/* metrics, tokens the evaluation generated and read: its compute's size)."""
        n = self.cfg.eval.samples
        sampling = replace(collector.sampling, temperature=self.cfg.eval.temperature, top_p=1.0)
        groups, scores, _ = collector.play(self.tasks, n, (self.cfg.trainer.seed, "eval", step), sampling)
        tokens = sum(len(g.prompt) + sum(len(s.token_ids) for s in g.samples) for g in groups)
        metrics = pass_at_k_metrics(scores.correct.sum(1).long().tolist(), n)
        metrics[M.mean_at(n)] = float(scores.correct.mean())
        return metrics, tokens


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
