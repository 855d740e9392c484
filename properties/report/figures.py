r"""The figures of the claims report: the data (computed by :mod:`impl`), the drawing and
the captions (private; :mod:`properties.report.page` is the public side).

Each :class:`FigureSpec` has ``compute() -> data`` (exact dynamics and search
distributions from :mod:`impl`, long trajectories thinned to log-spaced steps),
``plot(data, path)`` drawing exactly that data with matplotlib's Agg canvas (no pyplot
state, headless), and ``caption(data)``: what the figure shows and what to conclude, with
the numbers taken from the data.  matplotlib is imported only inside the drawing functions.

>>> d = FIGURES[3].compute()   # iterated amplification: impl against the recursion
>>> FIGURES[3].name, d["max_abs_difference"] < 1e-12
('amplification', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from impl import (
    amplification_trajectory,
    best_of_k_distribution,
    best_of_k_mass_on_maximisers,
    imitation_trajectory,
    policy_gradient,
    rl_trajectory,
    smooth_step_size,
    unbounded_search,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
"""Resolution of the PNG figures (a 7.5 in wide figure is 825 px)."""

BOUND_RTOL = 1e-9
"""Relative slack when reporting whether J* - J(theta_t) stays under its bound (round-off
of a sum of a few float64 products; the property in :mod:`properties` uses the same)."""


# --------------------------------------------------------------------------- the problems drawn


XSTAR_SCORES = (0.0, 0.4, 0.7, 1.0)
XSTAR_LOGITS = (1.5, 1.0, 0.5, -1.0)
XSTAR_STEPS = 3000
"""Figure 1: a problem where X* starts with little mass (p_0(X*) = 0.04)."""

RATE_CASES = (
    ("well-conditioned", (0.0, 0.5, 1.0), (0.0, 0.0, 0.0), 10_000),
    ("plateau", (-1.0, -4.0, 0.0, -1.0, 1.0), (0.0, 0.0, 0.0, 0.0, -2.5), 50_000),
    ("long plateau", (-1.0, -4.0, 0.0, -1.0, 1.0), (0.0, 0.0, 0.0, 0.0, -3.0), 50_000),
)
"""Figure 2: ``(name, scores, logits, steps)``.  The plateau case escapes near step 36,000;
the long plateau (the slow case of the README) near step 314,000, past the steps drawn
(4 s more of build time per 100,000 steps, so it is drawn stuck)."""

SEARCH_SCORES = (0.0, 0.5, 1.0)
SEARCH_PROPOSAL = (0.5, 0.3, 0.2)
SEARCH_KS = tuple(range(1, 13))
"""Figure 3: best-of-k search from a proposal that puts 0.2 on the best answer."""

AMPLIFICATION_START = (0.45, 0.45, 0.1)
AMPLIFICATION_KS = (1, 2, 3, 5)
AMPLIFICATION_STEPS = 8
"""Figure 4: iterated amplification from a_0 = 0.1."""

DEMONSTRATOR = (1.0 / 3.0, 2.0 / 3.0)
DEMONSTRATOR_STEPS = 3000
"""Figure 5: the shrunk counterexample of ``indicator-reward-stochastic-demonstrator``."""

LIMITED_KS = (1, 2, 4)
LIMITED_STEPS = 3000
"""Figure 6: RL versus imitation of best-of-k search (scores and proposal of figure 3)."""

CURVE_POINTS = 400
"""Log-spaced points kept from a long trajectory (the JSON holds exactly what is drawn)."""


def _log_steps(steps: int, points: int = CURVE_POINTS) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``0``, ``steps`` and about ``points`` log-spaced steps between them, sorted and unique."""
    inner = np.round(np.logspace(0.0, math.log10(max(steps, 1)), points)).astype(np.int64)
    return np.unique(np.concatenate([[0], inner, [steps]]))


def _first_step(values: np.ndarray[Any, Any], level: float) -> int | None:
    hit = np.flatnonzero(values >= level)
    return int(hit[0]) if hit.size else None


def _xstar_data() -> dict[str, Any]:
    s = np.array(XSTAR_SCORES)
    theta = np.array(XSTAR_LOGITS)
    x = unbounded_search(s)
    onehot = np.eye(s.size)[x]
    eta = smooth_step_size(s)  # the indicator scores e_{X*} have the same spread, 1
    runs = {
        "rl": rl_trajectory(theta, s, step_size=eta, steps=XSTAR_STEPS).probs[:, x],
        "imitation": imitation_trajectory(theta, onehot, step_size=eta, steps=XSTAR_STEPS).probs[
            :, x
        ],
        "indicator": rl_trajectory(theta, onehot, step_size=eta, steps=XSTAR_STEPS).probs[:, x],
    }
    idx = _log_steps(XSTAR_STEPS)
    return {
        "scores": s,
        "logits": theta,
        "x_star": x,
        "step_size": eta,
        "steps": idx,
        **{name: run[idx] for name, run in runs.items()},
        "steps_to_0.99": {name: _first_step(run, 0.99) for name, run in runs.items()},
        "rl_dips": bool(np.any(np.diff(runs["rl"]) < 0)),
    }


def _rate_data() -> dict[str, Any]:
    cases = []
    for name, scores, logits, steps in RATE_CASES:
        s = np.array(scores)
        theta = np.array(logits)
        eta = smooth_step_size(s)
        tr = rl_trajectory(theta, s, step_size=eta, steps=steps)
        a_star = np.flatnonzero(s == s.max())
        spread = float(s.max() - s.min())
        gap = float(s.max()) - tr.probs @ s
        mass = tr.probs[:, a_star].sum(axis=1)
        # c_t = min_{u<=t} max_{a in A*} p_u(a), the constant of the bound (Mei et al. 2020)
        c = np.minimum.accumulate(tr.probs[:, a_star].max(axis=1))
        t = np.arange(1, steps + 1)
        bound = 5.0 * spread / (c[:-1] ** 2 * t)
        holds = bool(np.all(gap[1:] <= bound * (1.0 + BOUND_RTOL)))
        idx = _log_steps(steps)[1:]  # t >= 1 on log-log axes
        cases.append(
            {
                "name": name,
                "scores": s,
                "logits": theta,
                "step_size": eta,
                "steps": idx,
                "gap": gap[idx],
                "bound": bound[idx - 1],
                "mass": mass[idx],
                "bound_holds_every_step": holds,
                "total_steps": steps,
                "steps_to_half": _first_step(mass, 0.5),
                "steps_to_0.99": _first_step(mass, 0.99),
                "min_mass": float(mass.min()),
            }
        )
    return {"cases": cases}


def _search_data() -> dict[str, Any]:
    s = np.array(SEARCH_SCORES)
    q = np.array(SEARCH_PROPOSAL)
    a_star = np.flatnonzero(s == s.max())
    dist = np.stack([best_of_k_distribution(s, q, k) for k in SEARCH_KS])
    closed = np.array([best_of_k_mass_on_maximisers(s, q, k) for k in SEARCH_KS])
    summed = dist[:, a_star].sum(axis=1)
    return {
        "scores": s,
        "proposal": q,
        "k": np.array(SEARCH_KS),
        "distribution": dist,
        "mass_on_best": summed,
        "closed_form": closed,
        "max_abs_difference": float(np.max(np.abs(summed - closed))),
    }


def _amplification_data() -> dict[str, Any]:
    s = np.array(SEARCH_SCORES)
    p0 = np.array(AMPLIFICATION_START)
    a_star = np.flatnonzero(s == s.max())
    runs = []
    for k in AMPLIFICATION_KS:
        a = amplification_trajectory(p0, s, k, steps=AMPLIFICATION_STEPS)[:, a_star].sum(axis=1)
        rec = [float(p0[a_star].sum())]
        for _ in range(AMPLIFICATION_STEPS):
            rec.append(1.0 - (1.0 - rec[-1]) ** k)
        runs.append({"k": k, "a": a, "recursion": np.array(rec)})
    worst = max(float(np.max(np.abs(r["a"] - r["recursion"]))) for r in runs)
    return {
        "scores": s,
        "start": p0,
        "steps": np.arange(AMPLIFICATION_STEPS + 1),
        "runs": runs,
        "max_abs_difference": worst,
    }


def _demonstrator_data() -> dict[str, Any]:
    q = np.array(DEMONSTRATOR)
    theta = np.zeros(q.size)
    eta_rl = smooth_step_size(q)  # RL's reward for answer x is E[1[x = demo]] = q_x
    rl = rl_trajectory(theta, q, step_size=eta_rl, steps=DEMONSTRATOR_STEPS).probs[:, 1]
    imitation = imitation_trajectory(theta, q, step_size=1.0, steps=DEMONSTRATOR_STEPS).probs[:, 1]
    idx = _log_steps(DEMONSTRATOR_STEPS)
    return {
        "demonstrator": q,
        "logits": theta,
        "step_size_rl": eta_rl,
        "step_size_imitation": 1.0,
        "steps": idx,
        "rl": rl[idx],
        "imitation": imitation[idx],
        "rl_gradient_at_q": policy_gradient(np.log(q), q),
        "imitation_gradient_at_q": q - q,
    }


def _limited_data() -> dict[str, Any]:
    s = np.array(SEARCH_SCORES)
    q = np.array(SEARCH_PROPOSAL)
    theta = np.log(q)
    a_star = np.flatnonzero(s == s.max())
    idx = _log_steps(LIMITED_STEPS)
    rl = rl_trajectory(theta, s, step_size=smooth_step_size(s), steps=LIMITED_STEPS)
    runs = []
    for k in LIMITED_KS:
        target = best_of_k_distribution(s, q, k)
        im = imitation_trajectory(theta, target, step_size=1.0, steps=LIMITED_STEPS)
        runs.append(
            {
                "k": k,
                "mass": im.probs[idx][:, a_star].sum(axis=1),
                "limit": best_of_k_mass_on_maximisers(s, q, k),
            }
        )
    return {
        "scores": s,
        "proposal": q,
        "step_size_rl": smooth_step_size(s),
        "steps": idx,
        "rl": rl.probs[idx][:, a_star].sum(axis=1),
        "imitation": runs,
    }


# --------------------------------------------------------------------------- drawing


class ReportUnavailable(ImportError):
    """matplotlib, which draws the figures, is not installed (``pip install 'ida-verify[report]'``;
    from a clone: ``pip install '.[report]'``)."""


def require_matplotlib() -> None:
    """Import matplotlib's Agg canvas, or raise :class:`ReportUnavailable` in one line."""
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ReportUnavailable(
            "drawing the report needs matplotlib, which is not installed: "
            "pip install 'ida-verify[report]' (from a clone: pip install '.[report]')"
        ) from None


def new_figure(ncols: int = 1, *, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5 if ncols == 1 else 10.0, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save_png(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # headless: the Agg canvas, whatever backend the user has set
    fig.savefig(path, format="png", dpi=DPI)


def _steps_axis(ax: Axes) -> None:
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("step t")
    ax.grid(True, which="major", alpha=0.3)


def _plot_xstar(d: dict[str, Any], path: Path) -> None:
    fig, (ax,) = new_figure()
    ax.plot(d["steps"], d["imitation"], label="imitation of X* (unbounded-search overseer)", lw=2)
    ax.plot(
        d["steps"], d["indicator"], label="RL, reward 1[x = X*] (imitation slowed by p(X*))", lw=2
    )
    ax.plot(d["steps"], d["rl"], label="RL on the score s(x)", lw=2)
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
    _steps_axis(ax)
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("$p_t(X^*)$")
    ax.set_title(f"All three reach X*; step size {d['step_size']:g}, scores {vec(d['scores'])}")
    fig.legend(loc="outside lower center", ncols=1, fontsize=8)
    save_png(fig, path)


def _plot_rate(d: dict[str, Any], path: Path) -> None:
    fig, (left, right) = new_figure(2, height=4.4)
    colours = ("tab:blue", "tab:orange", "tab:red")
    widths = (2.0, 2.0, 4.0)  # the long plateau under the plateau, which it hides until t ~ 1e4
    for i, (case, colour, width) in enumerate(zip(d["cases"], colours, widths, strict=False)):
        label = f"{case['name']}: s = {vec(case['scores'])}, θ_0 = {vec(case['logits'])}"
        left.loglog(
            case["steps"],
            case["gap"],
            color=colour,
            lw=width,
            zorder=3 - i,
            label=f"J* - J, {label}",
        )
        left.loglog(
            case["steps"],
            case["bound"],
            color=colour,
            lw=1,
            ls="--",
            label=f"bound 5 (max s - min s) / (c_t² t), {case['name']}",
        )
        right.plot(case["steps"], case["mass"], color=colour, lw=2, zorder=3 - i)
    left.set_xlabel("step t")
    left.set_ylabel("J* - J(θ_t)")
    left.set_title("Gap to the optimum against the O(1/t) bound")
    left.grid(True, which="major", alpha=0.3)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_ylim(top=1.5)
    right.set_xlabel("step t")
    right.set_ylabel("$p_t(A^*)$ (log scale)")
    right.set_title("Mass on the best answers")
    right.grid(True, which="major", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7.5)
    save_png(fig, path)


def _plot_search(d: dict[str, Any], path: Path) -> None:
    fig, (left, right) = new_figure(2)
    ks = d["k"]
    bottom = np.zeros(ks.size)
    for x in range(d["scores"].size):
        left.bar(
            ks,
            d["distribution"][:, x],
            bottom=bottom,
            label=f"answer {x} (s = {d['scores'][x]:g}, q = {d['proposal'][x]:g})",
        )
        bottom = bottom + d["distribution"][:, x]
    left.set_xlabel("candidates k")
    left.set_ylabel("$B_k(q)(x)$")
    left.set_title("Best-of-k output distribution $B_k(q)$")
    left.set_xticks(ks)
    right.plot(ks, d["closed_form"], color="k", lw=1.5, label="1 - (1 - q(A*))^k")
    right.plot(
        ks, d["mass_on_best"], "o", color="tab:green", label="$B_k(q)(A^*)$ from the distribution"
    )
    right.axhline(
        float(d["proposal"][d["scores"] == d["scores"].max()].sum()),
        color="0.5",
        ls=":",
        label="q(A*)",
    )
    right.set_ylim(0, 1.03)
    right.set_xticks(ks)
    right.set_xlabel("candidates k")
    right.set_ylabel("mass on the best answers")
    right.set_title("Limited search keeps mass off A*")
    right.legend(fontsize=8, loc="lower right")
    right.grid(True, alpha=0.3)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncols=3)
    save_png(fig, path)


def _plot_amplification(d: dict[str, Any], path: Path) -> None:
    fig, (ax,) = new_figure()
    for run in d["runs"]:
        ax.plot(d["steps"], run["a"], "o-", lw=2, label=f"k = {run['k']}: impl, $B_k$ iterated")
        ax.plot(d["steps"], run["recursion"], "x", color="k", ms=7)
    ax.plot([], [], "x", color="k", label="$a_{t+1} = 1 - (1 - a_t)^k$")
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("amplification round t")
    ax.set_ylabel("$a_t = p_t(A^*)$")
    ax.set_title(f"Iterated amplification from a_0 = {float(d['runs'][0]['a'][0]):g}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    save_png(fig, path)


def _plot_demonstrator(d: dict[str, Any], path: Path) -> None:
    fig, (left, right) = new_figure(2)
    q1 = float(d["demonstrator"][1])
    left.plot(d["steps"], d["rl"], lw=2, color="tab:red", label="RL, reward 1[x = demo], demo ~ q")
    left.plot(
        d["steps"], d["imitation"], lw=2, color="tab:blue", label="imitation of the demonstrator"
    )
    left.axhline(q1, color="tab:blue", ls=":", lw=1, label=f"q(answer 1) = {q1:.4g}")
    left.axhline(1.0, color="tab:red", ls=":", lw=1, label="point mass on argmax q")
    _steps_axis(left)
    left.set_ylim(0.4, 1.03)
    left.set_ylabel("p_t(answer 1)")
    left.set_title(f"Demonstrator q = {vec(d['demonstrator'])}")
    left.legend(fontsize=8, loc="lower right")
    x = np.arange(d["demonstrator"].size)
    left_bars = right.bar(x - 0.2, d["rl_gradient_at_q"], width=0.4, color="tab:red", label="RL")
    right_bars = right.bar(
        x + 0.2, d["imitation_gradient_at_q"], width=0.4, color="tab:blue", label="imitation"
    )
    right.bar_label(left_bars, fmt="%.4f", fontsize=8)
    right.bar_label(right_bars, fmt="%.4f", fontsize=8)
    right.axhline(0.0, color="k", lw=0.8)
    right.set_xticks(x, [f"logit {i}" for i in x])
    right.set_ylabel("expected update at p = q")
    right.set_title("At imitation's optimum RL still moves")
    right.legend(fontsize=8)
    save_png(fig, path)


def _plot_limited(d: dict[str, Any], path: Path) -> None:
    fig, (ax,) = new_figure()
    ax.plot(d["steps"], d["rl"], lw=2.5, color="k", label="RL on the score")
    for run in d["imitation"]:
        (line,) = ax.plot(d["steps"], run["mass"], lw=2, label=f"imitation of best-of-{run['k']}")
        ax.axhline(run["limit"], color=line.get_color(), ls=":", lw=1)
    ax.plot([], [], color="0.4", ls=":", label="1 - (1 - q(A*))^k")
    _steps_axis(ax)
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("$p_t(A^*)$")
    ax.set_title(f"scores {vec(d['scores'])}, proposal q = {vec(d['proposal'])}")
    fig.legend(loc="outside lower center", fontsize=8, ncols=3)
    save_png(fig, path)


# --------------------------------------------------------------------------- captions


def vec(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.asarray(values).ravel()) + ")"


def _steps_text(n: int | None, budget: int) -> str:
    return f"{n:,} steps" if n is not None else f"more than {budget:,} steps"


def _caption_xstar(d: dict[str, Any]) -> str:
    hit = d["steps_to_0.99"]
    dips = (
        " RL on the score is not even monotone in p(X*): mass first flows to the good but "
        "not best answers."
        if d["rl_dips"]
        else ""
    )
    return (
        f"p_t(X*) under exact expected-update dynamics (impl.rl_trajectory, "
        f"impl.imitation_trajectory) from logits {vec(d['logits'])}, same step size "
        f"{d['step_size']:g} for all three. To reach p(X*) ≥ 0.99: imitation of the "
        f"unbounded-search overseer {_steps_text(hit['imitation'], XSTAR_STEPS)}, RL with "
        f"reward 1[x = X*] {_steps_text(hit['indicator'], XSTAR_STEPS)}, RL on the score "
        f"{_steps_text(hit['rl'], XSTAR_STEPS)}.{dips} Conclusion: with unlimited compute all "
        "three end at X*, as claimed; they differ in speed. The indicator-reward update is "
        "exactly imitation's update times p_t(X*), so it crawls while X* is unlikely and "
        "matches imitation once p(X*) is near 1."
    )


def _caption_rate(d: dict[str, Any]) -> str:
    parts = []
    for case in d["cases"]:
        holds = "holds at every step" if case["bound_holds_every_step"] else "is VIOLATED"
        parts.append(
            f"{case['name']} (scores {vec(case['scores'])}, logits {vec(case['logits'])}, "
            f"{case['total_steps']:,} steps of size {case['step_size']:g}): the bound {holds}; "
            f"p(A*) reaches 1/2 after {_steps_text(case['steps_to_half'], case['total_steps'])} "
            f"and 0.99 after {_steps_text(case['steps_to_0.99'], case['total_steps'])} "
            f"(its minimum along the way: {case['min_mass']:.2g})"
        )
    return (
        "Left: J* - J(θ_t) for exact softmax policy gradient at the largest safe step "
        "2/(5 (max s - min s)), on log-log axes, against the O(1/t) bound "
        "5 (max s - min s) / (c_t² t) with c_t = min over u ≤ t of max over a in A* of p_u(a) "
        "(Mei et al. 2020; the property behind rl-converges-to-xstar). Right: p_t(A*). "
        + "; ".join(parts)
        + ". Conclusion: "
        + (
            "the rate holds in every case"
            if all(c["bound_holds_every_step"] for c in d["cases"])
            else "the bound FAILS somewhere above, which contradicts the theorem: a bug to report"
        )
        + ", but its constant is 1/c², and c is the smallest mass the best answer ever had. "
        "In the plateau cases the second-best answer "
        "soaks up the mass and J* - J sits at the score gap for tens of thousands of steps "
        "while the bound, true but enormous, says nothing useful; a slightly smaller initial "
        "logit on the best answer (-3 instead of -2.5) gives a far longer plateau. 'Given "
        "unlimited compute' can mean a great deal of compute."
    )


def _caption_search(d: dict[str, Any]) -> str:
    return (
        f"Best-of-k search with proposal q = {vec(d['proposal'])} over scores "
        f"{vec(d['scores'])}: left, the exact output distribution B_k(q) "
        f"(impl.best_of_k_distribution) for k = 1..{int(d['k'][-1])}; right, its mass on the best "
        "answers against the closed form 1 - (1 - q(A*))^k (impl.best_of_k_mass_on_maximisers); "
        f"they agree to {d['max_abs_difference']:.1g}. Conclusion: a limited search puts mass "
        "on A* that grows with k but is below 1 for every finite k whenever q(A*) < 1; "
        "imitating it inherits that shortfall."
    )


def _caption_amplification(d: dict[str, Any]) -> str:
    return (
        f"Iterated amplification with exact distillation, p_(t+1) = B_k(p_t) "
        f"(impl.amplification_trajectory), scores {vec(d['scores'])}, from "
        f"p_0 = {vec(d['start'])}. Lines: the mass a_t = p_t(A*) computed by impl; crosses: "
        f"the recursion a_(t+1) = 1 - (1 - a_t)^k; they agree to {d['max_abs_difference']:.1g}. "
        "Conclusion: for every k ≥ 2 the amplified policy converges to A*, and faster for "
        "larger k (the shortfall 1 - a_t is raised to the power k each round); k = 1 is no "
        "search and never improves."
    )


def _caption_demonstrator(d: dict[str, Any]) -> str:
    q = d["demonstrator"]
    return (
        f"Refuted claim indicator-reward-stochastic-demonstrator. The demonstrator answers "
        f"q = {vec(q)}. RL with reward 1[x = demo] sees the expected reward q_x for answer x, so "
        f"it is RL on the scores q (impl.rl_trajectory, step {d['step_size_rl']:g}); imitation "
        f"ascends Σ q log p (impl.imitation_trajectory, step {d['step_size_imitation']:g}); both "
        f"start from the uniform policy. Left: after {DEMONSTRATOR_STEPS:,} steps imitation sits "
        f"at p(answer 1) = {float(d['imitation'][-1]):.4f} = q(answer 1) while RL is at "
        f"{float(d['rl'][-1]):.4f} and still climbing to 1. Right: at p = q imitation's expected "
        f"update is 0 but RL's is {vec(d['rl_gradient_at_q'])} (that is (-2/27, 2/27)). "
        "Conclusion: with a stochastic demonstrator RL on the indicator reward does not imitate; "
        "it converges to the point mass on the demonstrator's most likely answer."
    )


def _caption_limited(d: dict[str, Any]) -> str:
    limits = ", ".join(f"k = {r['k']}: {r['limit']:.4g}" for r in d["imitation"])
    return (
        f"Refuted claim rl-equals-imitation-under-limited-search. Scores {vec(d['scores'])}, "
        f"search proposal q = {vec(d['proposal'])}; both learners start at p = q. Black: RL on "
        f"the overseer's score (step {d['step_size_rl']:g}) ends with p(A*) = "
        f"{float(d['rl'][-1]):.4f} after {LIMITED_STEPS:,} steps and tends to 1. Coloured: "
        "imitation of best-of-k search settles at B_k(q)(A*) = 1 - (1 - q(A*))^k (dotted: "
        f"{limits}). Conclusion: under limited search RL on the score and imitation of the "
        "search's output reach different places; RL goes further than the overseer it is "
        "trained on, imitation stops where the search stops."
    )


@dataclass(frozen=True)
class FigureSpec:
    name: str
    section: str
    title: str
    compute: Callable[[], dict[str, Any]]
    plot: Callable[[dict[str, Any], Path], None]
    caption: Callable[[dict[str, Any]], str]


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "xstar",
        "Where RL and imitation go",
        "p(X*) over steps: RL on the score, imitation of X*, RL with the indicator reward",
        _xstar_data,
        _plot_xstar,
        _caption_xstar,
    ),
    FigureSpec(
        "rate",
        "Where RL and imitation go",
        "J* - J(θ_t) against the O(1/t) bound, with a plateau",
        _rate_data,
        _plot_rate,
        _caption_rate,
    ),
    FigureSpec(
        "search",
        "Limited search and amplification",
        "Best-of-k search: B_k(q) and the mass on the best answers",
        _search_data,
        _plot_search,
        _caption_search,
    ),
    FigureSpec(
        "amplification",
        "Limited search and amplification",
        "Iterated amplification a_t for several k",
        _amplification_data,
        _plot_amplification,
        _caption_amplification,
    ),
    FigureSpec(
        "demonstrator",
        "The refuted claims",
        "A stochastic demonstrator: RL with the indicator reward versus imitation",
        _demonstrator_data,
        _plot_demonstrator,
        _caption_demonstrator,
    ),
    FigureSpec(
        "limited",
        "The refuted claims",
        "Limited search: RL on the score versus imitation of best-of-k",
        _limited_data,
        _plot_limited,
        _caption_limited,
    ),
)
"""The figures of the claims report, in page order."""
