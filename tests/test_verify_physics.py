"""Physics verifier: numbers with units (pint), tolerances, dimensions, symbolic answers."""

import time

import pytest

from rlscale.verifiers.physics import parse_quantity, verify


@pytest.mark.parametrize(
    ("text", "magnitude", "units"),
    [
        ("3.2 km/h", 3.2, "kilometer / hour"),
        ("9.81 m/s^2", 9.81, "meter / second ** 2"),
        ("4.5e3 J", 4500.0, "joule"),
        (r"9.81\,\mathrm{m/s^2}", 9.81, "meter / second ** 2"),
        (r"10\ \text{kg}", 10.0, "kilogram"),
        (r"4.5 \times 10^{3}\,\mathrm{J}", 4500.0, "joule"),
        (r"1.6\times10^{-19}~\mathrm{C}", 1.6e-19, "coulomb"),
        (r"5\,\mathrm{m\,s^{-1}}", 5.0, "meter / second"),
        (r"3\,\mu\mathrm{m}", 3.0, "micrometer"),
        (r"2\,\mathrm{k\Omega}", 2.0, "kiloohm"),
        (r"25^\circ\mathrm{C}", 25.0, "degree_Celsius"),
        (r"$v = 12\,\mathrm{m/s}$", 12.0, "meter / second"),
        ("0.5", 0.5, "dimensionless"),
    ],
)
def test_parse_quantity(text, magnitude, units):
    quantity = parse_quantity(text)
    assert quantity.magnitude == pytest.approx(magnitude)
    assert str(quantity.units) == units


CORRECT = [
    (r"\boxed{0.889 m/s}", "3.2 km/h"),
    ("The answer is 9.8 m/s^2.", "9.81 m/s^2"),
    (r"\boxed{9.81\,\mathrm{m\,s^{-2}}}", "9.81 m/s^2"),
    ("so the energy is 4.5 kJ.", "4500 J"),
    (r"<answer>4.5 \times 10^{3} J</answer>", "4.5 kJ"),
    (r"\boxed{298.15 K}", r"25 ^\circ C"),
    (r"\boxed{1000\,\text{g}}", "1 kg"),
    (r"\boxed{3.6 \times 10^{6}\ \mathrm{J}}", "1 kWh"),
    (r"\boxed{101.3 kPa}", "1 atm"),
    (r"\boxed{0.5236 rad}", "30 deg"),
    (r"\boxed{1.005}", "1"),
    (r"\boxed{v = \sqrt{2 g h}}", r"\sqrt{2gh}"),
    (r"\boxed{\frac{1}{2} m v^2}", r"\frac{m v^{2}}{2}"),
    (r"\boxed{mg\sin\theta}", r"m g \sin(\theta)"),
]

WRONG = [
    (r"\boxed{3.2 m/s}", "3.2 km/h"),
    (r"\boxed{9.5 m/s^2}", "9.81 m/s^2"),
    (r"\boxed{1.03}", "1"),
    (r"\boxed{5 \text{kg}}", "5 g"),
    (r"\boxed{v = \sqrt{g h}}", r"\sqrt{2gh}"),
    (r"\boxed{fast}", "3 m/s"),
    (r"\boxed{3 furlongs-ish}", "3 m"),
    ("", "3 m"),
    ("no answer here", "3 m"),
]


@pytest.mark.parametrize(("response", "gold"), CORRECT)
def test_correct(response, gold):
    verdict = verify(response, gold)
    assert verdict.correct and verdict.score == 1.0, verdict


@pytest.mark.parametrize(("response", "gold"), WRONG)
def test_wrong(response, gold):
    verdict = verify(response, gold)
    assert not verdict.correct and verdict.score == 0.0, verdict


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        (r"\boxed{9.8 m/s}", "9.81 m/s^2"),
        (r"\boxed{5 J}", "5 N"),
        (r"\boxed{5}", "5 m"),
        (r"\boxed{5 m}", "5"),
    ],
)
def test_dimension_mismatch_is_wrong_and_says_so(response, gold):
    verdict = verify(response, gold)
    assert not verdict.correct and "dimension" in verdict.reason


def test_relative_tolerance_is_a_parameter():
    assert not verify(r"\boxed{9.5 m/s^2}", "9.81 m/s^2").correct
    assert verify(r"\boxed{9.5 m/s^2}", "9.81 m/s^2", rel_tol=0.05).correct


@pytest.mark.parametrize(
    "answer",
    [
        "5 m^(10^10^10)",
        "5 m^10^10^10",
        "9" * 20_000 + " m",
        "1e99999 m",
        "5 " + "(" * 3000 + "m" + ")" * 3000,
    ],
)
def test_hostile_answers_come_back_fast(answer):
    start = time.monotonic()
    assert not verify(rf"\boxed{{{answer}}}", "5 m").correct
    assert time.monotonic() - start < 0.5


def test_hostile_symbolic_answer_is_bounded():
    start = time.monotonic()
    assert not verify(r"\boxed{2^{2^{2^{2^{2^2}}}} g h}", r"\sqrt{2gh}").correct
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("response", [None, 3.2, ["3 m"]])
def test_non_text_never_raises(response):
    assert not verify(response, "3 m").correct
