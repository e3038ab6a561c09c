"""Sequence packing with shared prompts, and the flat weight buffer: layouts by hand, and
exactness against a plain per-sequence forward pass."""

from __future__ import annotations

import random

import pytest
import torch

from rlscale.learner import pack
from rlscale.rollout import FlatWeights

PROMPTS = [[5, 6], [5, 6], [7]]
RESPONSES = [[8, 9], [10], [11, 12, 13]]
KEYS = [0, 0, 1]  # the first two sequences are one group


def test_a_group_shares_one_prompt_and_groups_share_a_row():
    p = pack(PROMPTS, RESPONSES, KEYS, row_tokens=16, pad_id=0, response_width=3)
    # group 0 (5 tokens) first, then group 1 (4 tokens), in one row of 9
    assert p.input_ids.tolist() == [[5, 6, 8, 9, 10, 7, 11, 12, 13]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 2, 0, 1, 2, 3]]
    assert p.tokens == 9
    # the state before each response token: the prompt's last, then the token before
    assert p.gather.tolist() == [[1, 2, 0], [1, 0, 0], [5, 6, 7]]
    allowed = (p.attention_mask[0, 0] == 0).int()
    assert allowed[3].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]  # "9" sees its prompt and "8"
    assert allowed[4].tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 0]  # "10" sees its prompt, not "8 9"
    assert allowed[6].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0]  # group 1 never sees group 0


def test_row_tokens_zero_is_the_plain_padded_batch():
    p = pack(PROMPTS, RESPONSES, KEYS, row_tokens=0, pad_id=0, response_width=3)
    assert p.input_ids.tolist() == [[5, 6, 8, 9], [7, 11, 12, 13], [5, 6, 10, 0]]
    assert p.tokens == 11  # every sequence with its own prompt
    assert p.gather.tolist() == [[1, 2, 0], [9, 0, 0], [4, 5, 6]]
    assert p.position_ids[2].tolist()[:3] == [0, 1, 2]


def _random_batch(seed: int):
    rng = random.Random(seed)
    prompts, responses, keys = [], [], []
    for group in range(5):
        prompt = [rng.randrange(3, 40) for _ in range(rng.randint(2, 7))]
        for _ in range(4):
            prompts.append(prompt)
            responses.append([rng.randrange(3, 40) for _ in range(rng.randint(1, 9))])
            keys.append(group)
    return prompts, responses, keys


@pytest.mark.parametrize("row_tokens", [0, 8, 40, 1024])
def test_packed_logprobs_and_gradients_equal_a_per_sequence_forward(row_tokens):
    from rlscale.models import BUILTIN_SIZES, build_model, build_tokenizer

    model = build_model(BUILTIN_SIZES["tiny"], len(build_tokenizer()), seed=0)
    prompts, responses, keys = _random_batch(0)

    expected = []
    for prompt, response in zip(prompts, responses):
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1]
        expected.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(response)[:, None])[:, 0])
    loss = sum(lp.sum() for lp in expected)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    p = pack(prompts, responses, keys, row_tokens=row_tokens, pad_id=0, response_width=9)
    hidden = model.model(
        input_ids=p.input_ids, position_ids=p.position_ids, attention_mask=p.attention_mask
    ).last_hidden_state
    logp = torch.log_softmax(model.lm_head(hidden.flatten(0, 1)[p.gather]), -1)
    packed = [logp[b, : len(r)].gather(1, torch.tensor(r)[:, None])[:, 0] for b, r in enumerate(responses)]
    for got, want in zip(packed, expected):
        assert torch.allclose(got, want.detach(), atol=1e-5)
    sum(lp.sum() for lp in packed).backward()
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, grads[name], atol=1e-4), name
    shared = sum(len(set(map(tuple, prompts[k * 4 : k * 4 + 4]))) * len(prompts[k * 4]) for k in range(5))
    unshared = sum(map(len, prompts))
    assert p.tokens == sum(map(len, responses)) + (shared if row_tokens else unshared)


def test_flat_weights_are_one_buffer_and_views_of_it():
    named = [("a", torch.arange(6.0).view(2, 3)), ("b", torch.tensor([7.0])), ("c", torch.ones(2, 2))]
    flat = FlatWeights.of(named)
    assert flat.buffer.shape == (11,) and flat.shapes == [(2, 3), (1,), (2, 2)] and flat.dtype == "float32"
    out = flat.tensors()
    assert [n for n, _ in out] == ["a", "b", "c"]
    for (_, got), (_, want) in zip(out, named):
        assert torch.equal(got, want)
        assert got.untyped_storage().data_ptr() == flat.buffer.ctypes.data  # a view, not a copy


def test_flat_weights_carry_bf16_bits_exactly():
    named = [("w", torch.tensor([1.5, -2.25, 3.0e-3], dtype=torch.bfloat16))]
    flat = FlatWeights.of(named)
    assert flat.dtype == "bfloat16" and flat.buffer.dtype.name == "int16"
    ((_, got),) = flat.tensors()
    assert got.dtype == torch.bfloat16 and torch.equal(got, named[0][1])
