"""Telemetry: one record per step, appended crash-safely to `<run_dir>/metrics.jsonl`.

Each record is one JSON line, flushed and fsynced before the step counts as done, so a killed
run loses at most the step in flight. `load_metrics` reads it into pandas; if a resumed run
re-recorded steps, the last record of each step wins.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

METRICS_FILE = "metrics.jsonl"

STANDARD_METRICS = (
    "step",
    "time/wall_s",
    "compute/flops",
    "samples",
    "tokens/generated",
    "reward/mean",
    "reward/std",
    "accuracy/mean",
    "entropy/mean",
    "response_length/mean",
    "response_length/clip_ratio",
    "kl/old",
    "clip/fraction",
    "grad_norm",
    "loss/policy",
    "lr",
    "mismatch/kl",
    "time/rollout_s",
    "time/verify_s",
    "time/learn_s",
    "time/sync_s",
)


def _clean(value):
    """JSON has no NaN/inf; store them as null so every reader agrees."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TelemetryError(OSError):
    pass


def truncate_metrics(run_dir: str | Path, last_step: int) -> int:
    """Keep records up to `last_step` (a resume point); returns how many were dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                keep = json.loads(line)["step"] <= last_step
            except (json.JSONDecodeError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)  # atomic: the old file stays whole until the new one is complete
    return dropped


def _drop_torn_tail(path: Path) -> None:
    """A process killed mid-write leaves a partial last line; cut it before appending."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class MetricsWriter:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        # unbuffered: a failed write leaves nothing pending that a later flush could append
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        line = (json.dumps({k: _clean(v) for k, v in record.items()}, sort_keys=False) + "\n").encode()
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as err:
            _drop_torn_tail(self.path)  # leave the file ending on the last whole record
            raise TelemetryError(
                f"could not append step {record.get('step')} to {self.path}: {err.strerror or err}. "
                "Every record written before it is intact."
            ) from err

    def close(self) -> None:
        os.close(self._fd)


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """One row per step, columns named as in DESIGN.md (`reward/mean`, `entropy/mean`, ...)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {METRICS_FILE}; is this a run directory?")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line from a killed process
                continue
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.drop_duplicates("step", keep="last").sort_values("step")
    return frame.reset_index(drop=True)
