"""Sequence packing for the learner's forward pass: a group's prompt computed once.

A group's responses follow one copy of their shared prompt in a row and attend to it and to
themselves only (a block-diagonal "tree" mask); rows are filled first-fit up to a token budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    """Sequences packed into rows for one forward pass.

    A group's responses follow one copy of their shared prompt and attend to it and to
    themselves only (a block-diagonal "tree" mask), so the prompt is computed once per group.
    """

    input_ids: torch.Tensor  # [R, L]
    position_ids: torch.Tensor  # [R, L]
    attention_mask: torch.Tensor  # [R, 1, L, L] additive: 0 where a query may attend, else min
    gather: torch.Tensor  # [B, T] flat index (into R * L) of the state that predicts token t
    tokens: int  # real tokens in the rows (what the forward pass computes)

    def to(self, device: torch.device) -> Packed:
        tensors = (self.input_ids, self.position_ids, self.attention_mask, self.gather)
        return Packed(*(x.to(device) for x in tensors), self.tokens)


def pack(
    prompts: list[list[int]],
    responses: list[list[int]],
    keys: list,
    *,
    row_tokens: int,
    pad_id: int,
    response_width: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Packed:
    """Sequences with equal `keys` share their prompt; units fill rows of `row_tokens` first-fit.

    `row_tokens=0` gives every sequence its own row: the plain right-padded batch.
    """
    units: dict = {}  # key -> (prompt, [sequence indices])
    for b, key in enumerate(keys if row_tokens else range(len(prompts))):
        units.setdefault(key, (prompts[b], []))[1].append(b)
    sized = sorted(
        ((len(p) + sum(len(responses[b]) for b in bs), (p, bs)) for p, bs in units.values()),
        key=lambda su: -su[0],
    )
    capacity = max(row_tokens, sized[0][0])
    rows: list[list] = []  # each: [used tokens, [units]]
    for size, unit in sized:
        row = next((r for r in rows if row_tokens and r[0] + size <= capacity), None)
        if row is None:
            rows.append(row := [0, []])
        row[0] += size
        row[1].append(unit)
    width = max(r[0] for r in rows)
    # built as Python lists, one tensor each at the end: per-slice tensor writes cost more
    ids, pos, unit_of, branch = [], [], [], []  # unit -1: padding; branch -1: shared prompt
    gather = [[0] * (response_width or max(1, *map(len, responses))) for _ in prompts]
    for r, (used, row_units) in enumerate(rows):
        row_ids, row_pos, row_unit, row_branch = [], [], [], []
        for u, (prompt, members) in enumerate(row_units):
            p = len(prompt)
            row_ids += prompt
            row_pos += range(p)
            row_unit += [u] * p
            row_branch += [-1] * p
            last_prompt = r * width + len(row_ids) - 1
            for k, b in enumerate(members):
                n, at = len(responses[b]), r * width + len(row_ids)
                row_ids += responses[b]
                row_pos += range(p, p + n)
                row_unit += [u] * n
                row_branch += [k] * n
                # token t is predicted by the state before it: the prompt's last, then t - 1
                gather[b][:n] = [last_prompt, *range(at, at + n - 1)]
        pad = width - used
        ids.append(row_ids + [pad_id] * pad)
        pos.append(row_pos + [0] * pad)
        unit_of.append(row_unit + [-1] * pad)
        branch.append(row_branch + [-2] * pad)
    ids, pos, gather = (torch.tensor(x, dtype=torch.long) for x in (ids, pos, gather))
    unit_of, branch = torch.tensor(unit_of), torch.tensor(branch)
    q, kv = unit_of[:, :, None], unit_of[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same_branch = (branch[:, None, :] == -1) | (branch[:, None, :] == branch[:, :, None])
    allowed = (q == kv) & (kv >= 0) & causal & same_branch
    allowed |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no empty softmax rows
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return Packed(ids, pos, mask[:, None], gather, int((unit_of >= 0).sum()))
