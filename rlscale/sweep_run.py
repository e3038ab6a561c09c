"""Running a sweep's points (`rlscale.sweep`): each as a Ray task that starts `rlscale run`
as a subprocess, skipping finished points and resuming unfinished ones, with the progress
display (`SweepProgress`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from rlscale.config import ConfigError, RunConfig
from rlscale.config_io import RUN_LOCAL_KEYS, flatten_dotted, read_yaml_mapping, save_config
from rlscale.sweep import Point, SweepSpec


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


def changed_settings(saved: dict, wanted: RunConfig) -> list[tuple[str, object, object]]:
    """(dotted key, saved value, wanted value) for every setting of a run dir's config.yaml
    (`saved`, as read) that `wanted` gives another value, run-local keys aside."""
    after = flatten_dotted(wanted.model_dump(mode="json"))  # the form save_config writes
    return [
        (key, old, after.get(key))
        for key, old in flatten_dotted(saved).items()
        if key not in RUN_LOCAL_KEYS and after.get(key) != old
    ]


def check_run_dirs_match(spec: SweepSpec, points: list[Point], configs: list[RunConfig]) -> None:
    """A point whose run dir holds a run of other settings (the spec changed since it ran) is
    neither skipped, resumed nor reported: its numbers would stand under settings they did not
    come from. One ConfigError lists every such run dir and what changed."""
    stale = []
    for point, cfg in zip(points, configs):
        saved_path = point.run_dir(spec) / "config.yaml"
        if not saved_path.is_file():
            continue
        changed = changed_settings(read_yaml_mapping(saved_path), cfg)
        if changed:
            text = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            stale.append(f"  {saved_path.parent}: {text}{more}")
    if stale:
        raise ConfigError(
            f"sweep {spec.name}: {len(stale)} run dir(s) hold runs of other settings than the spec now "
            "gives their points; move them aside (or restore the spec) and run again:\n" + "\n".join(stale)
        )


def run_points(spec: SweepSpec, points: list[Point], configs: list[RunConfig], *, parallel=None, log=print):
    """Run the points that have not finished yet; returns point name -> result dict."""
    check_run_dirs_match(spec, points, configs)
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
