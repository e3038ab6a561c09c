"""Any of reasoning-gym's procedural datasets, scored by the dataset's own scorer.

    make_env("reasoning_gym", dataset="basic_arithmetic", size=1000, seed=0, min_terms=2)

`dataset` names one of `reasoning_gym.factory.DATASETS`; `size` and `seed` fix the dataset's
items; every other keyword goes to that dataset's config. A response may put its answer in
`<answer>...</answer>` (reasoning-gym's convention), else the whole response is the answer.
The score is the dataset's `score_answer` (some give partial credit); correct means 1.0.
"""

from __future__ import annotations

import random

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict


@register("reasoning_gym")
class ReasoningGym(Environment):
    description = "any reasoning-gym procedural dataset (kwarg dataset=...), scored by its own scorer"

    def __init__(
        self, dataset: str, size: int = 1000, seed: int = 0, prompt_template: str = "{question}", **config
    ):
        import reasoning_gym  # imported here: it takes a second, and every env module loads on start
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; choose from {sorted(DATASETS)}")
        if "{question}" not in prompt_template:
            raise ValueError("prompt_template must contain {question}")
        self.dataset_name, self.prompt_template = dataset, prompt_template
        self.dataset = reasoning_gym.create_dataset(dataset, size=size, seed=seed, **config)

    def sample(self, rng: random.Random) -> Task:
        index = rng.randrange(len(self.dataset))
        entry = self.dataset[index]
        answer = "" if entry["answer"] is None else str(entry["answer"])
        prompt = self.prompt_template.replace("{question}", entry["question"])
        return Task(
            prompt=prompt, answer=answer, meta={"dataset": self.dataset_name, "index": index, "entry": entry}
        )

    def score(self, task: Task, response: str) -> Verdict:
        from reasoning_gym.utils import extract_answer

        answer = extract_answer(response)
        answer = response.strip() if answer is None else answer
        try:
            score = float(self.dataset.score_answer(answer, task.meta["entry"]))
        except Exception as error:  # some scorers raise on malformed answers; that is a wrong answer
            return Verdict.wrong(f"{self.dataset_name} scorer rejected the answer: {error!r}")
        score = min(max(score, 0.0), 1.0)
        reason = f"{self.dataset_name} scorer: {score:g}"
        return Verdict(score, score >= 1.0, reason if score < 1.0 else "correct")

    def demonstration(self, task: Task) -> str:
        if not task.answer:
            raise ValueError(
                f"reasoning-gym dataset {self.dataset_name!r} gives no reference answer (several answers "
                "are valid), so it has no demonstration to warm-start a built-in model"
            )
        return task.answer
