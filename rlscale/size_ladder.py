"""Cross-size prediction for a model-size ladder (a sweep whose grid varies `model` over
built-in sizes): the sigmoid fitted per size under the fitting protocol, laws for how its
parameters move with the parameter count N, and the largest size's curve predicted from the
smaller sizes alone, scored against its actual run.

The laws, each fitted by least squares on the smaller sizes (at least `MIN_SIZES` of them,
so that each two-parameter law has a residual to speak of):

- A(N)     = a0 + a1 log N     the asymptote, linear in log N (clipped to [R0, A_max] of the
                               largest size's fit: a reward cannot predict past its bound)
- B(N)     = b0 + b1 log N     the efficiency exponent, linear in log N (kept > 0)
- C_mid(N) = c N^k             the midpoint, a power law in N (a straight line in log-log)

R0 of the largest size is its own starting value (the base model's, known before any RL
step), not predicted. The score: the mean absolute error of the predicted curve against the
largest size's observed points (all seeds, the protocol's fitted window: x at or past its
early cut), and the error of its final value (mean over each seed's last 10% of points, then
over seeds). Beside it, a baseline: the next-smaller size's own fitted curve taken as the
prediction (model size assumed not to matter), and the largest size's own fit (in sample,
the floor a prediction can reach).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rlscale import scaling
from rlscale.fitting import NAN, json_safe

MIN_SIZES = 3  # smaller sizes with a fit needed to predict the largest
FINAL_FRAC = 0.1


@dataclass
class SizeCurve:
    """One size of the ladder: its parameter count, its fitted sigmoid (seeds pooled) and the
    observed points per seed [(x, y)], all seeds' points at or past `early_cut`."""

    label: str
    params: int
    fit: scaling.SigmoidFit
    curves: list
    early_cut: float | None = None
    identified: bool = True

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for x, y, *_ in self.curves:
            x, y = np.asarray(x, float), np.asarray(y, float)
            keep = np.isfinite(x) & np.isfinite(y) & (x >= (self.early_cut or 0))
            xs.append(x[keep])
            ys.append(y[keep])
        return (np.concatenate(xs), np.concatenate(ys)) if xs else (np.empty(0), np.empty(0))

    def final(self) -> tuple[float, np.ndarray]:
        """(observed final value, the x of the points it averages): per seed the mean over the
        last 10% of its points, then the mean over seeds."""
        finals, xs = [], []
        for x, y, *_ in self.curves:
            x, y = np.asarray(x, float), np.asarray(y, float)
            keep = np.isfinite(x) & np.isfinite(y)
            x, y = x[keep], y[keep]
            if not x.size:
                continue
            order = np.argsort(x)
            tail = order[-max(1, len(order) // int(1 / FINAL_FRAC)) :]
            finals.append(float(y[tail].mean()))
            xs.append(x[tail])
        return (float(np.mean(finals)) if finals else NAN), (np.concatenate(xs) if xs else np.empty(0))

    def r0(self) -> float:
        r0s = [c[2] for c in self.curves if len(c) > 2 and c[2] is not None and math.isfinite(c[2])]
        return float(np.mean(r0s)) if r0s else float(self.fit.R0)


@dataclass
class LadderPrediction:
    ok: bool
    message: str
    sizes: list = field(default_factory=list)  # [(label, params)] in size order
    target: str = ""  # the largest size, the one predicted
    used: list = field(default_factory=list)  # the smaller sizes the laws were fitted on
    laws: dict = field(default_factory=dict)  # A, B: (a0, a1) in log N; C_mid: (c, k)
    predicted: scaling.SigmoidFit | None = None
    actual: scaling.SigmoidFit | None = None  # the largest size's own fit (in sample)
    mae: float = NAN  # predicted curve vs the largest size's observed points
    final_predicted: float = NAN
    final_observed: float = NAN
    final_error: float = NAN  # predicted - observed
    baseline: str = ""  # the next-smaller size
    baseline_mae: float = NAN
    baseline_final_error: float = NAN
    own_fit_mae: float = NAN
    points: int = 0
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        def sig(f):
            return scaling.fit_result_to_dict(f) if f is not None else None

        return json_safe(
            {
                "ok": self.ok,
                "message": self.message,
                "sizes": [{"size": s, "params": n} for s, n in self.sizes],
                "target": self.target,
                "fitted_on": self.used,
                "laws": self.laws,
                "predicted_sigmoid": sig(self.predicted),
                "actual_sigmoid": sig(self.actual),
                "mae": self.mae,
                "final_predicted": self.final_predicted,
                "final_observed": self.final_observed,
                "final_error": self.final_error,
                "baseline": self.baseline,
                "baseline_mae": self.baseline_mae,
                "baseline_final_error": self.baseline_final_error,
                "own_fit_mae": self.own_fit_mae,
                "points": self.points,
                "notes": self.notes,
            }
        )

    def law_text(self) -> str:
        if not self.laws:
            return ""
        (a0, a1), (b0, b1), (c, k) = self.laws["A"], self.laws["B"], self.laws["C_mid"]
        return f"A = {a0:.4g} + {a1:.4g} ln N; B = {b0:.4g} + {b1:.4g} ln N; C_mid = {c:.4g} N^{k:.4g}"


def _line(logn, values) -> tuple[float, float]:
    slope, intercept = np.polyfit(logn, values, 1)
    return float(intercept), float(slope)


def fit_laws(sizes: list[SizeCurve]) -> dict:
    """{A: (a0, a1), B: (b0, b1), C_mid: (c, k)} by least squares over the sizes given."""
    logn = np.log([s.params for s in sizes])
    a0, a1 = _line(logn, [s.fit.A for s in sizes])
    b0, b1 = _line(logn, [s.fit.B for s in sizes])
    lc0, k = _line(logn, np.log([s.fit.C_mid for s in sizes]))
    return {"A": (a0, a1), "B": (b0, b1), "C_mid": (math.exp(lc0), k)}


def params_at(laws: dict, n: float) -> tuple[float, float, float]:
    (a0, a1), (b0, b1), (c, k) = laws["A"], laws["B"], laws["C_mid"]
    return a0 + a1 * math.log(n), b0 + b1 * math.log(n), c * n**k


def _mae(fit: scaling.SigmoidFit | None, x, y) -> float:
    if fit is None or not fit.ok or not len(x):
        return NAN
    return float(np.mean(np.abs(fit.predict(x) - y)))


def predict_largest(sizes: list[SizeCurve]) -> LadderPrediction:
    """The largest size's curve from the smaller sizes' fits (module docstring). Never raises:
    too few sizes, failed fits or no observed points give ok=False and a message."""
    sizes = sorted(sizes, key=lambda s: s.params)
    pred = LadderPrediction(False, "", sizes=[(s.label, s.params) for s in sizes])
    if not sizes:
        pred.message = "not enough sizes: no size finished"
        return pred
    target, smaller = sizes[-1], sizes[:-1]
    pred.target = target.label
    if any(s.params == target.params for s in smaller):
        pred.message = f"two sizes with {target.params} parameters: cannot tell the largest"
        return pred
    usable = [
        s for s in smaller if s.fit.ok and all(math.isfinite(v) and v > 0 for v in (s.fit.B, s.fit.C_mid))
    ]
    failed = [s.label for s in smaller if s not in usable]
    if failed:
        pred.notes.append(f"no sigmoid fit for {', '.join(failed)}: left out of the laws")
    if len(usable) < MIN_SIZES:
        have = ", ".join(s.label for s in usable) or "none"
        pred.message = (
            f"not enough sizes: predicting {target.label} needs the sigmoid fitted on at least "
            f"{MIN_SIZES} smaller sizes, have {len(usable)} ({have})"
        )
        return pred
    unidentified = [s.label for s in usable if not s.identified]
    if unidentified:
        pred.notes.append(
            f"A not identified for {', '.join(unidentified)}: the laws use the fitted value, "
            "which the data do not pin down"
        )
    x, y = target.window()
    if not len(x):
        pred.message = f"no observed points of {target.label} to score a prediction against"
        return pred

    pred.used = [s.label for s in usable]
    pred.laws = fit_laws(usable)
    a, b, c_mid = params_at(pred.laws, target.params)
    r0 = target.r0()
    a_max = target.fit.A_max if math.isfinite(target.fit.A_max) else max(s.fit.A_max for s in usable)
    if math.isfinite(a_max) and a > a_max:
        pred.notes.append(f"predicted A {a:.4g} above the bound {a_max:.4g}: clipped")
        a = a_max
    if math.isfinite(r0) and a < r0:
        pred.notes.append(f"predicted A {a:.4g} below the start R0 {r0:.4g}: clipped to R0")
        a = r0
    if b <= 0:
        floor = min(s.fit.B for s in usable)
        pred.notes.append(f"predicted B {b:.4g} <= 0: set to the smallest B seen, {floor:.4g}")
        b = floor
    pred.predicted = scaling.SigmoidFit(A=a, B=b, C_mid=c_mid, R0=r0, A_max=a_max, message="predicted")
    pred.actual = target.fit if target.fit.ok else None
    pred.points = len(x)
    pred.mae = _mae(pred.predicted, x, y)
    pred.own_fit_mae = _mae(pred.actual, x, y)
    pred.final_observed, final_x = target.final()
    pred.final_predicted = float(np.mean(pred.predicted.predict(final_x))) if len(final_x) else NAN
    pred.final_error = pred.final_predicted - pred.final_observed
    base = usable[-1]
    pred.baseline = base.label
    pred.baseline_mae = _mae(base.fit, x, y)
    if len(final_x):
        pred.baseline_final_error = float(np.mean(base.fit.predict(final_x))) - pred.final_observed
    pred.ok = True
    pred.message = (
        f"{target.label} predicted from {', '.join(pred.used)}: mean absolute error {pred.mae:.4f} "
        f"over {pred.points} points, final {pred.final_predicted:.4f} vs {pred.final_observed:.4f} "
        f"observed (error {pred.final_error:+.4f}); {base.label}'s own curve as the prediction: "
        f"error {pred.baseline_mae:.4f}"
    )
    return pred


def plot_ladder(sizes: list[SizeCurve], pred: LadderPrediction, path, *, x_label: str = "x") -> None:
    """Left: each size's points and fitted sigmoid, the largest size's predicted curve dashed.
    Right: A, B and C_mid against N with the laws fitted on the smaller sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(sizes, key=lambda s: s.params)
    fig, (ax, ax_a, ax_b, ax_c) = plt.subplots(
        1, 4, figsize=(17, 4.2), gridspec_kw={"width_ratios": [2.2, 1, 1, 1]}
    )
    xmax = max((float(np.max(s.window()[0])) for s in sizes if len(s.window()[0])), default=1.0)
    for i, s in enumerate(sizes):
        color = f"C{i % 10}"
        for j, (x, y, *_) in enumerate(s.curves):
            label = f"{s.label} ({s.params / 1e6:.2g}M)" if j == 0 else None
            ax.plot(x, y, ".", ms=2, alpha=0.3, color=color, label=label)
        sx = s.window()[0]
        if s.fit.ok and len(sx):
            grid = np.geomspace(max(float(sx.min()), 1e-12), float(sx.max()), 200)
            ax.plot(grid, s.fit.predict(grid), "-", color=color, label=f"{s.label} fit")
    if pred.ok and pred.predicted is not None:
        tx = [s for s in sizes if s.label == pred.target][0].window()[0]
        grid = np.geomspace(max(float(tx.min()), 1e-12), xmax, 200)
        ax.plot(grid, pred.predicted.predict(grid), "k--", lw=2, label=f"{pred.target} predicted")
        ax.set_title(f"{pred.target} predicted from smaller sizes: MAE {pred.mae:.3f}", fontsize=9)
    else:
        ax.set_title(pred.message[:90], fontsize=8)
    if any(len(s.window()[0]) and np.max(s.window()[0]) > 0 for s in sizes):
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("metric")
    ax.legend(fontsize=7)

    ok = [s for s in sizes if s.fit.ok]
    n = np.array([s.params for s in ok], float)
    grid_n = np.geomspace(min(n) / 1.5, max(n) * 1.5, 50) if len(n) else np.empty(0)
    for axis, name, values in (
        (ax_a, "A", [s.fit.A for s in ok]),
        (ax_b, "B", [s.fit.B for s in ok]),
        (ax_c, "C_mid", [s.fit.C_mid for s in ok]),
    ):
        axis.plot(n, values, "o", color="C0", label="fitted per size")
        if pred.laws:
            law = np.array([params_at(pred.laws, v)[("A", "B", "C_mid").index(name)] for v in grid_n])
            axis.plot(grid_n, law, "-", color="C1", label="law (smaller sizes)")
            tgt = [s for s in ok if s.label == pred.target]
            if tgt:
                axis.plot(
                    [tgt[0].params],
                    [getattr(tgt[0].fit, name)],
                    "s",
                    color="C3",
                    label=f"{pred.target} actual",
                )
        if len(n):
            axis.set_xscale("log")
            if name == "C_mid" and all(v > 0 for v in values):
                axis.set_yscale("log")
        axis.set_xlabel("parameters N")
        axis.set_title(name, fontsize=9)
        axis.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
