"""Per-environment metrics of a mixture, from verification results."""

from __future__ import annotations

import torch

from rlscale.collect import Scores
from rlscale.collect import per_env_metrics as _per_env_metrics
from rlscale.envs.base import Task


def test_per_environment_metrics_split_by_label():
    tasks = [Task(p, "1", {"env": env}) for p, env in (("a", "arith"), ("b", "code"), ("c", "arith"))]
    t = lambda rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    scores = Scores(
        rewards=t([[1, 0], [0, 0], [1, 1]]),
        correct=t([[1, 0], [0, 0], [1, 1]]),
        formatted=t([[0, 0], [1, 1], [0, 1]]),
        errors=t([[0, 0], [1, 0], [0, 0]]),
        timeouts=t([[0, 0], [0, 1], [0, 0]]),
        seconds=t([[0.1, 0.1], [2.0, 3.0], [0.1, 0.2]]),
        hack_suspects=t([[0, 0], [1, 1], [0, 0]]),
    )
    m = _per_env_metrics(tasks, scores)
    assert m["env/arith/reward"] == 0.75 and m["env/code/reward"] == 0.0
    assert m["env/arith/format"] == 0.25 and m["env/code/format"] == 1.0
    assert m["env/code/verifier_errors"] == 1 and m["env/code/verifier_timeouts"] == 1
    assert m["env/arith/verifier_errors"] == 0
    assert m["env/code/hack_suspects"] == 2 and m["env/arith/hack_suspects"] == 0
    assert abs(m["env/arith/verify_s"] - 0.5) < 1e-6 and abs(m["env/code/verify_s"] - 5.0) < 1e-6
    assert abs(m["env/arith/fraction"] - 2 / 3) < 1e-6


def test_no_labels_no_per_environment_metrics():
    zeros = torch.zeros(1, 2)
    assert _per_env_metrics([Task("a", "1")], Scores(*(zeros for _ in range(7)))) == {}
