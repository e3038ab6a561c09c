"""Optional sinks mirror the metrics store with the same names, and never kill a run."""

from __future__ import annotations

import pytest

from rlscale import telemetry
from rlscale.telemetry import Sinks

RECORDS = [{"step": s, "reward/mean": s / 10, "eval/pass@2": 0.5, "note": "text"} for s in (1, 2, 3)]


def test_tensorboard_events_hold_the_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sinks = Sinks(["tensorboard"], tmp_path, "run", {"a": 1})
    for record in RECORDS:
        sinks.write(record)
    sinks.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    rewards = [(e.step, round(e.value, 6)) for e in events.Scalars("reward/mean")]
    assert rewards == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_mlflow_local_file_store(tmp_path):
    import mlflow

    sinks = Sinks(["mlflow"], tmp_path, "myrun", {"learner": {"lr": 0.001}})
    for record in RECORDS:
        sinks.write(record)
    sinks.close()
    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("rlscale").experiment_id])
    assert run.data.params["learner.lr"] == "0.001" and run.info.run_name == "myrun"
    history = client.get_metric_history(run.info.run_id, "reward/mean")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert client.get_metric_history(run.info.run_id, "eval/pass_at_2")[0].value == 0.5


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    sinks = Sinks(["wandb"], tmp_path, "offline-run", {"a": 1})
    for record in RECORDS:
        sinks.write(record)
    sinks.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_a_failing_sink_is_reported_once_and_switched_off(tmp_path, monkeypatch):
    class Broken:
        def __init__(self, *args):
            pass

        def log(self, metrics, step):
            raise OSError("disk on fire")

        def close(self):
            raise AssertionError("a switched-off sink is not closed")

    monkeypatch.setitem(telemetry._SINKS, "wandb", Broken)
    warnings = []
    sinks = Sinks(["wandb", "tensorboard"], tmp_path, "run", {}, warn=warnings.append)
    for record in RECORDS:
        sinks.write(record)  # never raises
    sinks.close()
    assert len(warnings) == 1 and "disk on fire" in warnings[0]
    assert list((tmp_path / "tensorboard").iterdir())  # the healthy sink kept going


def test_unknown_sink_is_a_config_error():
    from rlscale.config import ConfigError
    from rlscale.config_io import build_config

    with pytest.raises(ConfigError, match="telemetry.sinks.0: Input should be 'tensorboard', 'mlflow' or"):
        build_config({"telemetry": {"sinks": ["neptune"]}}, source="x.yaml")
