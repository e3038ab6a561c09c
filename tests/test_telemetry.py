"""Metrics store: crash-safe appends, torn lines tolerated, re-recorded steps reconciled."""

from __future__ import annotations

import math

from rlscale.telemetry import METRICS_FILE, MetricsWriter, load_metrics


def test_records_round_trip_and_nan_becomes_missing(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write({"step": 1, "reward/mean": 0.25, "grad_norm": float("nan")})
    writer.write({"step": 2, "reward/mean": 0.5, "grad_norm": 1.5})
    writer.close()
    frame = load_metrics(tmp_path)
    assert list(frame["step"]) == [1, 2]
    assert frame["reward/mean"].tolist() == [0.25, 0.5]
    assert math.isnan(frame["grad_norm"].iloc[0]) and frame["grad_norm"].iloc[1] == 1.5


def test_torn_last_line_and_duplicate_steps(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in (1, 2, 3):
        writer.write({"step": step, "reward/mean": step / 10})
    writer.write({"step": 3, "reward/mean": 0.99})  # re-recorded after a resume: the last wins
    writer.close()
    with open(tmp_path / METRICS_FILE, "a") as f:
        f.write('{"step": 4, "reward/me')  # a kill -9 mid-write
    frame = load_metrics(tmp_path)
    assert list(frame["step"]) == [1, 2, 3]
    assert frame["reward/mean"].iloc[-1] == 0.99


def test_missing_run_dir_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="is this a run directory"):
        load_metrics(tmp_path / "nope")


def test_appending_after_a_torn_line_keeps_the_new_record(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 1, "reward/mean": 0.1}\n{"step": 2, "rew')
    writer = MetricsWriter(tmp_path)
    writer.write({"step": 2, "reward/mean": 0.2})
    writer.close()
    assert load_metrics(tmp_path)["reward/mean"].tolist() == [0.1, 0.2]
