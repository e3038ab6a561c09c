"""Sweeps: a grid of config overrides, every point a run, run in parallel on Ray, then one
combined report. A spec (experiments/*.yaml):

    name: ladder                    # run dirs go to <output_dir>/<point>
    base: configs/demo.yaml         # relative to the current dir, else to the spec's dir or its parent
    output_dir: runs/sweeps/ladder  # default runs/sweeps/<name>
    grid:                           # cartesian product of these lists
      model: [builtin:tiny, builtin:small]
      trainer.seed: [0, 1, 2]
    zip:                            # lists that move together (one or a list of such blocks)
      rollout.group_size: [4, 8, 16]
      rollout.prompts_per_step: [64, 32, 16]
      _alloc: [g4, g8, g16]         # optional label (`_` key): names the point, sets nothing
    fixed: {trainer.steps: 100}     # set on every point
    parallel: 2                     # runs at once
    num_cpus: 1                     # Ray CPUs held by each run's driver process
    x: flops                        # x axis of the report (rlscale.metric_names.X_AXES)
    tune:                           # optional: a short sweep that runs first and picks values
      grid: {learner.lr: [1.0e-4, 3.0e-4, 1.0e-3]}   # the candidates (not in grid/zip/fixed)
      per: [model]                  # pick separately for each value of these grid keys
      fixed: {trainer.steps: 200}   # on every tuning run, over the sweep's `fixed`
      seeds: 1                      # seeds per candidate (seed_key = 0..seeds-1)
      rule: final                   # final: highest mean of `metric` over the last 10% of steps;
      metric: reward/mean           #   mean: highest mean over the whole run
      tolerance: 0.0                # scores within this of the best tie; ties -> smallest value

The tuning stage (`rlscale.sweep_tune`) runs as a sweep of its own under
`<output_dir>/tune/<point>`, picks one candidate per `per` group by the stated rule (a
candidate with a failed or unfinished seed never wins), writes `<output_dir>/tune.json`, then
the main grid runs with each point's chosen values added to its overrides. A group where every
candidate failed stops the sweep before the main stage.

Points are named from the values that vary (`model=builtin-tiny,seed=0`; a `<section>.name` key
by its section: `algo=dapo`); a point's run is
`name=<sweep>/<point>`. Points that differ only in `seed_key` (default trainer.seed) form a
group: the report shows each group's mean and spread over seeds and fits its pooled curve.

Every point's config is validated before anything starts. Each point then runs as a Ray task
that starts `python -m rlscale.cli run <point config>` as a subprocess connected to the
sweep's Ray cluster (its rollout and learner actors are placed there like any run's). A
subprocess rather than `orchestrator.run` inside the task: a crash, a hang (`timeout_s`) or
a vLLM/CUDA failure ends that point only, each point gets its own log file instead of N
progress bars interleaved, no torch/vLLM state leaks between points through a reused Ray
worker, and what ran is exactly what `rlscale run` does. A failed point is reported, not
fatal. Run the sweep again and finished points (with summary.json) are skipped, unfinished
ones resumed from their last checkpoint (`rlscale run --resume`), as long as the spec still
gives each point the settings its run dir holds; after a change (more steps, another rate) the
sweep stops and names the run dirs to move aside, rather than report old runs under new
settings. While it runs the terminal shows a bar over the points with an ETA counted in
training steps and each running point's step and reward, read from its metrics.jsonl.

Here: the spec, its points and their validation, and the command; running the points is
`rlscale.sweep_run` (with the progress display `SweepProgress`), the report `rlscale.sweep_report`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from rlscale.config import ConfigError, RunConfig
from rlscale.config_io import load_config, read_yaml_mapping, validate_model
from rlscale.metric_names import X_AXES

# ----------------------------------------------------------------------------- spec


class TuneSpec(BaseModel):
    """The tuning stage: candidates, the groups they are chosen for, the rule (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list[Any]]
    per: list[str] = Field(default_factory=list)
    fixed: dict[str, Any] = Field(default_factory=dict)
    seeds: int = Field(1, ge=1)
    rule: Literal["final", "mean"] = "final"
    metric: str = "reward/mean"
    tolerance: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TuneSpec:
        if not self.grid:
            raise ValueError("grid: no candidates to tune")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key}: empty list of values")
            if key in self.fixed:
                raise ValueError(f"grid.{key}: also set in tune.fixed")
        return self


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    base: str
    output_dir: str | None = None
    description: str = ""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    fixed: dict[str, Any] = Field(default_factory=dict)
    parallel: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0)
    timeout_s: float | None = Field(None, gt=0)
    seed_key: str = "trainer.seed"
    x: str = "flops"
    # the report's fitted metric; None: the fitting protocol's default (the eval mean when logged)
    metric: str | None = None
    bootstrap: int = Field(200, ge=0)
    tune: TuneSpec | None = None
    _path: Path | None = PrivateAttr(None)  # the spec file, set by load_spec

    @property
    def path(self) -> Path | None:
        return self._path

    @field_validator("zip", mode="before")
    @classmethod
    def _one_block(cls, v):
        return [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if self.output_dir is None:
            self.output_dir = f"runs/sweeps/{self.name}"
        if self.x not in X_AXES:
            raise ValueError(f"x: must be one of {sorted(X_AXES)}")
        blocks = [("grid", self.grid), *((f"zip[{i}]", z) for i, z in enumerate(self.zip))]
        for where, block in blocks:
            for key, values in block.items():
                if not values:
                    raise ValueError(f"{where}.{key}: empty list of values")
            if where != "grid" and len({len(v) for v in block.values()}) > 1:
                raise ValueError(f"{where}: lists must have the same length")
        seen: dict[str, str] = {}
        for where, block in [*blocks, ("fixed", self.fixed)]:
            for key in block:
                if key in ("name", "output_dir"):
                    raise ValueError(f"{where}.{key}: set by the sweep (its name and output_dir)")
                if key in seen:
                    raise ValueError(f"{where}.{key}: also set in {seen[key]}")
                seen[key] = where
        if self.tune is not None:
            for key in self.tune.grid:
                if key in seen:
                    raise ValueError(f"tune.grid.{key}: also set in {seen[key]} (the tune stage picks it)")
                if key in ("name", "output_dir", self.seed_key):
                    raise ValueError(f"tune.grid.{key}: cannot be tuned")
            for key in self.tune.per:
                if key not in self.grid:
                    raise ValueError(
                        f"tune.per: {key!r} is not a key of grid ({', '.join(self.grid) or 'empty'})"
                    )
                if key == self.seed_key:
                    raise ValueError(f"tune.per: {key!r} is the seed key; the pick is made over seeds")
        return self


def _resolve_base(base: str, spec_path: Path | None) -> Path:
    candidates = [Path(base)]
    if spec_path is not None and not Path(base).is_absolute():
        candidates += [spec_path.parent / base, spec_path.parent.parent / base]
    return next((p for p in candidates if p.is_file()), Path(base))


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    spec = validate_model(SweepSpec, read_yaml_mapping(path, "sweep spec"), str(path))
    spec._path = path
    spec.base = str(_resolve_base(spec.base, path))
    return spec


# ----------------------------------------------------------------------------- points


@dataclass
class Point:
    name: str  # directory name under the sweep's output_dir
    values: dict[str, Any]  # the varied keys (grid and zip), in spec order
    group: str  # name without the seed: points of one group differ only in seed
    overrides: list[str] = field(default_factory=list)  # `key=value` as for `rlscale run`

    def run_dir(self, spec: SweepSpec) -> Path:
        return Path(spec.output_dir) / self.name


def _yaml_value(value) -> str:
    """A value as `rlscale run` overrides parse it back (YAML); safe_dump round-trips."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(value)).strip("-") or "_"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Last dotted part of each key (`trainer.seed` -> `seed`); a `<section>.name` key by its
    section (`algo.name` -> `algo`, `env.name` -> `env`); the whole key, dots as `-`, where the
    short names collide."""
    short = [k.rsplit(".", 2)[-2] if k.endswith(".name") else k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if short.count(s) == 1 else k.replace(".", "-")) for k, s in zip(keys, short)}


def _is_label(key: str) -> bool:
    return key.startswith("_")


def expand(spec: SweepSpec) -> list[Point]:
    """Grid x zip blocks (cartesian over the grid lists and over the zip blocks, each zip
    block stepping through its rows together), `fixed` added to every point. A zip key
    starting with `_` is a label: it names the point in place of its block's other keys
    and is not an override."""
    axes = [[{k: v} for v in vals] for k, vals in spec.grid.items()]
    axes += [[dict(zip(block, row)) for row in zip(*block.values())] for block in spec.zip]
    named = list(spec.grid)
    for block in spec.zip:
        labels = [k for k in block if _is_label(k)]
        named += labels or list(block)
    named.sort(key=lambda k: k == spec.seed_key)  # the seed last: points of a group sort together
    short = {k: s.lstrip("_") for k, s in _short_keys(named).items()}
    points = []
    for combo in itertools.product(*axes):
        values = {k: v for part in combo for k, v in part.items()}
        parts = [(k, f"{short[k]}={_slug(values[k])}") for k in named]
        name = ",".join(text for _, text in parts) or "base"
        group = ",".join(text for k, text in parts if k != spec.seed_key) or "all"
        settings = {k: v for k, v in {**spec.fixed, **values}.items() if not _is_label(k)}
        points.append(Point(name, values, group, [f"{k}={_yaml_value(v)}" for k, v in settings.items()]))
    return points


def _run_overrides(spec: SweepSpec, point: Point) -> list[str]:
    out = Path(spec.output_dir)
    where = [f"output_dir={_yaml_value(str(out.parent))}", f"name={_yaml_value(f'{out.name}/{point.name}')}"]
    return point.overrides + where


def validate(spec: SweepSpec, points: list[Point]) -> list[RunConfig]:
    """Every point's resolved config, or one ConfigError naming every bad override and the
    points it breaks (before anything runs)."""
    names = [p.name for p in points]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{spec.path}: points share a name (values too alike): {', '.join(dup)}")
    configs, errors = [], {}
    for point in points:
        try:
            configs.append(load_config(spec.base, _run_overrides(spec, point)))
        except ConfigError as err:
            errors.setdefault(str(err), []).append(point.name)
    if errors:
        lines = [f"sweep {spec.path}: {len(sum(errors.values(), []))} of {len(points)} points are invalid"]
        for msg, bad in errors.items():
            which = f"all {len(points)} points" if len(bad) == len(points) else ", ".join(bad)
            lines.append(f"{msg}  [{which}]")
        raise ConfigError("\n".join(lines))
    return configs


def print_inert_settings(points: list[Point], configs: list[RunConfig]) -> None:
    """`config_checks.inert_settings` per point, each note once with the points it concerns:
    a spec whose points differ only in settings that cannot act compares identical runs."""
    from rlscale.config_checks import inert_settings

    notes: dict[str, list[str]] = {}
    for point, cfg in zip(points, configs):
        for note in inert_settings(cfg):
            notes.setdefault(note, []).append(point.name)
    for note, names in notes.items():
        print(f"note: {note}  [{', '.join(names)}]")


def print_points(spec: SweepSpec, points: list[Point], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze the table to 80 columns
            console = Console(width=200)
    title = f"sweep {spec.name}: {len(points)} runs of {spec.base}, {spec.parallel} at a time"
    table = Table(title=title, caption=f"run directories: {spec.output_dir}/<point>")
    for col in ("#", "point", "group", "overrides"):
        table.add_column(col)
    for i, p in enumerate(points, 1):
        varied = " ".join(f"{k}={_yaml_value(v)}" for k, v in p.values.items() if not _is_label(k))
        table.add_row(str(i), p.name, p.group, varied)
    console.print(table)
    if spec.fixed:
        console.print("on every point: " + " ".join(f"{k}={_yaml_value(v)}" for k, v in spec.fixed.items()))


# ----------------------------------------------------------------------------- command


def main(spec_path, *, dry_run=False, report_only=False, parallel=None) -> int:
    """`rlscale sweep`: validate every point, run the tune stage (when the spec has one) and
    then the points (or not), write the report. Returns 0 when every point finished, 1 when
    some failed (the report is written anyway) or the tune stage made no pick for a group."""
    from rlscale import sweep_tune
    from rlscale.sweep_report import build_report
    from rlscale.sweep_run import check_run_dirs_match, run_points

    spec = load_spec(spec_path)
    points = expand(spec)
    choices = None
    if spec.tune is not None:
        tune = sweep_tune.tune_spec(spec)
        tune_points = expand(tune)
        validate(tune, tune_points)
        choices = sweep_tune.read_choices(spec)
        if dry_run:
            print_points(tune, tune_points)
            print(f"tune rule: {sweep_tune.rule_text(spec.tune)}")
            for line in sweep_tune.choices_text(choices or []):
                print(f"tune.json: {line}")
            if choices is None:
                keys = ", ".join(spec.tune.grid)
                print(f"main points below: {keys} chosen per {spec.tune.per or 'sweep'} by the tune stage")
        if dry_run or report_only:
            try:
                points = sweep_tune.apply_choices(spec, points, choices)
            except ConfigError as err:  # a group with no pick: validate with the first candidate
                print(err)
                points = sweep_tune.apply_choices(spec, points, None)
    configs = validate(spec, points)
    print_inert_settings(points, configs)
    if dry_run:
        print_points(spec, points)
        return 0
    if spec.tune is not None and not report_only:
        choices, _ = sweep_tune.run_stage(spec, parallel=parallel)
        try:
            points = sweep_tune.apply_choices(spec, points, choices)
        except ConfigError as err:
            print(f"not running the main stage: {err}")
            return 1
        configs = validate(spec, points)
    if report_only:
        check_run_dirs_match(spec, points, configs)
    results = {} if report_only else run_points(spec, points, configs, parallel=parallel)
    paths = build_report(spec, points, results, tune_choices=choices)
    failed = {n: r["status"] for n, r in results.items() if not r["status"].startswith("ok")}
    for name, status in failed.items():
        print(f"FAILED {name}: {status} (log: {Path(spec.output_dir) / 'logs' / name}.log)")
    print(f"report: {paths['md']}  ({paths['png'].name}, {paths['csv'].name}, {paths['fits'].name})")
    return 1 if failed else 0
