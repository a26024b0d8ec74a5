"""course_lib.plots, the chapter 6 and 7 figures: each draws exactly the data it is given."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from course_lib import plots


def test_epsilon_accuracy_ticks_are_the_measured_epsilons_and_references_are_labelled():
    fig = plots.epsilon_accuracy({"a": ([21.0, 4.8, 0.59], [0.8, 0.6, 0.2]),
                                  "b": ([21.0, 4.8, 0.59], [0.9, 0.9, 0.7])},
                                 references={"a": 0.92}, delta=1e-5)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["a", "a, no DP", "b"]
    assert np.allclose(ax.lines[2].get_ydata(), [0.9, 0.9, 0.7])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.59", "4.8", "21"]
    assert ax.xaxis.get_minor_locator().tick_values(0.1, 100) == []
    left, right = ax.get_xlim()
    assert left > right, "more private (smaller epsilon) to the right"
    assert "δ = 1e-05" in ax.get_xlabel()
    assert all(t.get_fontsize() >= plots.MIN_FONT_SIZE for t in ax.get_xticklabels())


def test_epsilon_accuracy_rejects_bad_series():
    with pytest.raises(ValueError, match="series"):
        plots.epsilon_accuracy({})
    with pytest.raises(ValueError, match="epsilon > 0"):
        plots.epsilon_accuracy({"a": ([0.0, 1.0], [0.5, 0.6])})
    with pytest.raises(ValueError, match="equal-length"):
        plots.epsilon_accuracy({"a": ([1.0, 2.0], [0.5])})


def test_exposure_curves_one_line_per_setting_and_the_ceiling():
    fig = plots.exposure_curves([0, 1, 4, 16], {"no DP": [1.3, 5.3, 9.0, 13.29],
                                                "DP": [1.4, 1.2, 1.4, 1.6]}, max_exposure=13.29)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["no DP", "DP",
                                                       "fully extractable (13.29 bits)"]
    assert np.allclose(ax.lines[1].get_ydata(), [1.4, 1.2, 1.4, 1.6])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "4", "16"]
    with pytest.raises(ValueError, match="one value per repeat"):
        plots.exposure_curves([0, 1], {"x": [1.0]}, max_exposure=13.29)


def test_finetune_figure_plots_perplexity_and_encrypted_bytes():
    runs = {"LoRA": SimpleNamespace(perplexity=[2.0, 1.95, 1.92], upload_ciphertext_bytes=[32_404]),
            "full": SimpleNamespace(perplexity=[2.0, 1.9, 1.87], upload_ciphertext_bytes=[479_736])}
    fig = plots.finetune_figure(runs)
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["LoRA", "full"]
    assert np.array_equal(left.lines[1].get_xdata(), [0, 1, 2])
    assert [p.get_height() for p in right.patches] == pytest.approx([32.404, 479.736])
    with pytest.raises(ValueError, match="histories"):
        plots.finetune_figure({})
