"""R1-style format reward: <think>…</think><answer>…</answer>, exactly once each, nothing after."""

import time

import pytest

from rlscale.verifiers.format import FORMAT_PATTERN, verify

WELL_FORMATTED = [
    "<think>2 + 2 is 4</think><answer>4</answer>",
    "<think>2 + 2 is 4</think>\n<answer>4</answer>",
    "<think>\nstep 1\nstep 2\n</think>\n\n<answer>\n4\n</answer>\n",
    "  <think>x</think> <answer>y</answer>  ",
    "<think></think><answer></answer>",
    "<think>a < b and c > d</think><answer>\\boxed{5}</answer>",
    "<think>I will write <thinking> here</think><answer>ok</answer>",
    "<think>" + "long " * 50_000 + "</think><answer>1</answer>",
    "<think>tab\tand unicode é ∑</think>\t<answer>√2</answer>\r\n",
    "<think>a</think><answer>the answer is <b>4</b></answer>",
]

BADLY_FORMATTED = [
    ("", "exactly one"),
    ("just an answer: 4", "exactly one"),
    ("<answer>4</answer>", "exactly one"),
    ("<think>reasoning</think>", "exactly one"),
    ("<think>a</think><answer>4</answer> and more", "after </answer>"),
    ("<think>a</think><answer>4</answer>\n<answer>5</answer>", "exactly one"),
    ("<think>a</think><think>b</think><answer>4</answer>", "exactly one"),
    ("<answer>4</answer><think>a</think>", "out of order"),
    ("Sure! <think>a</think><answer>4</answer>", "before <think>"),
    ("<think>a</think> so <answer>4</answer>", "between"),
    ("<think>a<answer>4</answer></think>", "out of order"),
    ("<think>a</think><answer>4", "exactly one"),
    ("<think>a<answer>4</answer>", "exactly one"),
    ("<THINK>a</THINK><ANSWER>4</ANSWER>", "exactly one"),
    ("<think>a</think><answer>4</answer><", "after </answer>"),
    ("<think>a</think><answer>4</answer></think>", "exactly one"),
    ("<think><think>a</think></think><answer>1</answer>", "exactly one"),
    ("<think>a</think>\n\nSo: <answer>4</answer>", "between"),
    ("<think>a</think><answer>4</answer>\n\nHope this helps!", "after </answer>"),
]


@pytest.mark.parametrize("response", WELL_FORMATTED)
def test_well_formatted(response):
    assert verify(response).correct and verify(response).score == 1.0
    assert FORMAT_PATTERN.match(response)


@pytest.mark.parametrize(("response", "reason_part"), BADLY_FORMATTED)
def test_badly_formatted(response, reason_part):
    verdict = verify(response)
    assert not verdict.correct and verdict.score == 0.0
    assert reason_part in verdict.reason
    assert FORMAT_PATTERN.match(response) is None


@pytest.mark.parametrize("response", [None, 1, b"<think>a</think><answer>b</answer>"])
def test_non_text_never_raises(response):
    assert not verify(response).correct


def test_huge_adversarial_response_is_fast():
    response = "<think>" + "<" * 1_000_000 + "</think><answer>x</answer>" + "<think>" * 1000
    start = time.monotonic()
    assert not verify(response).correct
    assert time.monotonic() - start < 2.0
