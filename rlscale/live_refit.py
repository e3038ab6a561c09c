"""The refit of a run in progress under the fitting protocol (`rlscale.fitting`): the
`fit/*` metrics it logs, and what the orchestrator does with them (early stop, the entropy
collapse warning)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlscale import scaling, scaling_stats
from rlscale.fit_estimates import fit_sigmoid_protocol
from rlscale.fitting import ENTROPY, NAN, REWARD, FitProtocol, protocol_with, run_curve

LIVE_KEYS = (
    "fit/ok", "fit/identified", "fit/predicted_A", "fit/predicted_A_lo", "fit/predicted_A_hi",
    "fit/A_lower", "fit/B", "fit/C_mid", "fit/residual", "fit/predicted_final_reward",
    "fit/predicted_gain", "fit/headroom", "fit/gain_2x", "fit/gain_2x_lo", "fit/gain_2x_hi",
    "fit/early_stop", "fit/fits_eval", "fit/entropy_a", "fit/entropy_b", "fit/entropy_ceiling",
    "fit/entropy_collapse_step", "fit/entropy_collapse_warning", "fit/entropy_collapsed",
)  # fmt: skip


def live_refit(
    frame: pd.DataFrame,
    planned_final_compute: float | None = None,
    x: str | None = None,
    *,
    protocol: FitProtocol | None = None,
    planned_steps: int | None = None,
    early_stop_min_gain: float | None = None,
    entropy_threshold: float | None = None,
    devices: float | None = None,
    bootstrap: int | None = None,
    bins: int | None = None,
) -> dict[str, float]:
    """Refit a run in progress under the protocol; returns `fit/*` metrics to log.

    planned_final_compute: the run's planned total, in x units; when None it is
    extrapolated linearly from the current step to planned_steps. It sets the early window.
    x, bootstrap, bins override those protocol fields (default protocol: 50 resamples).

    Early stop (`fit/early_stop` = 1): the asymptote is identified and even the upper end of
    the interval of the gain from doubling the compute so far (`fit/gain_2x`) is below
    early_stop_min_gain. Unlike the gain to the planned end, that gain does not shrink to
    zero near the end by itself. Entropy: `fit/entropy_collapse_warning` = 1 while entropy
    is still above entropy_threshold (default 10% of its mean over the first 5 steps) and on
    course to fall below it before planned_steps; `fit/entropy_collapsed` = 1 once below.
    Never raises on bad data: what cannot be fitted is NaN. About 0.3 s with 50 resamples.
    """
    out = dict.fromkeys(LIVE_KEYS, NAN)
    out.update({"fit/ok": 0.0, "fit/early_stop": 0.0})
    p = protocol_with(protocol or FitProtocol(n_boot=50), x=x, n_boot=bootstrap, bins=bins)
    try:
        raw, pts, metric, _ = run_curve(frame, p, devices=devices)
    except (ValueError, KeyError, TypeError):  # no step, x or metric column yet
        return out
    if raw.empty:
        return out
    x_now, step_now = float(raw["x"].iloc[-1]), float(raw["step"].iloc[-1])
    final = planned_final_compute
    if final is None and planned_steps and step_now > 0:
        final = x_now * planned_steps / step_now
    est = fit_sigmoid_protocol(pts["x"], pts["y"], p, reference=final if final else x_now)
    sig = est.fit
    out["fit/fits_eval"] = float(metric != REWARD)
    out["fit/ok"] = float(sig.ok)
    if sig.ok:
        lo, hi = est.A_interval
        A = (sig.A, lo, hi) if est.identified else (NAN, NAN, NAN)  # a bound is not a prediction
        out.update(dict(zip(("fit/predicted_A", "fit/predicted_A_lo", "fit/predicted_A_hi"), A)))
        out.update({"fit/identified": float(est.identified), "fit/A_lower": est.A_lower})
        out.update({"fit/B": sig.B, "fit/C_mid": sig.C_mid, "fit/residual": sig.residual})
        if final is not None:
            gain = scaling_stats.predict_remaining_gain(sig, x_now, final)
            out.update(
                {
                    "fit/predicted_final_reward": gain.reward_final,
                    "fit/predicted_gain": gain.gain,
                    "fit/headroom": gain.headroom,
                }
            )
        out["fit/gain_2x"] = float(sig.predict(2 * x_now) - sig.predict(x_now))
        curves = est.curves_at([x_now, 2 * x_now])
        if len(curves) > 1:
            q = 50 * (1 - p.level)
            out["fit/gain_2x_lo"], out["fit/gain_2x_hi"] = np.nanpercentile(
                curves[:, 1] - curves[:, 0], [q, 100 - q]
            )
        stop = (
            early_stop_min_gain is not None and est.identified and out["fit/gain_2x_hi"] < early_stop_min_gain
        )
        out["fit/early_stop"] = float(stop)
    ent = scaling.fit_entropy_law(pts["entropy"], pts["y"])
    if ent.ok:
        out.update({"fit/entropy_a": ent.a, "fit/entropy_b": ent.b, "fit/entropy_ceiling": ent.ceiling})
    if ENTROPY in frame and planned_steps:
        out.update(entropy_watch(frame, planned_steps, entropy_threshold))
    return {k: float(v) for k, v in out.items()}


def entropy_watch(frame: pd.DataFrame, planned_steps: int, threshold: float | None = None) -> dict:
    """`fit/entropy_collapse_step`, `fit/entropy_collapse_warning` and `fit/entropy_collapsed`
    for the steps logged so far (empty when no entropy is logged). threshold: default 10% of
    the mean entropy over the first 5 steps."""
    steps, h = frame["step"].to_numpy(float), frame[ENTROPY].to_numpy(float)
    if not np.isfinite(h).any():
        return {}
    threshold = threshold or 0.1 * float(np.nanmean(h[:5]))
    at = scaling_stats.entropy_collapse_step(steps, h, planned_steps, threshold)
    now = float(np.nanmean(h[np.isfinite(h)][-5:]))
    return {
        "fit/entropy_collapse_step": float(at) if at is not None else NAN,
        "fit/entropy_collapsed": float(now < threshold),
        "fit/entropy_collapse_warning": float(now >= threshold and at is not None),
    }


STALL_MARGIN = 0.01  # a reward that rose less than this after the warning had stalled


@dataclass
class WarningReplay:
    """The entropy-collapse warning replayed on a finished run, as its live refit would have
    raised it every `every` steps; reward is the training reward, averaged over `span` steps."""

    run: str
    checks: int
    warnings: int
    first_warning_step: float  # NaN: never warned
    predicted_collapse_step: float  # at the first warning
    threshold: float
    final_entropy: float
    collapsed: bool  # entropy fell below the threshold by the end
    reward_at_first_warning: float
    final_reward: float

    @property
    def stalled(self) -> bool | None:
        """Whether reward stopped rising after the first warning (None: no warning)."""
        if not self.warnings:
            return None
        return not self.final_reward > self.reward_at_first_warning + STALL_MARGIN


def replay_entropy_warning(frame: pd.DataFrame, planned_steps: int, run: str = "", *, every: int = 100,
                           span: int = 50) -> WarningReplay | None:  # fmt: skip
    """None when the run logged no entropy."""
    if ENTROPY not in frame or not np.isfinite(frame[ENTROPY].to_numpy(float)).any():
        return None
    per_step = frame[frame[ENTROPY].notna()].sort_values("step")
    h = per_step[ENTROPY].to_numpy(float)
    threshold = 0.1 * float(np.nanmean(h[:5]))
    last = int(per_step["step"].iloc[-1])
    fired = []
    for at in range(every, last + 1, every):
        watch = entropy_watch(per_step[per_step["step"] <= at], planned_steps, threshold)
        if watch.get("fit/entropy_collapse_warning") == 1.0:
            fired.append((at, watch["fit/entropy_collapse_step"]))
    reward = per_step[REWARD] if REWARD in per_step else pd.Series(NAN, index=per_step.index)

    def reward_before(step):
        window = per_step["step"].between(step - span + 1, step)
        return float(reward[window].mean())

    return WarningReplay(
        run=run,
        checks=last // every,
        warnings=len(fired),
        first_warning_step=float(fired[0][0]) if fired else NAN,
        predicted_collapse_step=float(fired[0][1]) if fired else NAN,
        threshold=threshold,
        final_entropy=float(np.nanmean(h[-span:])),
        collapsed=bool(np.nanmean(h[-5:]) < threshold),
        reward_at_first_warning=reward_before(fired[0][0]) if fired else NAN,
        final_reward=reward_before(last),
    )


# ----------------------------------------------------------------------------- during a run


def live_protocol(scaling_cfg) -> FitProtocol:
    """The protocol of a run's live refits, from its config's `scaling` section (ScalingConfig):
    its x axis and metric (None: the protocol's choice), 50 bootstrap resamples."""
    return FitProtocol(metric=scaling_cfg.metric, x=scaling_cfg.x, n_boot=50)


@dataclass
class RefitOutcome:
    """A live refit and what the run does with it."""

    metrics: dict[str, float]  # the `fit/*` metrics to log
    stop_reason: str = ""  # non-empty: stop the run early, for this reason
    warning: str = ""  # non-empty: one line to print (entropy on course to collapse)


def judge_refit(fit: dict[str, float], planned_steps: int, early_stop_min_gain: float | None) -> RefitOutcome:
    """Early stop when live_refit says so (`fit/early_stop`: the asymptote is identified and the
    gain from doubling the compute so far is below the threshold); a warning line while
    entropy is on course to collapse before the planned end (`fit/entropy_collapse_warning`)."""
    out = RefitOutcome(fit)
    if fit.get("fit/entropy_collapse_warning") == 1.0:
        at = fit.get("fit/entropy_collapse_step", NAN)
        when = f"by step {int(at)} of {planned_steps}" if at == at else f"before step {planned_steps}"
        out.warning = f"warning: entropy is on course to collapse {when}"
    if early_stop_min_gain is not None and fit.get("fit/early_stop") == 1.0:
        out.stop_reason = (
            f"the gain from doubling the compute so far is at most {fit['fit/gain_2x_hi']:.4f} "
            f"< scaling.early_stop_min_gain = {early_stop_min_gain:g} (asymptote identified)"
        )
    return out


def refit_run(frame: pd.DataFrame, scaling_cfg, planned_steps: int) -> RefitOutcome:
    """The orchestrator's refit every `scaling.refit_every` steps: live_refit under the
    config's protocol, judged by `judge_refit`."""
    fit = live_refit(
        frame,
        planned_steps=planned_steps,
        protocol=live_protocol(scaling_cfg),
        early_stop_min_gain=scaling_cfg.early_stop_min_gain,
    )
    return judge_refit(fit, planned_steps, scaling_cfg.early_stop_min_gain)
