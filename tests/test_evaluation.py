"""The evaluation's task set (rlscale.evaluation.Evaluator): fixed by eval.seed, not by the
trainer's seed, so that seeds of one config are evaluated on the same tasks."""

from __future__ import annotations

from rlscale.config_io import build_config
from rlscale.envs import make_env
from rlscale.evaluation import Evaluator


def _tasks(**overrides):
    env_cfg = {"name": "arithmetic", "kwargs": {"digits": 1, "terms": 3}}
    evals = {"every": 10, "tasks": 64, "held_out": True}
    cfg = build_config({"model": "builtin:tiny", "env": env_cfg, "eval": evals} | overrides)
    env = make_env("arithmetic", digits=1, terms=3)
    evaluator = Evaluator(env, cfg)
    return [t.prompt for t in evaluator.tasks], evaluator.held_out_prompts()


def test_seeds_of_one_config_are_evaluated_on_the_same_tasks():
    seed0, held0 = _tasks(trainer={"seed": 0})
    seed1, held1 = _tasks(trainer={"seed": 1})
    assert len(seed0) == 64 and len(set(seed0)) > 50  # 3 single-digit operands: 4,000 problems
    assert seed0 == seed1 and held0 == held1 == {repr(p) for p in seed0}
    other, _ = _tasks(trainer={"seed": 0}, eval={"every": 10, "tasks": 64, "held_out": True, "seed": 1})
    assert len(set(other) & set(seed0)) < 10  # another eval.seed, another draw
