"""Rule-based verifiers. Each returns a Verdict and never raises on model output."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    score: float  # in [0, 1]
    correct: bool
    reason: str
    # hack surfaces the response touched (e.g. "exit-before-tests", "settrace"): counted per step
    # as `verifier/hack_suspects`, information for the researcher and never part of the score
    flags: tuple[str, ...] = ()

    @classmethod
    def right(cls, reason: str = "correct") -> "Verdict":
        return cls(1.0, True, reason)

    @classmethod
    def wrong(cls, reason: str) -> "Verdict":
        return cls(0.0, False, reason)


__all__ = ["Verdict"]
