"""The figures of `rlscale plot` (and a sweep's report), inspected as matplotlib objects: a title
on every axes, the smoothing window stated and the one drawn, one legend per axes and outside
every axes, light major gridlines only, one evaluation axis on both pass@k panels, `--y` in
the labels, and the command's progress lines. Data: the checked-in demo run (400 steps, pass@k
evaluations before steps 1, 101, 201, 301)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.legend import Legend

from rlscale import metric_names as M
from rlscale import plots
from rlscale.cli import main
from rlscale.telemetry import load_metrics

DEMO_RUN = Path(__file__).resolve().parent / "data" / "demo_run"


@pytest.fixture(scope="module")
def demo():
    return load_metrics(DEMO_RUN)


def _fit(frame, name, **kw):
    from rlscale.run_fits import fit_frame

    return fit_frame(frame, name, bootstrap=10, backtest_frac=None, **kw)


@pytest.fixture(scope="module")
def two_runs(demo):
    """The demo and its first half: two runs whose smoothing windows differ (20 and 10 steps)."""
    runs = {"demo": demo, "half": demo.iloc[:200].copy()}
    return runs, {name: _fit(frame, name) for name, frame in runs.items()}


def _figures(runs, fits):
    figures = dict(plots.run_figures(runs, fits=fits))
    for fig in figures.values():
        fig.canvas.draw()
    return figures


def _legends(ax) -> list[Legend]:
    return [c for c in ax.get_children() if isinstance(c, Legend)]


def _check_layout(name: str, fig) -> None:
    axes = fig.get_axes()
    for ax in axes:
        assert ax.get_title().strip(), f"{name}: an axes without a title"
        legends = _legends(ax)
        assert len(legends) <= 1, f"{name}: {len(legends)} legends on one axes"
        for legend in legends:
            box = legend.get_window_extent()
            for other in axes:  # outside the data of every panel, not only its own
                assert not box.overlaps(other.get_window_extent()), f"{name}: legend over the data"
        for axis in (ax.xaxis, ax.yaxis):
            major = axis.get_gridlines()
            assert major and all(line.get_visible() for line in major), f"{name}: no major grid"
            assert {line.get_alpha() for line in major} == {0.3}, f"{name}: grid not light"
            minor = [tick.gridline.get_visible() for tick in axis.get_minor_ticks()]
            assert not any(minor), f"{name}: minor gridlines"


def test_every_figure_titled_gridded_and_legends_outside(two_runs):
    runs, fits = two_runs
    figures = _figures(runs, fits)
    assert set(figures) == {
        "reward_vs_step",
        "entropy_vs_step",
        "reward_vs_entropy",
        "reward_vs_compute",
        "sigmoid_linearized",
        "pass_at_k",
    }
    for name, fig in figures.items():
        _check_layout(name, fig)
        if name != "pass_at_k":  # every figure with two runs shows which colour is which
            assert len(_legends(fig.get_axes()[0])) == 1, name
    plt.close("all")


def test_one_run_without_fits_has_titles_too(demo):
    figures = _figures({"demo": demo}, None)
    assert set(figures) == {"reward_vs_step", "entropy_vs_step", "reward_vs_entropy", "pass_at_k"}
    for name, fig in figures.items():
        _check_layout(name, fig)
    plt.close("all")


def test_step_plots_state_the_smoothing_window_they_draw(demo, two_runs):
    one = _figures({"demo": demo}, None)
    for stem, column in (("reward_vs_step", M.REWARD), ("entropy_vs_step", M.ENTROPY)):
        ax = one[stem].get_axes()[0]
        assert "smoothed: rolling mean over 20 steps" in ax.get_title()
        drawn = ax.get_lines()[0].get_ydata()  # the solid line: the mean over 20 steps, centred
        expected = demo[column].rolling(20, min_periods=1, center=True).mean().to_numpy()
        assert drawn == pytest.approx(expected)
    two = _figures(*two_runs)
    assert (
        "rolling mean over 1/20 of each run (10-20 steps)" in two["reward_vs_step"].get_axes()[0].get_title()
    )
    plt.close("all")


def test_reward_vs_compute_has_one_legend_for_runs_and_line_styles(two_runs):
    ax = _figures(*two_runs)["reward_vs_compute"].get_axes()[0]
    (legend,) = _legends(ax)
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0].startswith("demo: A") and texts[1].startswith("half: A")
    assert {"fit", "asymptote A", "95% bootstrap band"} <= set(texts)
    assert ax.get_xscale() == "log"
    plt.close("all")


def test_pass_at_k_panels_name_evaluations_on_one_axis(demo):
    left, right = _figures({"demo": demo}, None)["pass_at_k"].get_axes()
    labels = [t.get_text() for t in _legends(left)[0].get_texts()]
    # the checked-in demo evaluated before steps 1 and 301: after 0 and 300 updates
    assert labels == ["demo, after 0 updates (first eval)", "demo, after 300 updates (last eval)"]
    assert list(right.get_xticks()) == [0, 100, 200, 300]
    assert list(right.get_lines()[0].get_xdata()) == [0, 100, 200, 300]
    assert "updates" in right.get_xlabel()
    plt.close("all")


def test_eval_updates_counts_the_final_evaluation_after_its_update():
    import pandas as pd

    evals = pd.DataFrame(
        {"step": [1, 101, 200], M.FLOPS: [1.0, 101.0, 200.0], M.EVAL_TRAIN_FLOPS: [0.0, 100.0, 200.0]}
    )
    assert plots.eval_updates(evals).tolist() == [0, 100, 200]
    assert plots.eval_updates(evals.drop(columns=M.EVAL_TRAIN_FLOPS)).tolist() == [0, 100, 199]


def test_the_fitted_metric_labels_the_axes(demo):
    frame = demo.assign(**{"score/custom": demo[M.REWARD]})
    figures = _figures({"demo": frame}, {"demo": _fit(frame, "demo", y="score/custom")})
    for stem in ("reward_vs_compute", "reward_vs_entropy"):
        ax = figures[stem].get_axes()[0]
        assert ax.get_ylabel() == "score/custom" and "score/custom" in ax.get_title(), stem
    assert "score/custom" in figures["sigmoid_linearized"].get_axes()[0].get_ylabel()
    assert plots.y_label(M.REWARD) == "mean reward (reward/mean)"
    plt.close("all")


def test_sweep_report_figure(demo, monkeypatch, tmp_path):
    """plot_groups: titles with the smoothing, one legend outside, light major grid."""
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or Path(path))
    groups = {
        "lr_a": [_fit(demo, "a0"), _fit(demo.iloc[:200], "a1")],
        "lr_b": [_fit(demo.iloc[:300], "b0")],
    }
    plots.plot_groups(groups, tmp_path / "report.png")
    (fig,) = saved
    fig.canvas.draw()
    _check_layout("sweep report", fig)
    for ax in fig.get_axes():
        assert "rolling mean over 1/20 of each run (10-20 steps) (each seed)" in ax.get_title()
    plt.close("all")


def test_sweep_figure_draws_entropy_every_step_when_fitting_a_sparse_eval(demo, monkeypatch, tmp_path):
    """Fitted on an eval logged every 25 steps, the reward panel has one point per evaluation
    (not smoothed) and the entropy panel every one of the 400 steps (smoothed over 20)."""
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or Path(path))
    frame = demo.assign(**{"eval/mean@8": demo[M.REWARD].where(demo["step"] % 25 == 0)})
    plots.plot_groups({"g": [_fit(frame, "s0", y="eval/mean@8")]}, tmp_path / "report.png")
    (fig,) = saved
    ax_r, ax_h = fig.get_axes()
    assert len(ax_r.get_lines()[0].get_xdata()) == 16 and "not smoothed" in ax_r.get_title()
    assert len(ax_h.get_lines()[0].get_xdata()) == 400
    assert "rolling mean over 20 steps" in ax_h.get_title()
    plt.close("all")


def test_plot_command_reports_progress(tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", str(DEMO_RUN), "--out", str(out), "--bootstrap", "10"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0] == "fitting demo_run (1/1: 400 steps, 10 bootstrap resamples) ..."
    assert err[1].startswith("fitted demo_run in ") and err[2] == f"plotting into {out} ..."
    written = captured.out.split()
    stems = ["reward_vs_step", "entropy_vs_step", "reward_vs_entropy", "reward_vs_compute"]
    stems += ["sigmoid_linearized", "pass_at_k"]
    assert written == [str(out / f"{stem}.png") for stem in stems]  # in the order they were drawn
    assert all(Path(p).is_file() for p in written)


def test_an_evaluation_at_zero_compute_is_plotted(demo):
    """The base model's evaluation sits at x = 0 (eval/train_flops); log-x plots leave it out
    of the log scale instead of failing (a finished run once exited 1 on it)."""
    frame = demo.copy()
    evals = frame["step"] % 25 == 1  # before steps 1, 26, ...: 16 evaluations
    frame.loc[evals, "eval/mean@8"] = frame[M.REWARD].rolling(25, min_periods=1).mean()[evals]
    frame.loc[evals, M.EVAL_TRAIN_FLOPS] = frame[M.FLOPS].shift(1).fillna(0.0)[evals]
    fit = _fit(frame, "demo", y="eval/mean@8")
    assert fit.raw["x"].iloc[0] == 0.0 and fit.sigmoid.ok
    figures = _figures({"demo": frame}, {"demo": fit})
    assert {"reward_vs_compute", "sigmoid_linearized"} <= set(figures)
