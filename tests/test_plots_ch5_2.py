"""course_lib.plots, chapter 5.2: the model-extraction figure holds the curve it was given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib import plots
from course_lib.attacks.extraction import ExtractionCurve

ROWS = (("probabilities", 25, 0.80, 0.77), ("probabilities", 100, 0.95, 0.91),
        ("label", 100, 0.86, 0.84), ("label", 25, 0.42, 0.40),
        ("budget", 25, 0.80, 0.77), ("budget", 100, 0.95, 0.91))


@pytest.fixture()
def curve():
    return ExtractionCurve(rows=ROWS, victim_accuracy=0.94, budget=50)


def test_extraction_curves_draw_fidelity_and_accuracy_per_series_in_query_order(curve):
    open_before = plt.get_fignums()
    fig = plots.extraction_curves(curve)
    assert isinstance(fig, Figure) and plt.get_fignums() == open_before
    left, right = fig.axes
    lines = {ln.get_label(): ln for ln in left.lines}
    label_only = lines["label only"]
    assert list(label_only.get_xdata()) == [25, 100]               # sorted by queries
    assert np.allclose(label_only.get_ydata(), [0.42, 0.86])       # fidelity on the left
    accuracy = {ln.get_label(): ln for ln in right.lines}["label only"]
    assert np.allclose(accuracy.get_ydata(), [0.40, 0.84])         # accuracy on the right
    assert {"full probabilities", "probabilities, query budget", "budget: 50 queries"} <= set(lines)
    assert any(ln.get_label() == "victim (0.940)" and np.allclose(ln.get_ydata(), 0.94)
               for ln in right.lines)
    assert left.get_xscale() == "log" and left.get_ylim()[0] <= 0.40  # no point cut off


def test_every_line_has_a_legend_entry_and_text_is_readable(curve):
    fig = plots.extraction_curves(curve)
    fig.canvas.draw()
    for ax in fig.axes:
        legend = {t.get_text() for t in ax.get_legend().get_texts()}
        assert {ln.get_label() for ln in ax.lines} == legend
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(),
                 *ax.get_yticklabels(), *ax.get_legend().get_texts()]
        assert min(t.get_fontsize() for t in texts if t.get_text()) >= plots.MIN_FONT_SIZE
    assert fig.dpi >= 100


def test_a_curve_without_a_budget_draws_no_budget_line():
    fig = plots.extraction_curves(ExtractionCurve(rows=ROWS[:2], victim_accuracy=0.9))
    assert not any("budget" in ln.get_label() for ax in fig.axes for ln in ax.lines)


@pytest.mark.parametrize("bad", [None, ExtractionCurve(rows=(), victim_accuracy=0.9)])
def test_extraction_curves_refuse_an_empty_curve(bad):
    with pytest.raises(ValueError, match="`curve` must be an ExtractionCurve"):
        plots.extraction_curves(bad)
