"""Where a run's step time goes: rollout, verify, learn, sync, other."""

from __future__ import annotations

import math

from rlscale import metric_names as M
from rlscale.bench.common import _opt
from rlscale.metric_names import STEP_PARTS


def step_breakdown(frame, *, skip_first: int = 0) -> dict:
    """Shares of step time from a run's metrics: rollout, verify, learn, sync, other.

    `time/wall_s` is cumulative, so a step's total is its difference from the step before (the
    first step's total is its own value). Shares are time-weighted: sum of a part over the steps
    divided by the sum of the totals. `skip_first` leaves out warm-up steps.
    """
    wall = frame[M.WALL_S].astype(float)
    totals = wall.diff().fillna(wall.iloc[0])
    rows = slice(skip_first, None)
    total = float(totals.iloc[rows].sum())
    seconds = {part: float(frame[M.step_time(part)].iloc[rows].astype(float).sum()) for part in STEP_PARTS}
    seconds["other"] = total - sum(seconds.values())
    steps = frame["step"].iloc[rows]
    n = len(steps)
    busy = frame[M.LEARNER_BUSY_S].iloc[rows].astype(float) if M.LEARNER_BUSY_S in frame else None
    return {
        # the learner's own time; above "learn" only where the update overlapped sampling
        "learner_busy_s": float(busy.mean()) if busy is not None else math.nan,
        "steps": n,
        "first_step": int(steps.iloc[0]),
        "last_step": int(steps.iloc[-1]),
        "step_s": total / n,
        "seconds": {k: v / n for k, v in seconds.items()},  # mean per step
        "shares": {k: v / total if total > 0 else math.nan for k, v in seconds.items()},
    }


def _print_breakdown(result: dict, indent: str = "  ") -> None:
    print(
        f"{indent}steps {result['first_step']}-{result['last_step']} ({result['steps']}), "
        f"mean step {result['step_s']:.3f} s"
    )
    for part, share in result["shares"].items():
        print(f"{indent}  {part:<8} {result['seconds'][part]:>8.3f} s  {100 * share:>5.1f}%")
    hidden = result["learner_busy_s"] - result["seconds"]["learn"]
    if hidden > 1e-3:
        print(
            f"{indent}  (the update took {result['learner_busy_s']:.3f} s; {hidden:.3f} s of it ran "
            "while the next batch was sampled and is not counted above)"
        )


def bench_breakdown(args) -> dict:
    """`rlscale bench breakdown RUN_DIR`: per-step time shares of a finished (or running) run."""
    from rlscale.config import ConfigError
    from rlscale.telemetry import TelemetryError, load_metrics

    if not args.run_dir:
        raise ConfigError("rlscale bench breakdown: give a RUN_DIR")
    try:
        frame = load_metrics(args.run_dir)
    except FileNotFoundError as err:
        raise TelemetryError(str(err)) from None
    if frame.empty or M.WALL_S not in frame:
        raise TelemetryError(f"{args.run_dir}: metrics.jsonl holds no timed steps")
    result = {"run_dir": str(args.run_dir), **step_breakdown(frame, skip_first=_opt(args, "skip_steps", 0))}
    print(f"step breakdown  {args.run_dir}")
    _print_breakdown(result)
    return result
