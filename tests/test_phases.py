"""The start-up lines of `rlscale run` (rlscale.phases), on a fake clock: one line as each phase
begins, one with its duration as it ends, overlapping phases timed apart, and a closing total
(the step bar starts after it). The real run's lines: tests/test_readme_commands.py."""

from __future__ import annotations

import pytest

from rlscale.phases import StartupPhases


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_phases_print_a_line_each_with_its_duration_then_the_total():
    clock, lines = Clock(), []
    phases = StartupPhases(log=lines.append, clock=clock)
    with phases.phase("model builtin:tiny (build or load)"):
        clock.now += 12.34
    with phases.phase("Ray", announce=False):
        lines.append("starting a local Ray ...")  # the phase's own first line
        clock.now += 3.0
    phases.begin("learner")  # these two overlap: each timed from its own begin
    clock.now += 1.0
    phases.begin("1 rollout engine (vLLM)")
    clock.now += 20.0
    assert phases.end("learner") == pytest.approx(21.0)
    clock.now += 10.0
    phases.end("1 rollout engine (vLLM)")
    assert phases.done("training to step 400") == pytest.approx(46.34)
    assert lines == [
        "model builtin:tiny (build or load) ...",
        "model builtin:tiny (build or load): 12.3 s",
        "starting a local Ray ...",
        "Ray: 3.0 s",
        "learner ...",
        "1 rollout engine (vLLM) ...",
        "learner: 21.0 s",
        "1 rollout engine (vLLM): 30.0 s",
        "start-up: 46.3 s (model builtin:tiny (build or load) 12.3 s, Ray 3.0 s, learner 21.0 s, "
        "1 rollout engine (vLLM) 30.0 s); training to step 400",
    ]


def test_a_failed_phase_prints_no_duration():
    clock, lines = Clock(), []
    phases = StartupPhases(log=lines.append, clock=clock)
    with pytest.raises(RuntimeError), phases.phase("model x (build or load)"):
        raise RuntimeError("no such model")
    assert lines == ["model x (build or load) ..."] and phases.seconds == {}
