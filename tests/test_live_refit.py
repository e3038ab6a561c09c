"""What a run does with its live refit (rlscale.live_refit.refit_run, called by the
orchestrator every scaling.refit_every steps), without Ray: the protocol comes from the
config's `scaling` section, the early stop follows `fit/early_stop` only (an identified
asymptote), and a collapse warning is one line."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_fitting_cli import synthetic_frame, write_run

from rlscale.config import ScalingConfig
from rlscale.fitting import FitProtocol
from rlscale.live_refit import judge_refit, live_protocol, live_refit, refit_run, replay_entropy_warning

NAN = float("nan")


def test_the_protocol_comes_from_the_scaling_section():
    assert live_protocol(ScalingConfig()) == FitProtocol(n_boot=50)
    sc = ScalingConfig(x="steps", metric="reward/mean")
    assert live_protocol(sc) == FitProtocol(x="steps", metric="reward/mean", n_boot=50)
    out = refit_run(synthetic_frame(n=100), sc, planned_steps=400)
    assert out.metrics["fit/ok"] == 1.0 and out.metrics["fit/fits_eval"] == 0.0


def test_early_stop_only_on_fit_early_stop():
    fit = {"fit/ok": 1.0, "fit/early_stop": 0.0, "fit/gain_2x_hi": 0.5, "fit/predicted_gain": 0.0}
    # a small remaining gain to the planned end (it shrinks to zero near the end by itself) is no reason
    assert judge_refit(fit, 400, 0.1).stop_reason == ""
    stop = judge_refit({**fit, "fit/early_stop": 1.0, "fit/gain_2x_hi": 0.03}, 400, 0.1)
    assert "0.0300" in stop.stop_reason and "scaling.early_stop_min_gain = 0.1" in stop.stop_reason
    assert judge_refit({**fit, "fit/early_stop": 1.0}, 400, None).stop_reason == ""  # not asked for


def test_collapse_warning_is_one_line():
    fit = {"fit/entropy_collapse_warning": 1.0, "fit/entropy_collapse_step": 230.0}
    out = judge_refit(fit, 400, None)
    assert out.warning == "warning: entropy is on course to collapse by step 230 of 400"
    assert out.stop_reason == "" and out.metrics is fit
    collapsed = {"fit/entropy_collapse_warning": 0.0, "fit/entropy_collapse_step": 230.0}
    assert judge_refit(collapsed, 400, None).warning == ""  # already below: no more warnings
    assert judge_refit({"fit/entropy_collapse_step": NAN}, 400, None).warning == ""


def test_refit_run_stops_where_live_refit_says():
    full = synthetic_frame(n=400)
    sc = ScalingConfig(refit_every=50, early_stop_min_gain=0.1)
    # at 3/4 of the run doubling buys less than 0.1 already, but A is not identified yet: go on
    out = refit_run(full.iloc[:300], sc, planned_steps=400)
    assert out.metrics["fit/gain_2x_hi"] < 0.1 and out.metrics["fit/identified"] == 0.0
    assert out.stop_reason == "" and out.metrics["fit/early_stop"] == 0.0
    out = refit_run(full, sc, planned_steps=400)  # the end: identified, doubling buys ~0.04
    assert out.metrics["fit/identified"] == 1.0 and out.metrics["fit/early_stop"] == 1.0
    assert out.stop_reason.startswith("the gain from doubling the compute so far is at most 0.0")
    direct = live_refit(full, planned_steps=400, protocol=live_protocol(sc), early_stop_min_gain=0.1)
    assert out.metrics == direct


def test_the_orchestrator_logs_warns_and_stops(tmp_path, capsys):
    """Orchestrator._refit is glue: the refit's metrics logged, its warning printed, its stop kept."""
    import numpy as np

    from rlscale.orchestrator import Orchestrator

    full = synthetic_frame(n=400)
    cfg = SimpleNamespace(
        scaling=ScalingConfig(refit_every=50, early_stop_min_gain=0.1), trainer=SimpleNamespace(steps=400)
    )
    orch = SimpleNamespace(cfg=cfg, run_dir=write_run(tmp_path / "end", full), stop_reason=None)
    logged = Orchestrator._refit(orch)
    assert logged["fit/early_stop"] == 1.0 and "scaling.early_stop_min_gain" in orch.stop_reason
    # entropy decaying as exp(-step/100) crosses 10% of its start near step 230 < 400
    decaying = full.iloc[:150].assign(**{"entropy/mean": np.exp(-full["step"].iloc[:150] / 100)})
    orch = SimpleNamespace(cfg=cfg, run_dir=write_run(tmp_path / "mid", decaying), stop_reason=None)
    logged = Orchestrator._refit(orch)
    assert orch.stop_reason is None and logged["fit/entropy_collapse_warning"] == 1.0
    lines = [x for x in capsys.readouterr().out.splitlines() if "entropy" in x]
    assert len(lines) == 1 and lines[0].startswith("warning: entropy is on course to collapse by step 2")


def test_entropy_warning_replayed_on_a_finished_run():
    """Entropy falling as 0.3 exp(-step/200), reward rising to step 300: the replay warns from
    its first check (step 100), predicts the crossing, sees the collapse, and no stall since
    reward rose after the warning; with reward flat throughout it is a stall. A slow fall never
    warns."""
    step = np.arange(1, 801)
    reward = np.minimum(step, 300) / 1000
    fast = pd.DataFrame({"step": step, "entropy/mean": 0.3 * np.exp(-step / 200), "reward/mean": reward})
    w = replay_entropy_warning(fast, 800, "fast")
    assert (w.checks, w.warnings, w.first_warning_step) == (8, 4, 100)  # steps 100-400, then below
    # threshold: 10% of the mean over steps 1-5, 0.1 * 0.3 exp(-3/200), crossed at 200 (ln 10 + 0.015)
    assert w.predicted_collapse_step == 464 and w.collapsed
    assert w.threshold == pytest.approx(0.1 * 0.3 * np.exp(-3 / 200), rel=0.01)
    assert w.reward_at_first_warning == pytest.approx(np.mean(step[50:100]) / 1000)
    assert w.final_reward == pytest.approx(0.3) and w.stalled is False  # 0.0755 -> 0.3: it rose

    assert replay_entropy_warning(fast.assign(**{"reward/mean": 0.3}), 800).stalled is True

    slow = fast.assign(**{"entropy/mean": 0.3 * np.exp(-step / 5000)})
    w = replay_entropy_warning(slow, 800)
    assert (w.warnings, w.collapsed, w.stalled) == (0, False, None) and math.isnan(w.first_warning_step)
    assert replay_entropy_warning(fast.drop(columns="entropy/mean"), 800) is None
