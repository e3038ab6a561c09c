"""Cross-size prediction (`rlscale.size_ladder`) on synthetic curves whose sigmoid parameters
follow a known law in the parameter count N; the too-few-sizes case; the sweep report's
ladder section. No RL runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from rlscale import sweep
from rlscale.cli import main
from rlscale.fit_estimates import fit_seeds
from rlscale.fitting import FitProtocol
from rlscale.models import builtin_params
from rlscale.scaling import sigmoid
from rlscale.size_ladder import SizeCurve, predict_largest

SIZES = ["builtin:tiny", "builtin:mini", "builtin:small", "builtin:mid"]
N0 = builtin_params("builtin:tiny")
FLOPS_PER_STEP_TINY = 1e9
STEPS = 400
R0 = 0.1


def truth(n: float) -> dict:
    """The known law: A and B linear in ln N, C_mid a power law in N."""
    r = math.log(n / N0)
    return {"A": 0.4 + 0.05 * r, "B": 1.5 + 0.1 * r, "C_mid": 8e10 * (n / N0) ** 1.2, "R0": R0}


def curve(n: float, seed: int, sd=0.02) -> tuple[np.ndarray, np.ndarray]:
    """A run of `STEPS` steps on compute that grows with N per step, reward on the law's
    sigmoid plus noise (the first point the base model at step 0's compute)."""
    rng = np.random.default_rng(seed)
    x = np.arange(0, STEPS + 1) * FLOPS_PER_STEP_TINY * (n / N0)
    p = truth(n)
    y = sigmoid(np.maximum(x, 1.0), p["A"], p["B"], p["C_mid"], p["R0"]) + sd * rng.standard_normal(x.size)
    y[0] = R0
    return x, y


def size_curve(model: str, seeds=(0, 1, 2)) -> SizeCurve:
    n = builtin_params(model)
    est = fit_seeds([curve(n, 100 * i + s) for i, s in enumerate(seeds)], FitProtocol(n_boot=0))
    return SizeCurve(model, n, est.fit, est.curves, est.early_cut, est.identified)


@pytest.fixture(scope="module")
def ladder():
    return [size_curve(m) for m in SIZES]


def test_largest_size_predicted_from_the_smaller_ones(ladder):
    for s in ladder:  # the per-size fits recover the law (the premise of the test)
        p = truth(s.params)
        assert s.fit.ok and abs(s.fit.A - p["A"]) < 0.03, (s.label, s.fit)
    pred = predict_largest(ladder)
    assert pred.ok, pred.message
    assert pred.target == "builtin:mid" and pred.used == SIZES[:3]
    p = truth(builtin_params("builtin:mid"))
    assert abs(pred.predicted.A - p["A"]) < 0.04
    assert abs(pred.predicted.B - p["B"]) / p["B"] < 0.3
    assert abs(math.log(pred.predicted.C_mid / p["C_mid"])) < 0.3
    # the predicted curve matches the observed one within the noise
    assert pred.mae < 0.03 and abs(pred.final_error) < 0.03
    assert pred.points > 0 and pred.own_fit_mae <= pred.mae + 1e-9
    # the baseline (the next-smaller size's own curve) is clearly worse: size matters here
    assert pred.baseline == "builtin:small" and pred.baseline_mae > 2 * pred.mae
    d = pred.to_dict()
    assert d["ok"] and d["fitted_on"] == SIZES[:3] and json.dumps(d)
    assert "ln N" in pred.law_text()


def test_not_enough_sizes_is_a_message_not_an_exception(ladder):
    pred = predict_largest(ladder[1:])  # three sizes: two below the largest
    assert not pred.ok and pred.message.startswith("not enough sizes")
    assert "at least 3 smaller sizes, have 2" in pred.message
    assert predict_largest([]).message.startswith("not enough sizes")
    assert "have 0" in predict_largest(ladder[:1]).message

    # four sizes, one of whose fits failed: left out, so again too few
    flat = SizeCurve("builtin:mini", ladder[1].params, ladder[1].fit, ladder[1].curves)
    flat.fit = type(flat.fit)(ok=False, message="flat curve")
    pred = predict_largest([ladder[0], flat, ladder[2], ladder[3]])
    assert not pred.ok and "not enough sizes" in pred.message
    assert any("builtin:mini" in n for n in pred.notes)


def test_spec_metric_picks_what_the_report_fits(tmp_path, capsys):
    """Runs that log a held-out eval which falls (memorised training tasks) while the training
    reward rises: by default the report fits the eval mean; `metric: reward/mean` fits the reward."""
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": "builtin:tiny", "algo": {"name": "grpo"}}))
    fitted = {}
    for metric in (None, "reward/mean"):
        out = tmp_path / f"out-{metric is None}"
        spec_path = tmp_path / f"spec-{metric is None}.yaml"
        fields = {"name": "ladder", "base": "base.yaml", "output_dir": str(out), "bootstrap": 0}
        fields["grid"] = {"model": SIZES, "trainer.seed": [0]}
        spec_path.write_text(yaml.safe_dump(fields | ({"metric": metric} if metric else {})))
        spec = sweep.load_spec(spec_path)
        for p in sweep.expand(spec):
            n = builtin_params(p.values["model"])
            _write_run(p.run_dir(spec), *curve(n, 3), eval_every=20)
        assert main(["sweep", str(spec_path), "--report-only"]) == 0
        fits = json.loads((out / "fits.json").read_text())
        (ladder,) = fits["ladder"]
        fitted[metric] = ((out / "report.md").read_text(), ladder)
    md, _ = fitted[None]
    assert "fitted metric: `eval/mean@8`" in md
    md, ladder = fitted["reward/mean"]
    assert "fitted metric: `reward/mean`" in md and ladder["ok"] and ladder["mae"] < 0.04

    # a metric no run logs: one error naming the spec file and the key, and what the runs log
    typo = tmp_path / "spec-False.yaml"
    typo.write_text(typo.read_text().replace("metric: reward/mean", "metric: reward/meen"))
    capsys.readouterr()
    assert main(["sweep", str(typo), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert f"{typo}: metric:" in err and "has no 'reward/meen'" in err and "reward/mean" in err


def _write_run(run_dir, x, y, *, eval_every=0):
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {"step": i, "reward/mean": float(v), "entropy/mean": 1.0 - float(v), "compute/flops": float(c)}
        for i, (c, v) in enumerate(zip(x, y))
    ]
    for i, row in enumerate(rows[1::eval_every] if eval_every else []):
        row["eval/mean@8"] = 0.1 - 0.001 * i
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    (run_dir / "summary.json").write_text("{}")


def test_sweep_report_has_the_cross_size_prediction(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": "builtin:tiny", "algo": {"name": "grpo"}}))
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "ladder",
                "base": "base.yaml",
                "output_dir": str(tmp_path / "out"),
                "grid": {"model": SIZES, "trainer.seed": [0, 1]},
                "bootstrap": 0,
            }
        )
    )
    spec = sweep.load_spec(spec_path)
    for p in sweep.expand(spec):
        n = builtin_params(p.values["model"])
        _write_run(p.run_dir(spec), *curve(n, p.values["trainer.seed"] + 7))
    assert main(["sweep", str(spec_path), "--report-only"]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "\n\n## Cross-size prediction" in md and "builtin:mid predicted from builtin:tiny" in md
    assert "report_ladder.png" in md and (tmp_path / "out" / "report_ladder.png").stat().st_size > 10_000
    (ladder,) = json.loads((tmp_path / "out" / "fits.json").read_text())["ladder"]
    assert ladder["ok"] and ladder["target"] == "builtin:mid" and ladder["mae"] < 0.04
    assert [s["params"] for s in ladder["sizes"]] == sorted(s["params"] for s in ladder["sizes"])
