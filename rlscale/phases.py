"""A run's start-up phases, each printed as a line with its duration, before the step bar.

    environment arithmetic ...
    environment arithmetic: 0.0 s
    model builtin:tiny (build or load) ...
    model builtin:tiny (build or load): 12.3 s
    starting a local Ray ...                  (rlscale.cluster's own lines)
    Ray: 3.1 s
    learner ...
    1 rollout engine (vLLM) ...
    learner: 20.4 s
    1 rollout engine (vLLM): 31.0 s
    start-up: 48.2 s (environment arithmetic 0.0 s, model ... 12.3 s, Ray 3.1 s, learner 20.4 s,
    1 rollout engine (vLLM) 31.0 s); training to step 400

The step bar starts after the last line, so its rate and ETA count training steps only.
Phases may overlap (the learner and the engines start at once): each is timed from its own
`begin` to its `end`, and the total is wall-clock time since the first phase began.
"""

from __future__ import annotations

import contextlib
import time


class StartupPhases:
    def __init__(self, log=print, clock=time.perf_counter):
        self.log, self.clock = log, clock
        self.started = clock()
        self.open: dict[str, float] = {}  # name -> when it began
        self.seconds: dict[str, float] = {}  # name -> its duration, in the order they ended

    def begin(self, name: str, *, announce: bool = True) -> None:
        """`name ...` (unless announce=False: the phase prints its own first line)."""
        self.open[name] = self.clock()
        if announce:
            self.log(f"{name} ...")

    def end(self, name: str) -> float:
        """`name: 12.3 s`, timed from its begin; returns the seconds."""
        seconds = self.clock() - self.open.pop(name)
        self.seconds[name] = seconds
        self.log(f"{name}: {seconds:.1f} s")
        return seconds

    @contextlib.contextmanager
    def phase(self, name: str, *, announce: bool = True):
        """begin and end around a block (no end line if the block raises)."""
        self.begin(name, announce=announce)
        yield
        self.end(name)

    def done(self, what_next: str = "training") -> float:
        """The closing line: the wall-clock total and each phase; returns the total."""
        total = self.clock() - self.started
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        self.log(f"start-up: {total:.1f} s ({parts}); {what_next}")
        return total
