"""A sweep's tuning stage (`tune:` in the spec, `rlscale.sweep`): a short sweep over candidate
values (a learning rate, say) run first, one pick per `per` group by a stated rule, the picks
written to tune.json and added to the main points' overrides.

The pick (`pick`) is a pure function of the tuning points and their metric frames: per group
and candidate, the score is the mean over seeds of the rule's value of the metric (`final`:
mean over the last 10% of the run's steps, the report's "final"; `mean`: mean over the whole
run). A candidate with a seed that did not finish (no frame, or no finite value) is not
scored: a failed run never wins. The highest score wins; scores within `tolerance` of it tie,
and a tie goes to the smallest candidate (its values compared in the order of tune.grid's
keys): the smaller learning rate, the cheaper and safer choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from rlscale.config import ConfigError
from rlscale.sweep import Point, SweepSpec, TuneSpec, _yaml_value

TUNE_DIR = "tune"
TUNE_FILE = "tune.json"


def tune_spec(spec: SweepSpec) -> SweepSpec:
    """The tuning stage as a sweep of its own: the `per` keys' values from the main grid x
    the candidates x `seeds` seeds, the main `fixed` under `tune.fixed`, runs under
    <output_dir>/tune/<point>."""
    tune = spec.tune
    assert tune is not None
    grid = {k: spec.grid[k] for k in tune.per}
    grid.update(tune.grid)
    grid[spec.seed_key] = list(range(tune.seeds))
    fixed = {k: v for k, v in {**spec.fixed, **tune.fixed}.items() if k not in grid}
    sub = spec.model_copy(
        update={
            "name": f"{spec.name}/{TUNE_DIR}",
            "output_dir": str(Path(spec.output_dir) / TUNE_DIR),
            "description": f"tuning stage of {spec.name}",
            "grid": grid,
            "zip": [],
            "fixed": fixed,
            "tune": None,
        }
    )
    sub._path = spec.path
    return sub


def _score(frame: pd.DataFrame | None, tune: TuneSpec) -> float:
    if frame is None or tune.metric not in frame:
        return math.nan
    if tune.rule == "final":
        from rlscale.sweep_report import final_mean  # the report's "final"; it loads scipy

        return final_mean(frame, tune.metric)
    return float(frame[tune.metric].dropna().mean())


def _group_key(point: Point, per: list[str]) -> tuple:
    return tuple(_yaml_value(point.values[k]) for k in per)


def _order(value: Any):
    """Sort key of a candidate value: numbers by value, anything else by its text, after numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return (1, 0.0, str(value))
    return (0, float(value), "")


def pick(tune: TuneSpec, points: list[Point], frames: dict[str, pd.DataFrame | None]) -> list[dict]:
    """One choice per `per` group: {"per": {key: value}, "chosen": {key: value} or None,
    "score", "candidates": [{"values", "score", "seeds", "failed"}], "note"}. `frames` maps a
    tuning point's name to its metric frame, None (or absent) when it did not finish."""
    keys = list(tune.grid)
    groups: dict[tuple, dict] = {}
    for p in points:
        group = groups.setdefault(
            _group_key(p, tune.per), {"per": {k: p.values[k] for k in tune.per}, "cands": {}}
        )
        cand = tuple(_yaml_value(p.values[k]) for k in keys)
        entry = group["cands"].setdefault(
            cand, {"values": {k: p.values[k] for k in keys}, "scores": [], "failed": []}
        )
        score = _score(frames.get(p.name), tune)
        if math.isfinite(score):
            entry["scores"].append(score)
        else:
            entry["failed"].append(p.name)

    choices = []
    for group in groups.values():
        candidates = []
        for entry in group["cands"].values():
            ok = entry["scores"] and not entry["failed"]
            candidates.append(
                {
                    "values": entry["values"],
                    "score": sum(entry["scores"]) / len(entry["scores"]) if ok else math.nan,
                    "seeds": len(entry["scores"]),
                    "failed": entry["failed"],
                }
            )
        candidates.sort(key=lambda c: [_order(c["values"][k]) for k in keys])
        scored = [c for c in candidates if math.isfinite(c["score"])]
        choice = {
            "per": group["per"],
            "chosen": None,
            "score": math.nan,
            "candidates": candidates,
            "note": "",
        }
        if not scored:
            choice["note"] = "every candidate failed or did not finish: nothing to pick"
        else:
            best = max(c["score"] for c in scored)
            tied = [c for c in scored if c["score"] >= best - tune.tolerance]
            winner = tied[0]  # candidates are in increasing order: the smallest of the tied
            choice.update(chosen=dict(winner["values"]), score=winner["score"])
            notes = []
            if len(tied) > 1:
                notes.append(
                    f"{len(tied)} candidates tie (within {tune.tolerance:g} of the best): the smallest wins"
                )
            notes += _edge_notes(tune, winner["values"])
            choice["note"] = "; ".join(notes)
        choices.append(choice)
    return choices


def _edge_notes(tune: TuneSpec, chosen: dict) -> list[str]:
    """A pick at the smallest or largest of three or more numeric candidates: the best value
    may lie outside the grid, and the tune stage cannot tell."""
    notes = []
    for key, value in chosen.items():
        numbers = sorted({float(v) for v in tune.grid[key] if _order(v)[0] == 0})
        if len(numbers) < 3 or _order(value)[0] != 0:
            continue
        for end, bound in (("smallest", numbers[0]), ("largest", numbers[-1])):
            if float(value) == bound:
                notes.append(
                    f"{key}={_yaml_value(value)} is the {end} candidate: the best may lie beyond the grid"
                )
    return notes


def rule_text(tune: TuneSpec) -> str:
    what = "mean over the last 10% of steps" if tune.rule == "final" else "mean over all steps"
    return (
        f"highest {tune.rule} `{tune.metric}` ({what}, averaged over {tune.seeds} seed(s)); "
        f"ties within {tune.tolerance:g} go to the smallest value; a failed run never wins"
    )


def write_choices(spec: SweepSpec, choices: list[dict]) -> Path:
    from rlscale.fitting import json_safe

    tune = spec.tune
    path = Path(spec.output_dir) / TUNE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "sweep": spec.name,
        "rule": tune.rule,
        "metric": tune.metric,
        "tolerance": tune.tolerance,
        "rule_text": rule_text(tune),
        "per": tune.per,
        "keys": list(tune.grid),
        "choices": choices,
    }
    path.write_text(json.dumps(json_safe(data), indent=2))
    return path


def read_choices(spec: SweepSpec) -> list[dict] | None:
    path = Path(spec.output_dir) / TUNE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["choices"]
    except (ValueError, KeyError) as err:
        raise ConfigError(f"{path}: not a tune.json written by rlscale sweep ({err})") from None


def choices_text(choices: list[dict]) -> list[str]:
    lines = []
    for c in choices:
        group = ",".join(f"{k}={_yaml_value(v)}" for k, v in c["per"].items()) or "all points"
        scores = ", ".join(
            " ".join(_yaml_value(v) for v in cand["values"].values())
            + (f": {cand['score']:.4g}" if math.isfinite(cand["score"]) else ": failed")
            for cand in c["candidates"]
        )
        if c["chosen"] is None:
            lines.append(f"tune {group}: no pick ({c['note']}) [{scores}]")
        else:
            chosen = " ".join(f"{k}={_yaml_value(v)}" for k, v in c["chosen"].items())
            note = f"; {c['note']}" if c["note"] else ""
            lines.append(f"tune {group}: {chosen} (score {c['score']:.4g}{note}) [{scores}]")
    return lines


def apply_choices(spec: SweepSpec, points: list[Point], choices: list[dict] | None) -> list[Point]:
    """The main points with their group's chosen values added to their overrides. Without
    choices (a dry run before the tune stage ran) each candidate key gets its first value, so
    that the main points can still be validated. Raises ConfigError when a group has no pick."""
    tune = spec.tune
    by_group = {tuple(_yaml_value(c["per"][k]) for k in tune.per): c for c in choices or []}
    out = []
    for p in points:
        if choices is None:
            chosen = {k: v[0] for k, v in tune.grid.items()}
        else:
            choice = by_group.get(_group_key(p, tune.per))
            if choice is None or choice["chosen"] is None:
                why = choice["note"] if choice else "no such group in tune.json"
                raise ConfigError(f"sweep {spec.path}: tune stage made no pick for point {p.name}: {why}")
            chosen = choice["chosen"]
        overrides = [*p.overrides, *(f"{k}={_yaml_value(v)}" for k, v in chosen.items())]
        out.append(Point(p.name, p.values, p.group, overrides))
    return out


def tuned_values(spec: SweepSpec, choices: list[dict] | None) -> dict[str, dict]:
    """Main group name -> its chosen values (for the report)."""
    if spec.tune is None or not choices:
        return {}
    from rlscale.sweep import expand

    by_group = {tuple(_yaml_value(c["per"][k]) for k in spec.tune.per): c for c in choices}
    out = {}
    for p in expand(spec):
        choice = by_group.get(_group_key(p, spec.tune.per))
        if choice and choice["chosen"] is not None:
            out[p.group] = choice["chosen"]
    return out


def run_stage(spec: SweepSpec, *, parallel=None, log=print) -> tuple[list[dict], dict]:
    """Run (or skip, when finished) the tuning points, pick, write tune.json, print the picks.
    Returns (choices, run results)."""
    from rlscale.sweep import expand, validate
    from rlscale.sweep_run import run_points
    from rlscale.telemetry import load_metrics

    sub = tune_spec(spec)
    points = expand(sub)
    configs = validate(sub, points)
    log(f"tune stage: {len(points)} runs under {sub.output_dir}; rule: {rule_text(spec.tune)}")
    results = run_points(sub, points, configs, parallel=parallel, log=log)
    frames = {}
    for p in points:
        run_dir = p.run_dir(sub)
        frames[p.name] = load_metrics(run_dir) if (run_dir / "summary.json").is_file() else None
    choices = pick(spec.tune, points, frames)
    path = write_choices(spec, choices)
    for line in choices_text(choices):
        log(line)
    log(f"tune choices: {path}")
    return choices, results
