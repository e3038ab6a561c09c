"""Physics verifier: numbers with units compared with pint, symbolic answers with sympy.

A numeric answer is a number (`3.2`, `4.5e3`, `4.5 \\times 10^{3}`) followed by units in plain
text or LaTeX (`m/s^2`, `\\mathrm{m\\,s^{-1}}`, `\\text{kg}`). The LaTeX is flattened to plain
text and the units are checked against a small grammar before pint sees them, because pint
evaluates exponents as Python numbers (`m^(10^10^10)` would never return). Symbolic answers
(`v = \\sqrt{2 g h}`) go to the math verifier's time-bounded sympy comparison.

The answer is read from the last `<answer>…</answer>` if there is one; there or else in the
whole response, from the last `\\boxed{}` or "the answer is …", whichever comes later; else
from the last line that holds a number ("so v = 3 m/s." -> "3 m/s"). math-verify's extraction
does not serve here: it drops the units.
"""

from __future__ import annotations

import functools
import re
from collections import deque

import pint

from rlscale.verifiers import Verdict
from rlscale.verifiers import math as math_verifier

MAX_ANSWER_CHARS = 500
MAX_UNITS_CHARS = 60

# Applied in order: exponents lose their braces before \mathrm{…} (whose body may hold them),
# and \mu joins the unit after it once that unit is out of its \mathrm{…}.
_LATEX_TO_TEXT = [
    (re.compile(r"\$|\\left|\\right"), ""),
    (re.compile(r"−"), "-"),
    (re.compile(r"\^\s*\{([^{}]*)\}"), r"^\1"),
    (re.compile(r"(?:\^\s*\\circ|°)\s*(?:\\mathrm\{C\}|\\text\{C\}|C)"), " degC "),
    (re.compile(r"\^\s*\\circ|\\circ|°"), " deg "),
    (re.compile(r"\\(?:mathrm|text|textrm|mathit|operatorname|unit)\s*\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}"), r"(\1)/(\2)"),
    (re.compile(r"(?:\\mu(?![A-Za-z])|μ)\s*"), "µ"),
    (re.compile(r"\\Omega(?![A-Za-z])"), "Ω"),
    (re.compile(r"\\[,;:! ]|~"), " "),
    (re.compile(r"\\(?:cdot|times)(?![A-Za-z])|×|·"), "*"),
    (re.compile(r"\\?%"), " percent "),
]
_QUANTITY = re.compile(
    r"(?:[A-Za-z\\][\w\\{}]*\s*=\s*)?"  # an optional "v ="
    r"(?P<mantissa>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:\s*[eE]\s*(?P<exponent>[+-]?\d{1,4})"
    r"|\s*\*\s*10\s*(?:\^|\*\*)\s*\(?(?P<power>[+-]?\d{1,4})\)?)?"
    r"\s*(?P<units>.*?)\s*"
)
# Unit names, products, quotients, brackets, and exponents of at most two digits that are not
# themselves raised to a power.
_SAFE_UNITS = re.compile(r"(?:(?:\^|\*\*)[+-]?\d{1,2}(?!\s*(?:\^|\*\*|\d))|[A-Za-zµΩ°* /()])*")
_FIRST_NUMBER = re.compile(r"[+-]?(?:\d|\.\d)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)[\s:]*(.+)", re.IGNORECASE)
_MATH_SPAN = re.compile(r"\$\$?([^$]+)\$\$?|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")


def verify(response: str, gold: str, *, rel_tol: float = 1e-2) -> Verdict:
    try:
        answer = extract_answer(response)
        if answer is None:
            return Verdict.wrong("no answer found")
        if len(answer) > MAX_ANSWER_CHARS:
            return Verdict.wrong(f"answer too long to check (over {MAX_ANSWER_CHARS} characters)")
        expected = parse_quantity(gold)
        if expected is None:  # a symbolic gold answer
            return math_verifier.equivalent(answer, gold)
        return _compare_quantities(parse_quantity(answer), expected, rel_tol)
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"verifier error: {error!r}")


def extract_answer(response: str) -> str | None:
    """The final answer of a response with its units, or None (rules in the module docstring)."""
    tag = math_verifier.answer_tag(response)
    if tag is not None:
        return _marked(tag) or _clean(tag) or None
    return _marked(response) or _last_line_from_number(response)


def _marked(text: str) -> str | None:
    """The content of the last \\boxed{} or "answer is …" in text, whichever starts later."""
    answer_is = deque(_ANSWER_IS.finditer(text), maxlen=1)
    boxed = math_verifier.last_boxed(text[answer_is[0].start() :] if answer_is else text)
    if boxed is not None:
        return boxed or None
    return (_clean(answer_is[0].group(1)) or None) if answer_is else None


def _clean(answer: str) -> str:
    """A math span that opens the answer, or the answer up to the end of its sentence."""
    answer = answer.strip()
    span = _MATH_SPAN.match(answer)
    if span:
        return next(group for group in span.groups() if group).strip()
    return _SENTENCE_END.split(answer, maxsplit=1)[0].strip().rstrip(".").strip()


def parse_quantity(text: str) -> pint.Quantity | None:
    """A number with optional units (plain text or LaTeX) as a pint Quantity, or None."""
    for pattern, replacement in _LATEX_TO_TEXT:
        text = pattern.sub(replacement, text)
    match = _QUANTITY.fullmatch(text.strip().rstrip("."))
    if match is None:
        return None
    exponent = match["exponent"] or match["power"] or "0"
    units = _parse_units(" ".join(match["units"].split()))
    if units is None:
        return None
    return _registry().Quantity(float(f"{match['mantissa']}e{exponent}"), units)


def _compare_quantities(got: pint.Quantity | None, expected: pint.Quantity, rel_tol: float):
    if got is None:
        return Verdict.wrong("could not read a number with known units from the answer")
    try:
        value = got.to(expected.units).magnitude
    except pint.DimensionalityError:
        return Verdict.wrong(
            f"dimension mismatch: answer is {_dimension(got)}, expected {_dimension(expected)}"
        )
    target = expected.magnitude
    if abs(value - target) <= rel_tol * abs(target):
        return Verdict.right(f"equal within {rel_tol:g} relative tolerance")
    return Verdict.wrong(f"{got:~P} is not {expected:~P} (relative tolerance {rel_tol:g})")


def _dimension(quantity: pint.Quantity) -> str:
    return str(quantity.dimensionality) if not quantity.dimensionless else "dimensionless"


@functools.lru_cache(maxsize=4096)
def _parse_units(text: str) -> pint.Unit | None:
    if len(text) > MAX_UNITS_CHARS or not _SAFE_UNITS.fullmatch(text):
        return None
    try:
        return _registry().parse_units(text) if text else _registry().dimensionless
    except Exception:  # pint raises several kinds for unknown or malformed units
        return None


@functools.cache
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry()


def _last_line_from_number(text: str) -> str | None:
    """The last line that holds a number, from that number on: "so v = 3 m/s." -> "3 m/s"."""
    for line in reversed(text.strip().splitlines()):
        number = _FIRST_NUMBER.search(line)
        if number:
            return line[number.start() :].strip().rstrip(".")
    return None
