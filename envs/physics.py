"""Procedural physics problems whose answers carry units: kinematics, dynamics, energy, units.

`difficulty` sets how many steps a problem takes: 1 is one formula in SI units; 2 adds a unit
conversion on the way in or out (km/h, g, cm, ms); 3 needs two steps or two conversions
(stopping time from km/h and km in minutes, friction then distance in cm, power in kW from
tonnes and minutes, chained unit conversions). Answers are computed with pint from the very
numbers printed in the prompt, rounded to 4 significant digits, and judged by the physics
verifier within `rel_tol`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import numpy as np
import pint

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import physics as physics_verifier

KINDS = ("kinematics", "dynamics", "energy", "units")
G_TEXT = "Use g = 9.81 m/s^2."


@functools.cache
def _units() -> pint.UnitRegistry:
    return pint.UnitRegistry()


def _q(value: float, unit: str) -> pint.Quantity:
    return _units().Quantity(value, unit)


def _fmt(value: float) -> str:
    """4 significant digits, never in exponent form (`1234.5` -> `1235`, `0.012345` -> `0.01235`)."""
    return np.format_float_positional(value, precision=4, unique=False, fractional=False, trim="-")


def _num(rng: random.Random, low: float, high: float, decimals: int = 0) -> float:
    """A number that prints exactly as it is used: an integer or one with `decimals` digits."""
    value = round(rng.uniform(low, high), decimals)
    return int(value) if decimals == 0 else value


# Each template: rng -> (question, answer quantity, unit the answer is asked in).
Template = Callable[[random.Random], tuple[str, pint.Quantity, str]]


def _kinematics_1(rng):
    a, t = _num(rng, 1, 9, 1), _num(rng, 2, 12)
    question = f"A cart starts from rest and accelerates at {a} m/s^2 for {t} s. How far does it travel?"
    return question, 0.5 * _q(a, "m/s^2") * _q(t, "s") ** 2, "m"


def _kinematics_2(rng):
    v0, a, t = _num(rng, 18, 90), _num(rng, 0.5, 4, 1), _num(rng, 2, 10)
    question = f"A car moving at {v0} km/h accelerates at {a} m/s^2 for {t} s. What is its final speed?"
    return question, _q(v0, "km/h") + _q(a, "m/s^2") * _q(t, "s"), "m/s"


def _kinematics_3(rng):
    v0, d = _num(rng, 60, 200), _num(rng, 0.5, 3, 1)
    question = (
        f"A train moving at {v0} km/h brakes uniformly and stops after {d} km. "
        "How long does the braking take?"
    )
    return question, 2 * _q(d, "km") / _q(v0, "km/h"), "min"


def _dynamics_1(rng):
    m, a = _num(rng, 2, 60), _num(rng, 0.5, 9, 1)
    return f"What net force accelerates a {m} kg box at {a} m/s^2?", _q(m, "kg") * _q(a, "m/s^2"), "N"


def _dynamics_2(rng):
    m, v, t = _num(rng, 50, 500), _num(rng, 2, 40), _num(rng, 5, 200)
    question = f"A {m} g ball goes from rest to {v} m/s in {t} ms. What average net force acts on it?"
    return question, _q(m, "g") * _q(v, "m/s") / _q(t, "ms"), "N"


def _dynamics_3(rng):
    m, mu, t = _num(rng, 5, 50), _num(rng, 0.1, 0.6, 2), _num(rng, 1, 4)
    force = round(_num(rng, 1.5, 3, 1) * mu * m * 9.81)  # enough to overcome friction
    question = (
        f"A {m} kg crate starts from rest and is pulled along a floor by a horizontal force of "
        f"{force} N; the coefficient of kinetic friction is {mu}. How far does it move in {t} s? {G_TEXT}"
    )
    mass, g = _q(m, "kg"), _q(9.81, "m/s^2")
    acceleration = (_q(force, "N") - mu * mass * g) / mass
    return question, 0.5 * acceleration * _q(t, "s") ** 2, "cm"


def _energy_1(rng):
    m, v = _num(rng, 1, 80), _num(rng, 1, 30)
    question = f"What is the kinetic energy of a {m} kg object moving at {v} m/s?"
    return question, 0.5 * _q(m, "kg") * _q(v, "m/s") ** 2, "J"


def _energy_2(rng):
    h = _num(rng, 20, 900)
    question = f"A ball is dropped from {h} cm. How fast is it moving when it lands? Ignore air. {G_TEXT}"
    return question, (2 * _q(9.81, "m/s^2") * _q(h, "cm")) ** 0.5, "m/s"


def _energy_3(rng):
    m, h, t = _num(rng, 0.5, 5, 1), _num(rng, 5, 60), _num(rng, 1, 10)
    question = f"A motor lifts a {m} t load by {h} m in {t} min at constant speed. Its power? {G_TEXT}"
    return question, _q(m, "t") * _q(9.81, "m/s^2") * _q(h, "m") / _q(t, "min"), "kW"


# Conversions by difficulty: one prefix or unit; a compound unit; a chain across unit systems.
_CONVERSIONS = {
    1: [("km", "m"), ("g", "kg"), ("min", "s"), ("mm", "cm"), ("h", "min"), ("kJ", "J")],
    2: [("km/h", "m/s"), ("g/cm^3", "kg/m^3"), ("m/s", "km/h"), ("N/cm^2", "kPa"), ("L/min", "L/s")],
    3: [("kWh", "MJ"), ("mi/h", "m/s"), ("ft/s", "km/h"), ("L/min", "m^3/h"), ("g/cm^3", "lb/ft^3")],
}


def _units_template(level: int) -> Template:
    def template(rng):
        source, target = rng.choice(_CONVERSIONS[level])
        x = _num(rng, 1, 100, 1)
        return f"Convert {x} {source} to {target}.", _q(x, source), target

    return template


_TEMPLATES: dict[tuple[str, int], Template] = {
    ("kinematics", 1): _kinematics_1,
    ("kinematics", 2): _kinematics_2,
    ("kinematics", 3): _kinematics_3,
    ("dynamics", 1): _dynamics_1,
    ("dynamics", 2): _dynamics_2,
    ("dynamics", 3): _dynamics_3,
    ("energy", 1): _energy_1,
    ("energy", 2): _energy_2,
    ("energy", 3): _energy_3,
    **{("units", level): _units_template(level) for level in (1, 2, 3)},
}


@register("physics")
class Physics(Environment):
    description = "kinematics, dynamics, energy and unit problems with units; difficulty 1-3 steps"

    def __init__(self, kinds: tuple[str, ...] = KINDS, difficulty: int = 1, rel_tol: float = 0.01):
        unknown = set(kinds) - set(KINDS)
        if not kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}; unknown: {sorted(unknown)}")
        if difficulty not in (1, 2, 3):
            raise ValueError(f"difficulty must be 1, 2 or 3, got {difficulty!r}")
        if not 0 < rel_tol < 1:
            raise ValueError("rel_tol must be in (0, 1)")
        self.kinds, self.difficulty, self.rel_tol = tuple(kinds), difficulty, rel_tol

    def sample(self, rng: random.Random) -> Task:
        kind = rng.choice(self.kinds)
        question, quantity, unit = _TEMPLATES[kind, self.difficulty](rng)
        answer = f"{_fmt(quantity.to(unit).magnitude)} {unit}"
        meta = {"kind": kind, "difficulty": self.difficulty, "unit": unit}
        return Task(prompt=f"{question} Answer in {unit}.\n", answer=answer, meta=meta)

    def score(self, task: Task, response: str) -> Verdict:
        return physics_verifier.verify(response, task.answer, rel_tol=self.rel_tol)
