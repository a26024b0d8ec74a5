"""The figures of chapter 5.1 (course_lib.plots, block "chapter 5.1"): each draws the data it
is given, with a legend entry for every line, in the course's style."""

from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib import plots
from course_lib.dp.audit import audit_dp_sgd
from course_lib.dp.composition import compare_composition
from course_lib.dp.definition import analytic_sigma, gaussian_delta


def _labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _fonts_readable(fig: Figure) -> bool:
    texts = [t for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels(),
                                            ax.xaxis.label, ax.yaxis.label, ax.title, *ax.texts)]
    texts += [t for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    return all(t.get_fontsize() >= plots.MIN_FONT_SIZE for t in texts if t.get_text())


def _run(auc: float, accuracy: float, epsilon: float, seed: int) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    return SimpleNamespace(auc=auc, test_accuracy=accuracy, epsilon=epsilon,
                           member_losses=rng.uniform(1e-4, 1e-1, 50),
                           nonmember_losses=rng.uniform(1e-3, 3.0, 50))


@pytest.fixture(scope="module")
def membership():
    return {"no DP": [_run(0.7, 0.9, math.inf, 0), _run(0.66, 0.88, math.inf, 1)],
            "z=1": [_run(0.64, 0.8, 30.0, 2), _run(0.62, 0.82, 30.0, 3)],
            "z=5": [_run(0.56, 0.5, 3.0, 4), _run(0.58, 0.4, 3.0, 5)]}


def test_membership_figure_has_a_no_dp_reference_line_for_auc_and_accuracy(membership):
    open_before = plt.get_fignums()
    fig = plots.membership_figure(membership)
    assert plt.get_fignums() == open_before and fig.dpi >= 100
    left, right = fig.axes
    assert len(left.patches) > 0 and _labels(left) == ["members (trained on)", "non-members"]
    lines = {ln.get_label(): ln for ln in right.lines}
    assert np.allclose(lines["attack AUC, DP-SGD"].get_ydata(), [0.63, 0.57])
    assert np.allclose(lines["test accuracy, DP-SGD"].get_xdata(), [30.0, 3.0])
    assert np.allclose(lines["attack AUC, no DP (0.68)"].get_ydata(), 0.68)  # the reference
    assert np.allclose(lines["test accuracy, no DP (0.89)"].get_ydata(), 0.89)
    assert "chance (AUC 0.5)" in lines
    assert sorted(_labels(right)) == sorted(lines)  # every line in the legend
    assert right.xaxis_inverted() and _fonts_readable(fig)


def test_membership_figure_refuses_a_missing_reference(membership):
    with pytest.raises(ValueError, match="reference"):
        plots.membership_figure(membership, reference="plain")
    with pytest.raises(ValueError, match="besides the reference"):
        plots.membership_figure({"no DP": membership["no DP"]})


def test_dp_fedavg_figure_draws_accuracy_of_every_run_and_epsilon_of_private_ones():
    def history(acc, eps):
        return SimpleNamespace(test_accuracy=acc, initial_accuracy=0.1, epsilon=eps,
                               rounds=np.arange(1, len(acc) + 1))

    runs = {"plain": history([0.5, 0.8], []), "z=1": history([0.4, 0.7], [3.0, 4.5])}
    fig = plots.dp_fedavg_figure(runs)
    left, right = fig.axes
    assert [ln.get_label() for ln in left.lines] == ["plain", "z=1"]
    assert np.allclose(left.lines[1].get_ydata(), [0.1, 0.4, 0.7])
    assert [ln.get_label() for ln in right.lines] == ["z=1"]
    assert np.allclose(right.lines[0].get_ydata(), [3.0, 4.5]) and _labels(right) == ["z=1"]
    assert right.get_yscale() == "log" and _fonts_readable(fig)


def test_gaussian_mechanism_figure_shows_both_worlds_the_loss_and_the_curves():
    sigma = analytic_sigma(1.0, 1e-5)
    fig = plots.gaussian_mechanism_figure(sigma=sigma, sigmas=(1.0, 2.0), delta=1e-5,
                                          delta_of=gaussian_delta)
    left, right, loss = fig.axes
    a, b = left.lines
    assert abs(a.get_xdata()[np.argmax(a.get_ydata())] - 0.0) < 0.1
    assert abs(b.get_xdata()[np.argmax(b.get_ydata())] - 1.0) < 0.1  # shifted by Delta
    x, y = loss.lines[0].get_data()
    assert np.allclose(np.diff(y) / np.diff(x), 1.0 / sigma ** 2)  # straight, slope Delta/sigma^2
    assert len(_labels(left)) == 3  # both densities and the loss line
    curve = right.lines[0]
    i = np.argmin(abs(curve.get_xdata() - 1.0))
    assert curve.get_ydata()[i] == pytest.approx(1e-5, rel=1e-6)  # meets (1, 1e-5) exactly
    assert _labels(right) == [f"sigma = {sigma:.3g}", "sigma = 1", "sigma = 2",
                              "target delta = 1e-05"]
    assert _fonts_readable(fig)
    only_left = plots.gaussian_mechanism_figure(sigma=2.0)
    assert not only_left.axes[1].get_visible()
    with pytest.raises(ValueError, match="sigma"):
        plots.gaussian_mechanism_figure(sigma=0.0)


def test_composition_figure_draws_the_four_counts():
    table = compare_composition(noise_multiplier=5.0, steps=[1, 10, 100], delta=1e-5)
    fig = plots.composition_figure(table)
    ax = fig.axes[0]
    by_label = {ln.get_label(): ln for ln in ax.lines}
    assert set(by_label) == {"simple composition", "advanced composition", "RDP accountant",
                             "exact (Gaussian DP)"}
    assert np.allclose(by_label["RDP accountant"].get_ydata(), table.rdp)
    assert np.allclose(by_label["exact (Gaussian DP)"].get_ydata(), table.exact)
    assert ax.get_xscale() == ax.get_yscale() == "log" and _fonts_readable(fig)


def test_audit_figure_draws_the_game_and_three_bars_per_noise_level():
    table = audit_dp_sgd(noise_multipliers=[0.0, 1.0], trials=200, seed=0)
    fig = plots.audit_figure(table)
    left, right = fig.axes
    assert "z = 1" in left.get_title()  # the first noisy row by default
    assert len(_labels(left)) == 3
    heights = np.array([p.get_height() for p in right.patches]).reshape(3, 2)
    assert np.allclose(heights[0], [r.epsilon_lower for r in table])
    assert np.isnan(heights[2][0]) and heights[2][1] == pytest.approx(table[1].epsilon_accountant)
    assert any(t.get_text() == "∞" for t in right.texts)  # no noise: infinite epsilon, written
    assert len(_labels(right)) == 3 and _fonts_readable(fig)
    with pytest.raises(ValueError, match="show"):
        plots.audit_figure(table, show=5)
