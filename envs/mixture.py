"""A weighted mixture of environments: each task comes from one of them, drawn by weight.

    make_env("mixture", components=[
        {"name": "arithmetic", "weight": 3, "kwargs": {"digits": 2}},
        {"name": "linear_equations", "weight": 1},
        {"name": "arithmetic", "weight": 1, "kwargs": {"digits": 4}, "label": "arith4"},
    ])

Every task is tagged `task.meta["env"]` with its component's label (the env name unless
given; labels must be unique), so metrics can be split per environment; `score` and
`demonstration` go to the component that made the task. Components are
single-turn environments.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from rlscale.envs import make_env, register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict


@register("mixture")
class Mixture(Environment):
    description = "a weighted mixture of other environments; tasks tagged meta['env']"

    def __init__(self, components: Sequence[Mapping | Sequence]):
        """components: dicts {name, weight, kwargs?, label?} or tuples (name, weight[, kwargs[, label]])."""
        specs = [_spec(component) for component in components]
        if not specs:
            raise ValueError("a mixture needs at least one component")
        labels = [label for label, *_ in specs]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        if duplicated:
            raise ValueError(f"mixture labels must be unique; repeated: {duplicated} (give each a 'label')")
        if any(weight < 0 for _, _, weight, _ in specs) or not sum(weight for _, _, weight, _ in specs) > 0:
            raise ValueError("mixture weights must be >= 0 with a positive sum")
        self.envs: dict[str, Environment] = {}
        for label, name, _, kwargs in specs:
            env = make_env(name, **kwargs)
            if not isinstance(env, Environment):
                raise ValueError(f"mixture component {name!r} is not a single-turn Environment")
            self.envs[label] = env
        self.labels = labels
        self.uses_sandbox = any(env.uses_sandbox for env in self.envs.values())
        self.weights = [weight for *_, weight, _ in specs]

    def sample(self, rng: random.Random) -> Task:
        label = rng.choices(self.labels, weights=self.weights)[0]
        task = self.envs[label].sample(rng)
        return replace(task, meta={**task.meta, "env": label})

    def score(self, task: Task, response: str) -> Verdict:
        return self.envs[task.meta["env"]].score(task, response)

    def demonstration(self, task: Task) -> str:
        return self.envs[task.meta["env"]].demonstration(task)


def _spec(component: Mapping | Sequence) -> tuple[str, str, float, dict]:
    """(label, env name, weight, kwargs) from a dict or a (name, weight[, kwargs[, label]]) tuple."""
    if isinstance(component, Mapping):
        unknown = set(component) - {"name", "weight", "kwargs", "label"}
        if unknown or "name" not in component:
            raise ValueError(
                f"mixture component {dict(component)}: needs 'name'; unknown keys {sorted(unknown)}"
            )
        name, weight = component["name"], component.get("weight", 1.0)
        kwargs, label = component.get("kwargs") or {}, component.get("label")
    else:
        if not 2 <= len(component) <= 4:
            raise ValueError(f"mixture component {component!r}: expected (name, weight[, kwargs[, label]])")
        name, weight, kwargs, label = (*component, {}, None)[:4]
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ValueError(f"mixture component {name!r}: weight must be a number, got {weight!r}")
    return label or name, name, float(weight), dict(kwargs)
