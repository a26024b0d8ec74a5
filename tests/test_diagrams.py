"""The explanatory diagrams: each is a figure pyplot does not keep, with readable text."""

from __future__ import annotations

import datetime as dt

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib import diagrams, plots

_RNG = np.random.default_rng(0)
_IMAGE = np.kron(_RNG.integers(0, 4, (8, 8)) * 85, np.ones((16, 16))).astype(np.uint8)

FIGURES = {
    "model_sizes": lambda: diagrams.model_sizes([("A", dt.date(2019, 1, 1), 1e8),
                                                 ("B", dt.date(2023, 1, 1), 7e10)]),
    "block_patterns": lambda: diagrams.block_patterns(
        {"plaintext": _IMAGE.tobytes(), "noise": _RNG.bytes(_IMAGE.size)}, _IMAGE.shape),
    "share_histograms": lambda: diagrams.share_histograms(
        {0: _RNG.integers(0, 101, 500), 42: _RNG.integers(0, 101, 500)}, prime=101),
    "gcm": lambda: diagrams.gcm(),
    "packed_plaintext": lambda: diagrams.packed_plaintext(slot_bits=53, slots=38, key_bits=2048,
                                                          value_bits=17, headroom=35),
    "shamir_shares": lambda: diagrams.shamir_shares(
        [int(v) for v in np.polynomial.Polynomial([42, 13, 94])(np.arange(97)) % 97],
        [(x, int(42 + 13 * x + 94 * x * x) % 97) for x in range(1, 6)]),
    "fedavg_round": lambda: diagrams.fedavg_round(),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_a_diagram_is_a_figure_pyplot_does_not_keep(name):
    before = plt.get_fignums()
    with plots.style():
        fig = FIGURES[name]()
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before  # shown once, as the cell's value
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(plt.Text) if t.get_text()]
    assert sizes and min(sizes) >= plots.MIN_FONT_SIZE


def test_the_packing_layout_labels_follow_its_arguments():
    fig = diagrams.packed_plaintext(slot_bits=40, slots=3, key_bits=512, value_bits=12,
                                    headroom=27)
    texts = {t.get_text() for t in fig.findobj(plt.Text)}
    assert "value (12 bits)" in texts
    assert "bit position in the 512-bit plaintext" in texts
    assert any("3 slots of 40 bits" in t for t in texts)


def test_the_shares_panel_names_its_field():
    curve = [(5 + 3 * x + 2 * x * x) % 11 for x in range(11)]
    fig = diagrams.shamir_shares(curve, [(1, curve[1]), (2, curve[2]), (3, curve[3])])
    texts = {t.get_text() for t in fig.findobj(plt.Text)}
    assert "the real thing: a polynomial over GF(11)" in texts
    assert "the 3 shares" in texts


def test_block_patterns_count_equal_blocks():
    fig = diagrams.block_patterns({"plaintext": _IMAGE.tobytes(), "zeros": bytes(_IMAGE.size)},
                                  _IMAGE.shape)
    texts = {t.get_text() for t in fig.findobj(plt.Text)}
    assert "1 distinct blocks of 1024" in texts  # every block of the zeros is the same
