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
    x: flops                        # x axis of the report (rlscale.fitting.X_AXES)

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
ones resumed from their last checkpoint (`rlscale run --resume`). While it runs the terminal
shows a bar over the points with an ETA counted in training steps and each running point's step
and reward, read from its metrics.jsonl (`SweepProgress`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from rlscale import scaling
from rlscale.config import ConfigError, RunConfig, load_config, read_yaml_mapping, save_config, validate_model
from rlscale.fitting import (
    X_AXES,
    Comparison,
    FitProtocol,
    RunFit,
    compare_fits,
    fit_frame,
    fit_seeds,
    json_safe,
)

# ----------------------------------------------------------------------------- spec


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
    bootstrap: int = Field(200, ge=0)
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


# ----------------------------------------------------------------------------- running


def _run_point(cmd: list[str], log_path: str, cwd: str, env: dict, timeout_s: float | None) -> dict:
    """Body of the Ray task: one `rlscale run` subprocess, its output to log_path."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **env})
        try:
            rc = proc.wait(timeout=timeout_s)
            status = "ok" if rc == 0 else f"exit code {rc}"
        except subprocess.TimeoutExpired:
            proc.terminate()
            rc, status = proc.wait(), f"timed out after {timeout_s:g} s"
        except BaseException:  # a cancelled task: do not leave the run behind
            proc.terminate()
            proc.wait()
            raise
    return {"status": status, "returncode": rc, "wall_s": time.monotonic() - t0}


def _command(spec: SweepSpec, point: Point, address: str) -> list[str]:
    """`rlscale run <point config>`, or `--resume` for a point an earlier sweep left
    unfinished (from its last checkpoint, or from step 0 without one)."""
    run = [sys.executable, "-m", "rlscale.cli", "run"]
    run_dir = point.run_dir(spec)
    if (run_dir / "metrics.jsonl").is_file():
        run += ["--resume", str(run_dir.resolve())]
    else:
        run.append(str((Path(spec.output_dir) / "configs" / f"{point.name}.yaml").resolve()))
    return [*run, f"ray.address={address}"]


def run_points(spec: SweepSpec, points: list[Point], configs: list[RunConfig], *, parallel=None, log=print):
    """Run the points that have not finished yet; returns point name -> result dict."""
    import ray

    from rlscale.cluster import init_ray

    out = Path(spec.output_dir)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    parallel = parallel or spec.parallel
    results, todo = {}, []
    for point, cfg in zip(points, configs):
        save_config(cfg, out / "configs" / f"{point.name}.yaml")
        run_dir = point.run_dir(spec)
        if (run_dir / "summary.json").is_file():
            results[point.name] = {"status": "ok (already finished)", "returncode": 0, "wall_s": 0.0}
            continue
        todo.append(point)
    if not todo:
        return results

    run_cpus = max(c.rollout.workers * c.ray.worker_cpus + c.ray.learner_cpus for c in configs)
    started_ray = not ray.is_initialized()
    init_ray(configs[0].ray.address, min(parallel, len(todo)) * (spec.num_cpus + run_cpus))
    address = ray.get_runtime_context().gcs_address
    env = {
        "RLSCALE_THREADS": os.environ.get("RLSCALE_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    }
    task = ray.remote(_run_point).options(num_cpus=spec.num_cpus, max_retries=0)
    pending: dict = {}
    queue = list(todo)
    steps = {p.name: c.trainer.steps for p, c in zip(points, configs)}
    progress = SweepProgress(spec, todo, steps, log=log)
    try:
        while queue or pending:
            while queue and len(pending) < parallel:
                point = queue.pop(0)
                cmd = _command(spec, point, address)
                log_path = str((out / "logs" / f"{point.name}.log").resolve())
                pending[task.remote(cmd, log_path, os.getcwd(), env, spec.timeout_s)] = point
                progress.started(point)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=progress.poll_s)
            progress.update()
            for ref in done:
                point = pending.pop(ref)
                try:
                    results[point.name] = ray.get(ref)
                except Exception as err:  # the task itself died (worker crash, node lost)
                    results[point.name] = {
                        "status": f"task failed: {err}",
                        "returncode": None,
                        "wall_s": math.nan,
                    }
                progress.finished(point, results[point.name])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # raises KeyboardInterrupt in the task, which stops its subprocess
        ray.wait(list(pending), num_returns=len(pending), timeout=30)
        raise
    finally:
        progress.close()
        if started_ray:
            ray.shutdown()
    return results


def live_status(run_dir: Path) -> tuple[int, float] | None:
    """(step, reward/mean) of the last record in a run's metrics.jsonl, read while it runs."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:  # a line being written, or cut by the seek
            continue
        if isinstance(record, dict) and "step" in record:
            return int(record["step"]), float(record.get("reward/mean", math.nan))
    return None


class SweepProgress:
    """A bar over the sweep's points whose ETA counts training steps, and each running point's
    live step and reward (from its metrics.jsonl). On a terminal: a live display redrawn every
    `poll_s`; otherwise (a log file) one status line per running point every `quiet_s`."""

    def __init__(self, spec: SweepSpec, todo: list[Point], steps: dict[str, int], *, log=print, console=None):
        from rich.console import Console

        self.spec, self.steps, self.log = spec, steps, log
        self.total = len(todo)
        self.total_steps = sum(steps[p.name] for p in todo)
        self.done_points = 0
        self.running: dict[str, Point] = {}
        self.finished_steps = 0
        self.console = console or Console(stderr=False)
        self.live = self.console.is_terminal and log is print
        self.poll_s = 1.0 if self.live else 5.0
        self.quiet_s, self._last_quiet = 60.0, time.monotonic()
        self.t0 = time.monotonic()
        self._progress = self._display = None
        if self.live:
            from rich.live import Live
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[points]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task(
                f"sweep {spec.name}", total=self.total_steps, points=self._points_text()
            )
            self._display = Live(
                self._renderable(), console=self.console, refresh_per_second=2, transient=False
            )
            self._display.start()

    def _points_text(self) -> str:
        return f"{self.done_points}/{self.total} points, {len(self.running)} running"

    def _status(self) -> dict[str, tuple[int, float] | None]:
        return {name: live_status(p.run_dir(self.spec)) for name, p in self.running.items()}

    def _renderable(self):
        from rich.console import Group
        from rich.table import Table

        table = Table(box=None, show_header=bool(self.running), pad_edge=False)
        for col in ("running point", "step", "reward"):
            table.add_column(col)
        for name, status in self._status().items():
            step, reward = status or (0, math.nan)
            reward_text = "-" if math.isnan(reward) else f"{reward:.3f}"
            table.add_row(name, f"{step}/{self.steps[name]}", reward_text)
        return Group(self._progress, table)

    def _steps_done(self) -> int:
        live = sum((status or (0, 0.0))[0] for status in self._status().values())
        return self.finished_steps + live

    def started(self, point: Point) -> None:
        self.running[point.name] = point
        self._print(f"started  {point.name}  (log: {Path(self.spec.output_dir) / 'logs' / point.name}.log)")
        self.update()

    def finished(self, point: Point, result: dict) -> None:
        self.running.pop(point.name, None)
        self.done_points += 1
        self.finished_steps += self.steps[point.name]
        status = live_status(point.run_dir(self.spec))
        reward = f", reward {status[1]:.3f} at step {status[0]}" if status else ""
        self._print(
            f"finished {point.name}: {result['status']} ({result['wall_s']:.0f} s{reward})  "
            f"[{self.done_points}/{self.total}]"
        )
        self.update()

    def update(self) -> None:
        if self.live:
            self._progress.update(self._task, completed=self._steps_done(), points=self._points_text())
            self._display.update(self._renderable())
        elif self.running and time.monotonic() - self._last_quiet >= self.quiet_s:
            self._last_quiet = time.monotonic()
            done, total = self._steps_done(), self.total_steps
            elapsed = time.monotonic() - self.t0
            eta = f", ETA {_duration(elapsed * (total - done) / done)}" if done else ""
            parts = [
                f"{name} step {s[0]}/{self.steps[name]} reward {s[1]:.3f}" if s else f"{name} starting"
                for name, s in self._status().items()
            ]
            self.log(f"[{self.done_points}/{self.total} points{eta}] " + "; ".join(parts))

    def _print(self, text: str) -> None:
        if self.live:
            self.console.print(text, markup=False, highlight=False)
        else:
            self.log(text)

    def close(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


# ----------------------------------------------------------------------------- report


def _final(frame: pd.DataFrame, col: str) -> float:
    """Mean over the last 10% of steps: one step is too noisy to call the final value."""
    if col not in frame:
        return math.nan
    values = frame[col].dropna()  # eval columns are NaN between evaluations
    return float(values.tail(max(1, len(values) // 10)).mean())


def _protocol(spec: SweepSpec) -> FitProtocol:
    return FitProtocol(x=spec.x, n_boot=spec.bootstrap)


def _group_fit(fits: list[RunFit], protocol: FitProtocol):
    """The protocol's sigmoid for a group of seeds: their points pooled (shared A), a
    t-interval over the seeds (block bootstrap for a single seed)."""
    curves = [(f.points["x"], f.points["y"]) for f in fits]
    return fit_seeds(curves, protocol)


def _group_row(spec: SweepSpec, name: str, members: list[Point], fits: list[RunFit], frames, est) -> dict:
    metric = fits[0].y
    finals = pd.Series([_final(frames[f.name], metric) for f in fits])
    a_lo, a_hi = est.A_interval
    sig = est.fit
    return {
        "group": name,
        **{k.lstrip("_"): v for k, v in members[0].values.items() if k != spec.seed_key},
        "seeds": f"{len(fits)}/{len(members)}",
        "metric": metric,
        "final_mean": finals.mean(),
        "final_std": finals.std() if len(finals) > 1 else math.nan,
        "final_entropy_mean": pd.Series([_final(frames[f.name], "entropy/mean") for f in fits]).mean(),
        "A": sig.A if est.identified else math.nan,
        "A_lo": a_lo,
        "A_hi": a_hi,
        "A_lower": est.A_lower,
        "identified": est.identified,
        "B": sig.B,
        "C_mid": sig.C_mid,
        "fit_rmse": sig.residual,
        "fit_note": est.reason or sig.message,
    }


def build_report(spec: SweepSpec, points: list[Point], results: dict | None = None) -> dict[str, Path]:
    """report.png, report.csv, report.md and fits.json in the sweep's output_dir, from the
    points that finished (run dir with summary.json)."""
    from rlscale.plots import plot_groups
    from rlscale.telemetry import load_metrics

    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results or {}
    protocol = _protocol(spec)
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)

    rows, run_fits, group_fits, frames, missing = [], {}, {}, {}, []
    for name, members in groups.items():
        run_fits[name] = []
        for p in members:
            run_dir = p.run_dir(spec)
            if not (run_dir / "summary.json").is_file():
                missing.append(
                    {"point": p.name, "status": results.get(p.name, {}).get("status", "not finished")}
                )
                continue
            frames[p.name] = load_metrics(run_dir)
            fit = fit_frame(
                frames[p.name],
                p.name,
                protocol=replace(protocol, n_boot=0),
                backtest_frac=None,
                run_dir=run_dir,
            )
            run_fits[name].append(fit)
        if run_fits[name]:
            group_fits[name] = _group_fit(run_fits[name], protocol)
            rows.append(_group_row(spec, name, members, run_fits[name], frames, group_fits[name]))
    table = pd.DataFrame(rows)
    comparisons = compare_fits(list(group_fits.items()))

    names = {"csv": "report.csv", "md": "report.md", "png": "report.png", "fits": "fits.json"}
    paths = {kind: out / name for kind, name in names.items()}
    table.to_csv(paths["csv"], index=False)
    plot_groups(
        {g: f for g, f in run_fits.items() if f},
        paths["png"],
        group_fits={g: e.fit for g, e in group_fits.items()},
    )
    fits_json = {
        "sweep": spec.name,
        "x": spec.x,
        "protocol": asdict(protocol),
        "groups": {
            g: {
                "runs": [f.name for f in run_fits[g]],
                "sigmoid": est.to_dict(),
                "runs_fits": {f.name: scaling.fit_result_to_dict(f.sigmoid) for f in run_fits[g]},
            }
            for g, est in group_fits.items()
        },
        "table": table.to_dict(orient="records"),
        "comparisons": [c.to_dict() for c in comparisons],
        "missing": missing,
    }
    paths["fits"].write_text(json.dumps(json_safe(fits_json), indent=2))
    paths["md"].write_text(_markdown(spec, table, comparisons, missing))
    return paths


def _markdown(spec, table: pd.DataFrame, comparisons: list[Comparison], missing) -> str:
    lines = [f"# Sweep `{spec.name}`", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    metric = table["metric"].iloc[0] if len(table) else "the metric"
    lines += [
        f"Base config `{spec.base}`; x axis: {X_AXES[spec.x][1]}; fitted metric: `{metric}` "
        "(rlscale.fitting.FitProtocol). Final: mean over the last 10% of each seed's values, then "
        "mean and sd over seeds. A, B, C_mid: sigmoid fitted on the seeds' points pooled; 95% "
        "interval of A a t-interval over seeds (a block bootstrap for one seed). A blank A with "
        "`identified` false: the asymptote is not identified, `A_lower` is its lower bound.",
        "",
        "![report](report.png)",
        "",
        table.to_markdown(index=False, floatfmt=".4g") if len(table) else "_no finished runs_",
        "",
    ]
    if comparisons:
        lines += [
            "## Comparisons (higher A wins, same A: higher B; only beyond the seed-to-seed spread)",
            "",
        ]
        lines += [f"- **{c.a}** vs **{c.b}**: {c.result.verdict}" for c in comparisons] + [""]
    if missing:
        lines += ["## Not finished", ""] + [f"- `{m['point']}`: {m['status']}" for m in missing] + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command


def main(spec_path, *, dry_run=False, report_only=False, parallel=None) -> int:
    """`rlscale sweep`: validate every point, run them (or not), write the report.
    Returns 0 when every point finished, 1 when some failed (the report is written anyway)."""
    spec = load_spec(spec_path)
    points = expand(spec)
    configs = validate(spec, points)
    if dry_run:
        print_points(spec, points)
        return 0
    results = {} if report_only else run_points(spec, points, configs, parallel=parallel)
    paths = build_report(spec, points, results)
    failed = {n: r["status"] for n, r in results.items() if not r["status"].startswith("ok")}
    for name, status in failed.items():
        print(f"FAILED {name}: {status} (log: {Path(spec.output_dir) / 'logs' / name}.log)")
    print(f"report: {paths['md']}  ({paths['png'].name}, {paths['csv'].name}, {paths['fits'].name})")
    return 1 if failed else 0
