"""The data that flows between stages: sampled responses, and the grouped batch the learner trains on.

A batch stays grouped from generation to the learner: each group is one prompt (once) and the
G responses sampled for it, so nothing is flattened and re-derived on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sample:
    """One sampled response: its tokens and the sampler's log-prob of each.

    In a multi-turn episode the response interleaves the policy's actions with the
    environment's observations; `loss_mask` is 0 on the environment's tokens.
    """

    token_ids: list[int]
    logprobs: list[float]
    truncated: bool
    loss_mask: list[float] | None = None

    def mask(self) -> list[float]:
        """1.0 on tokens the loss sees (the policy's own), 0.0 on the environment's."""
        return self.loss_mask if self.loss_mask is not None else [1.0] * len(self.token_ids)

    def extend(self, token_ids: list[int], logprobs: list[float] | None = None, *, trained: bool) -> None:
        """Append tokens: the policy's own (trained, with their log-probs) or the environment's."""
        self.loss_mask = self.mask() + [1.0 if trained else 0.0] * len(token_ids)
        self.token_ids = self.token_ids + token_ids
        self.logprobs = self.logprobs + (logprobs if logprobs is not None else [0.0] * len(token_ids))


@dataclass
class Group:
    """One prompt and the responses sampled for it, with each response's scalar reward."""

    prompt: list[int]
    samples: list[Sample]
    rewards: list[float]


@dataclass
class Batch:
    """Whole groups of equal size: what one update trains on."""

    groups: list[Group] = field(default_factory=list)

    @property
    def group_size(self) -> int:
        sizes = {len(g.samples) for g in self.groups}
        if len(sizes) != 1:
            raise ValueError(f"a batch needs groups of one size; got sizes {sorted(sizes)}")
        return sizes.pop()

    def __len__(self) -> int:
        return sum(len(g.samples) for g in self.groups)
