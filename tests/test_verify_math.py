"""Math verifier: agreement with math-verify, <answer> tags, bounds on hostile answers, caching."""

import itertools
import re
import threading
import time

import math_verify
import pytest

from rlscale.verifiers import math as math_verifier
from rlscale.verifiers.math import answer_tag, equivalent, last_boxed, verify

HUGE_NUMBER = "9" * 20_000

# Free-form responses as models write them: (response, gold, verdict). The verdicts are stated
# by hand, and each is also math-verify's own when called directly (checked below).
AGREEMENT = [
    # chatty boxed answers, \dfrac, \left( ... \right)
    (r"So the answer is $\boxed{\dfrac{3}{4}}$.", "0.75", True),
    (r"So the answer is $\boxed{\dfrac{3}{4}}$.", r"\frac{3}{4}", True),
    (r"So the answer is $\boxed{\dfrac{3}{4}}$.", r"\frac{4}{3}", False),
    (r"Therefore, the probability is $\boxed{\tfrac{1}{6}}$. I hope it is correct.", "1/6", True),
    (r"Adding these up, we get \boxed{42}.", "42", True),
    (r"Adding these up, we get \boxed{42}.", "24", False),
    # math-verify reads boxes a short text apart as one set: {3, 4} is neither 3 nor 4
    (r"First I thought \boxed{3}, but checking again the answer is \boxed{4}.", "4", False),
    (r"First I thought \boxed{3}, but checking again the answer is \boxed{4}.", "3", False),
    (r"First I thought \boxed{3}. Checking again, the answer is \boxed{4}.", "4", False),
    (r"First I thought \boxed{3}. Checking again, the answer is \boxed{4}.", "3", False),
    (
        r"I first guessed \boxed{3}, but that ignores the second train, which leaves an hour later "
        r"and travels faster. Redoing the sum: \boxed{4}.",
        "4",
        True,
    ),
    # boxed first: an earlier box outranks a later "the answer is"
    (r"I think \boxed{3}. Hmm, no: the answer is 4.", "3", True),
    (r"I think \boxed{3}. Hmm, no: the answer is 4.", "4", False),
    (r"The vertex is at $\boxed{\left( 2, -3 \right)}$.", "(2,-3)", True),
    (r"The vertex is at $\boxed{\left( 2, -3 \right)}$.", "(-3,2)", False),
    (r"Thus $x = \boxed{\frac{-b}{2a}}$.", r"-\frac{b}{2a}", True),
    # the false positives of the old verifier
    (r"The ratio is $\frac{1+\sqrt{5}}{2}$", "2", False),
    (r"The ratio is $\frac{1+\sqrt{5}}{2}$", r"\frac{1+\sqrt{5}}{2}", True),
    (r"The answer is $-\frac{10}{9}$.", "-10/9", True),
    (r"$-\frac{10}{9}$", "-10/9", True),
    (r"The solution set is $[0,1)$.", "[0,1)", True),
    (r"The solution set is $[0,1)$.", "[0,1]", False),
    (r"The solution set is $[0,1)$.", "1", False),
    (r"The solution set is $[0,1)$.", "0", False),
    # plain numbers in prose, units, thousands separators, currency, percentages
    ("Ann has 3 apples, buys 4 more, so she has 7 apples.", "7", True),
    ("Ann has 3 apples, buys 4 more, so she has 7 apples.", "4", False),
    ("The rectangle's perimeter is 12 cm.", "12", True),
    ("The rectangle's perimeter is 12 cm.", "13", False),
    (r"The area is $12\text{ cm}^2$.", "12", True),
    ("In total the farm sold 1,234 eggs.", "1234", True),
    ("In total the farm sold 1,234 eggs.", "1,234", True),
    ("In total the farm sold 1,234 eggs.", "234", False),
    ("The company earned $1,250,000 last year.", "1250000", True),
    (r"She pays $\$12.50$ in total.", "12.5", True),
    (r"She pays $\$12.50$ in total.", "12.05", False),
    ("The discount is 25%.", r"25\%", True),
    ("The discount is 25%.", "0.25", True),
    (r"The discount is $25\%$.", r"25\%", True),
    ("The answer is 0.5", r"\frac{1}{2}", True),
    ("The answer is 0.333333", r"\frac{1}{3}", True),
    ("The answer is 0.33", r"\frac{1}{3}", False),
    ("Final answer: 3.14159", r"\pi", False),
    ("The final answer is 17. I hope it is correct.", "17", True),
    ("The final answer is 17. I hope it is correct.", "71", False),
    ("so the answer is 8 (not 6).", "8", True),  # "answer is" outranks the last number
    ("so the answer is 8 (not 6).", "6", False),
    # negative numbers and fractions
    ("The temperature dropped to -5 degrees.", "-5", True),
    ("The temperature dropped to -5 degrees.", "5", False),
    (r"Hence $x = -\dfrac{7}{3}$.", "-7/3", True),
    (r"Hence $x = -\dfrac{7}{3}$.", "7/3", False),
    ("The slope is -3/4.", r"-\frac{3}{4}", True),
    ("The slope is -3/4.", r"\frac{3}{4}", False),
    # square roots and pi
    (r"The side length is $\boxed{2\sqrt{3}}$.", r"\sqrt{12}", True),
    (r"The side length is $\boxed{2\sqrt{3}}$.", r"3\sqrt{2}", False),
    (r"The distance is $\sqrt{2}/2$.", r"\frac{\sqrt{2}}{2}", True),
    (r"The circumference is $\boxed{6\pi}$ units.", r"6\pi", True),
    (r"The circumference is $\boxed{6\pi}$ units.", "6", False),
    (r"The area is $\boxed{\frac{25\pi}{4}}$", r"6.25\pi", True),
    # degrees
    (r"The angle measures $\boxed{45^\circ}$.", "45", True),
    (r"The angle measures $45^{\circ}$.", r"45^\circ", True),
    (r"The angle measures $\boxed{45^\circ}$.", "135", False),
    # intervals, sets, tuples
    (r"So $x \in \boxed{(-\infty, 3]}$.", r"(-\infty,3]", True),
    (r"So $x \in \boxed{(-\infty, 3)}$.", r"(-\infty,3]", False),
    (r"The solutions are $\boxed{\{-2, 3\}}$.", r"\{3,-2\}", True),
    (r"The solutions are $x=-2$ and $x=3$.", r"\{-2,3\}", True),
    (r"The solutions are $x=-2$ and $x=3$.", r"\{-2,4\}", False),
    (r"The solutions are $\boxed{-2, 3}$.", "-2, 3", True),
    (r"The solutions are $\boxed{-2, 3}$.", "3", False),
    (r"The point is $\boxed{(1, 2, 3)}$.", "(1,2,3)", True),
    (r"The point is $\boxed{(1, 2, 3)}$.", "(1,3,2)", False),
    (r"The domain is $\boxed{[-1, 1]}$.", "[-1,1]", True),
    (r"The domain is $\boxed{[-1, 1]}$.", "(-1,1)", False),
    # matrices and vectors
    (
        r"The product is $\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}$.",
        r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
        True,
    ),
    (
        r"The product is $\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}$.",
        r"\begin{pmatrix}1&3\\2&4\end{pmatrix}",
        False,
    ),
    (
        r"So $\mathbf{v} = \boxed{\begin{pmatrix} -1 \\ 2 \end{pmatrix}}$",
        r"\begin{pmatrix}-1\\2\end{pmatrix}",
        True,
    ),
    (r"So $\mathbf{v} = \boxed{\begin{pmatrix} -1 \\ 2 \end{pmatrix}}$", "2", False),
    # relations and equations
    (r"Solving, we find $\boxed{x = 5}$.", "5", True),
    (r"Solving, we find $\boxed{x = 5}$.", "x=5", True),
    (r"Solving, we find $\boxed{x = 5}$.", "6", False),
    (r"The inequality holds for $\boxed{x \le 3}$.", r"x \leq 3", True),
    (r"The inequality holds for $\boxed{x \le 3}$.", "3", False),
    (r"The inequality holds for $\boxed{x \le 3}$.", r"x < 3", False),
    (r"The line is $\boxed{y = 2x + 1}$.", "y=2x+1", True),
    (r"The line is $\boxed{y = 2x + 1}$.", "y=2x-1", False),
    (r"We need $x > 2$.", r"x > 2", True),
    (r"We need $x > 2$.", r"2 < x", True),
    # math-verify turns a gold relation into a set for a set answer, not the other way round
    (r"We need $x > 2$.", r"(2, \infty)", False),
    (r"So $x \in (2, \infty)$.", r"x > 2", True),
    # algebraic expressions
    (r"Expanding gives $\boxed{x^2 + 2x + 1}$.", "(x+1)^2", True),
    (r"Expanding gives $\boxed{x^2 + 2x + 1}$.", "(x-1)^2", False),
    (r"The derivative is $\boxed{3x^2 - 4}$", "3x^2-4", True),
    (r"So $f(x) = \boxed{\frac{x}{2}}$", r"\frac{1}{2}x", True),
    # text answers
    (r"The day of the week is $\boxed{\text{Monday}}$.", r"\text{Monday}", True),
    (r"The day of the week is $\boxed{\text{Monday}}$.", r"\text{Tuesday}", False),
    (r"The answer is $\boxed{\text{(B)}}$.", r"\text{(B)}", True),
    # no final answer, or only an intermediate one
    ("I am not sure how to solve this problem.", "5", False),
    ("Let me think step by step about the problem.", "5", False),
    (r"The answer is $\boxed{}$.", "5", False),
    (r"\boxed{\frac{}{}}", "1", False),
    ("", "1", False),
    # the old verifier's cases
    (r"\boxed{3.14159265}", r"\pi", True),  # floats: equal to 6 decimal places
    (r"\boxed{10^{3}}", "1000", True),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\sin(\pi/3)", True),
    (r"\boxed{\infty}", r"\infty", True),
    (r"\boxed{-\infty}", r"\infty", False),
    (r"\boxed{(1, 2]}", "[1,2)", False),
    (r"\boxed{\{1, 2\}}", r"\{1,2,3\}", False),
    ("Adding gives 4", "4.0", True),
    # display math and \( \)
    ("We get\n\\[\nx = \\frac{5}{2}\n\\]\nso that is the answer.", "2.5", True),
    (r"The answer is \(\frac{5}{2}\).", "5/2", True),
    (r"The answer is \(\frac{5}{2}\).", "2", False),
    # gold in delimiters
    (r"The answer is $\boxed{12}$.", "$12$", True),
    (r"The answer is $\boxed{12}$.", r"\(12\)", True),
    (r"The answer is $\boxed{12}$.", r"\boxed{12}", True),
    (r"The answer is $\boxed{12}$.", "$13$", False),
]


_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")


def math_verify_directly(response: str, gold: str) -> bool:
    """math-verify on the whole response, the gold read as LaTeX math (in `$…$` if bare)."""
    gold = gold if _DELIMITED.search(gold) else f"${gold}$"
    return math_verify.verify(math_verify.parse(gold), math_verify.parse(response))


@pytest.fixture(scope="module", autouse=True)
def warm_workers():
    """Start the worker pool, so that timings below measure checking, not importing sympy."""
    assert equivalent("x+x", "2x").correct


def test_the_agreement_table_is_large_and_mixed():
    assert len(AGREEMENT) >= 80
    assert 0.35 < sum(verdict for *_, verdict in AGREEMENT) / len(AGREEMENT) < 0.65


@pytest.mark.parametrize(("response", "gold", "expected"), AGREEMENT)
def test_agrees_with_math_verify(response, gold, expected):
    assert math_verify_directly(response, gold) == expected
    verdict = verify(response, gold)
    assert verdict.correct == expected and verdict.score == float(expected), verdict


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        # the old verifier's false positives and negatives (issue 12)
        (r"$\frac{1+\sqrt{5}}{2}$", "2", False),
        (r"-\frac{10}{9}", "-10/9", True),
        (r"$-\frac{10}{9}$", "-10/9", True),
        ("$[0,1)$", "[0,1)", True),
        ("$[0,1)$", "$[0,1)$", True),
        ("$[0,1)$", r"\([0,1)\)", True),
        ("$[0,1)$", "[0,1]", False),
    ],
)
def test_former_false_verdicts(response, gold, expected):
    assert verify(response, gold).correct == expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("<think>maybe 3</think><answer>7</answer>", "7", True),
        ("<think>maybe 3</think><answer>7</answer>", "3", False),
        ("<answer>\n  7\n</answer>", "7", True),
        (r"<answer>so \boxed{8}</answer> and later 9", "8", True),
        (r"<answer>so \boxed{8}</answer> and later 9", "9", False),
        ("<answer>1</answer> then <answer>2</answer>", "2", True),
        ("<answer>1</answer> then <answer>2</answer>", "1", False),
        # the content is bare math, read as LaTeX: no number is picked out of it
        ("<answer>[0,1)</answer>", "$[0,1)$", True),
        (r"<answer>x \le 3</answer>", "3", False),
        (r"<answer>x \le 3</answer>", r"x \leq 3", True),
        (r"<answer>2\pi</answer>", "2", False),
        (r"<answer>2\pi</answer>", r"2\pi", True),
        ("<answer>x = 5</answer>", "5", True),
        (r"<answer>\frac{1}{2}</answer>", "0.5", True),
        ("<answer>(-\\infty, 0]</answer>", "0", False),
        ("<answer></answer>", "1", False),
        ("<answer>\n</answer>", "1", False),
    ],
)
def test_answer_tags(response, gold, expected):
    verdict = verify(response, gold)
    assert verdict.correct == expected, verdict


def test_no_answer_is_reported():
    assert verify("I have no idea.", "5").reason == "no answer found"
    assert verify("<answer> </answer>", "5").reason == "no answer found"


@pytest.mark.parametrize("response", [None, 42, b"\\boxed{5}", object()])
def test_non_text_never_raises(response):
    assert not verify(response, "5").correct
    assert not verify("5", response).correct


def test_equivalent_compares_bare_answers():
    assert equivalent(r"\frac{1}{3}", r"\dfrac{2}{6}").correct
    assert equivalent(r"v = \sqrt{2 g h}", r"\sqrt{2gh}").correct
    assert equivalent("$[0,1)$", "[0,1)").correct
    assert not equivalent("1", "2").correct
    assert not equivalent(r"x \le 3", "3").correct


def test_answer_tag_and_last_boxed():
    assert answer_tag("a <answer>1</answer> b <answer> 2 </answer> c") == " 2 "
    assert answer_tag("<answer>unclosed") is None and answer_tag("</answer><answer>") is None
    assert last_boxed(r"so \boxed{\frac{a}{\sqrt{b}}} is it") == r"\frac{a}{\sqrt{b}}"
    assert last_boxed(r"\boxed{3}, then \boxed{4} and \boxed{5") == "4"
    assert last_boxed("no box") is None


# --- the in-process fast path -----------------------------------------------------------------

_PREFIXES = ["", "so the answer is ", "Total:\n", "x = ", "The final answer is ", "Answer: ", "I get  "]
_NOT_PLAIN = ["€", "(", "answer:", "x =", "5 + ", "The answer is $", "a [b] ", "**", "±"]
_NUMBERS = ["5", "-5", "0", "-0", "007", "12", "99999999999999999999", "-12"]
_SUFFIXES = ["", ".", " ", ".\n"]
_NOT_PLAIN_SUFFIXES = ["x", "%", ")", ". I hope it is correct.", ",000", " cm", "!", ".5"]
_GOLDS = ["5", "-5", "0", "7", " 12 ", "99999999999999999999", "-12", "007"]


def _fast_cases():
    for prefix, number, suffix in itertools.product(_PREFIXES, _NUMBERS, _SUFFIXES):
        yield prefix + number + suffix, False
    for number in _NUMBERS:
        yield rf"\boxed{{{number}}}", False
        yield f" {number}\n", True


def test_fast_path_agrees_with_math_verify():
    """Each response the fast path settles, math-verify settles the same way (measured)."""
    settled = 0
    for (text, bare), gold in itertools.product(list(_fast_cases()), _GOLDS):
        fast = math_verifier._integer_verdict(text, gold, bare)
        assert fast is not None, (text, gold)
        response = f"<answer>{text}</answer>" if bare else text
        assert fast.correct == math_verify_directly(text if not bare else f"${text.strip()}$", gold)
        assert verify(response, gold) == fast
        settled += 1
    assert settled == (len(_PREFIXES) * len(_SUFFIXES) + 2) * len(_NUMBERS) * len(_GOLDS)


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        *((prefix + "5", "5") for prefix in _NOT_PLAIN),
        *(("the answer is 5" + suffix, "5") for suffix in _NOT_PLAIN_SUFFIXES),
        ("3 apples and 4 pears", "4"),
        (r"\boxed{5} or \boxed{6}", "5"),
        (r"\boxed{5.0}", "5"),
        ("the answer is 5", "5.0"),
        ("the answer is 5", "$5$"),
        ("the answer is ٥", "5"),  # an Arabic-Indic digit: math-verify's business
        ("1" * 101, "1" * 101),
    ],
)
def test_fast_path_leaves_everything_else_to_math_verify(text, gold):
    assert math_verifier._integer_verdict(text, gold, bare=False) is None


def test_plain_numbers_are_fast():
    start = time.monotonic()
    for index in range(2000):
        assert verify(f"so the total is {index}", str(index)).correct
        assert not verify(f"<answer>{index}</answer>", str(index + 1)).correct
        assert verify(rf"\boxed{{{index}}}", str(index)).correct
    assert time.monotonic() - start < 1.0


# --- bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (HUGE_NUMBER, "answer too long to check (over 1000 characters)"),
        ("2^{2^{2^{2^{2^2}}}}", "answer too complex to check (nested powers)"),
        ("x**(x**(x**x))", "answer too complex to check (nested powers)"),
        ("(" * 3000 + "1" + ")" * 3000, "answer too long to check (over 1000 characters)"),
        ("(" * 300 + "1" + ")" * 300, "answer too complex to check (brackets nested too deeply)"),
        (r"\left[" * 60 + "1" + r"\right]" * 60, "answer too complex to check (brackets nested too deeply)"),
    ],
)
def test_absurd_answers_are_refused_at_once(answer, reason):
    start = time.monotonic()
    verdict = verify(rf"The answer is $\boxed{{{answer}}}$.", "5")
    assert not verdict.correct and verdict.reason == reason
    assert time.monotonic() - start < 0.5


def test_a_huge_number_is_refused_even_if_it_equals_the_gold():
    assert not math_verify_directly(rf"\boxed{{{HUGE_NUMBER}}}", HUGE_NUMBER)  # math-verify agrees
    assert verify(rf"\boxed{{{HUGE_NUMBER}}}", HUGE_NUMBER).reason.startswith("answer too long")


def test_an_absurd_gold_is_named():
    assert verify(r"\boxed{1}", "2^{2^{2^{2}}}").reason == "gold answer too complex to check (nested powers)"


def test_a_huge_response_is_refused_at_once():
    start = time.monotonic()
    verdict = verify("x" * (math_verifier.MAX_RESPONSE_CHARS + 1) + r"\boxed{5}", "5")
    assert verdict.reason.startswith("response too long") and time.monotonic() - start < 0.5


@pytest.mark.parametrize("tower", ["9^{9^{9}}", "2^{10^{10}}"])
def test_expensive_answers_are_cut_off_by_the_worker_deadline(tower):
    start = time.monotonic()
    verdict = verify(rf"\boxed{{{tower}}}", "5", timeout_s=1.0)
    assert not verdict.correct
    assert verdict.reason in (
        "timeout after 1s",
        "math verifier crashed on this answer (memory or recursion)",
    )
    assert time.monotonic() - start < 3.0
    assert verify(r"\boxed{\frac{2}{4}}", "0.5").correct  # the pool recovered


def test_timeouts_are_not_cached():
    response = r"\boxed{\sin^2 x + \cos^2 x}"  # sympy simplifies this in about 0.2 s
    assert verify(response, "1", timeout_s=0.01).reason == "timeout after 0.01s"
    assert verify(response, "1").correct


def test_the_deadline_starts_when_a_worker_takes_the_response():
    """Waiting for a free worker does not count against a response's deadline."""
    for _ in range(math_verifier.POOL_SIZE):
        math_verifier._worker_slots.acquire()
    verdicts = []
    waiting = threading.Thread(
        target=lambda: verdicts.append(verify(r"\boxed{\frac{14}{4}}", "3.5", timeout_s=0.5))
    )
    waiting.start()
    time.sleep(1.0)  # twice the deadline spent waiting for a worker
    for _ in range(math_verifier.POOL_SIZE):
        math_verifier._worker_slots.release()
    waiting.join()
    assert verdicts[0].correct, verdicts


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


def test_long_response_is_checked_quickly():
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
