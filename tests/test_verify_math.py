"""Math verifier: answer extraction, equivalence, and bounds on hostile answers."""

import threading
import time

import pytest

from rlscale.verifiers import math as math_verifier
from rlscale.verifiers.math import extract_answer, verify

HUGE_NUMBER = "9" * 20_000


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (r"so \boxed{\frac{a}{\sqrt{b}}} is it", r"\frac{a}{\sqrt{b}}"),
        (r"first \boxed{3}, wait, actually \boxed{4}", "4"),
        (r"I think \boxed{3}. Hmm, no: the answer is 4.", "4"),
        (r"The answer is \boxed{4}.", "4"),
        ("The answer is $\\frac{1}{2}$.", r"\frac{1}{2}"),
        ("Final answer: 12", "12"),
        ("<think>maybe 3</think><answer>7</answer>", "7"),
        (r"<answer>so \boxed{8}</answer> and later 9", "8"),
        ("2 + 2 = 4, and then 1,234 apples", "1234"),
        ("no numbers at all", None),
        ("<answer></answer>", None),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


CORRECT = [
    (r"\boxed{\frac{1}{2}}", "0.5"),
    (r"\boxed{0.5}", r"\frac12"),
    (r"\boxed{\dfrac{3}{4}}", "0.75"),
    (r"\boxed{-\frac{3}{4}}", "-0.75"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
    (r"\boxed{\pi}", r"\pi"),
    (r"\boxed{3.14159265}", r"\pi"),
    (r"\boxed{\infty}", r"\infty"),
    (r"\boxed{x^2+2x+1}", "(x+1)^2"),
    (r"\boxed{\frac{x}{2}}", r"\frac{1}{2}x"),
    (r"\boxed{(1, 2)}", "(1,2)"),
    (r"\boxed{\{3, 1, 2\}}", r"\{1,2,3\}"),
    (r"\boxed{[1, 2)}", "[1,2)"),
    (r"\boxed{(-\infty, 0]}", r"(-\infty,0]"),
    (r"\boxed{x = 5}", "5"),
    (r"\boxed{10^{3}}", "1000"),
    (r"\boxed{1,000}", "1000"),
    ("The answer is 42.", "42"),
    ("<answer>7</answer>", "7"),
    (r"<answer>\boxed{7}</answer>", r"\boxed{7}"),
    ("Adding gives 4", "4.0"),
    ("The answer is $-3$.", "-3"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\sin(\pi/3)"),
    (r"first \boxed{3}, wait, actually \boxed{4}", "4"),
    (rf"\boxed{{{HUGE_NUMBER}}}", HUGE_NUMBER),
]

WRONG = [
    (r"\boxed{3}", "4"),
    (r"\boxed{(2, 1)}", "(1,2)"),
    (r"\boxed{(1, 2]}", "[1,2)"),
    (r"\boxed{(1, 2)}", "[1,2]"),
    (r"\boxed{-\infty}", r"\infty"),
    (r"\boxed{x^2+1}", "(x+1)^2"),
    (r"\boxed{0.33}", r"\frac{1}{3}"),
    (r"\boxed{\{1, 2\}}", r"\{1,2,3\}"),
    (r"I think \boxed{3}. Hmm, no: the answer is 4.", "3"),
    (r"\boxed{\frac{}{}}", "1"),
    ("", "1"),
]


@pytest.mark.parametrize(("response", "gold"), CORRECT)
def test_correct(response, gold):
    verdict = verify(response, gold)
    assert verdict.correct and verdict.score == 1.0, verdict


@pytest.mark.parametrize(("response", "gold"), WRONG)
def test_wrong(response, gold):
    verdict = verify(response, gold)
    assert not verdict.correct and verdict.score == 0.0, verdict


def test_no_answer_is_reported():
    assert verify("I have no idea.", "5").reason == "no answer found"


@pytest.mark.parametrize("response", [None, 42, b"\\boxed{5}", object()])
def test_non_text_never_raises(response):
    assert not verify(response, "5").correct


@pytest.mark.parametrize(
    ("answer", "reason_part"),
    [
        (HUGE_NUMBER, "too long"),
        ("2^{2^{2^{2^{2^2}}}}", "nested powers"),
        ("x**(x**(x**x))", "nested powers"),
        ("(" * 3000 + "1" + ")" * 3000, "too long"),
        ("(" * 300 + "1" + ")" * 300, "nested too deeply"),
        (r"\left[" * 60 + "1" + r"\right]" * 60, "nested too deeply"),
    ],
)
def test_absurd_answers_are_rejected_at_once(answer, reason_part):
    start = time.monotonic()
    verdict = verify(rf"\boxed{{{answer}}}", "5")
    assert not verdict.correct and reason_part in verdict.reason
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("tower", ["9^{9^{9}}", "2^{10^{10}}"])
def test_expensive_answers_are_cut_off_by_the_worker_deadline(tower):
    start = time.monotonic()
    verdict = verify(rf"\boxed{{{tower}}}", "5", timeout_s=1.0)
    assert not verdict.correct
    assert verdict.reason.startswith(("timeout after 1s", "math verifier crashed"))
    assert time.monotonic() - start < 3.0
    assert verify(r"\boxed{\frac{2}{4}}", "0.5").correct  # the pool recovered


def test_works_from_other_threads():
    results = []
    cases = [(r"\boxed{\sqrt{4}}", "2"), (r"\boxed{\frac{6}{4}}", "1.5"), (r"\boxed{x+x}", "2x")]
    threads = [
        threading.Thread(target=lambda case=case: results.append(verify(*case).correct)) for case in cases
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True, True, True]


def test_plain_numbers_are_fast():
    start = time.monotonic()
    for index in range(2000):
        assert verify(f"so the total is {index}", str(index)).correct
        assert not verify(rf"\boxed{{{index}}}", str(index + 1)).correct
    assert time.monotonic() - start < 1.0


def test_long_response_extracts_quickly():
    response = "thinking... " * 100_000 + r"\boxed{17}"
    start = time.monotonic()
    assert verify(response, "17").correct
    assert time.monotonic() - start < 1.0


def test_repeated_answers_are_cached():
    assert verify(r"\boxed{\sqrt{6.25}}", "2.5").correct  # needs sympy
    start = time.monotonic()
    for _ in range(1000):
        assert verify(r"\boxed{\sqrt{6.25}}", "2.5").correct
    assert time.monotonic() - start < 0.5


def test_equivalent_compares_extracted_answers():
    assert math_verifier.equivalent(r"\frac{1}{3}", r"\dfrac{2}{6}").correct
    assert not math_verifier.equivalent("1", "2").correct
