"""The widget lab works in Voila (no code shown): the chapter 4.3 notebook and the dashboard.

Voila runs the notebook's cells when the page is requested and shows only outputs; dragging
the "nodes (clients)" slider must redraw the plot. The dashboard (what ``make dashboard``
serves) must also show no source code.
"""

from __future__ import annotations

import pytest

from tests.e2e._lab import check_slider_redraws_plot, find_lab
from tests.e2e.conftest import NOTEBOOKS, copy_notebook

CHAPTER = NOTEBOOKS / "04_3_federated_learning_code.ipynb"
DASHBOARD = NOTEBOOKS / "dashboard.ipynb"

pytest.importorskip("voila", reason="Voila is not installed (the `e2e` or `dashboard` extra)")


def test_slider_redraws_the_plot_in_voila(workdir, start_server, page):
    server = start_server("voila", copy_notebook(CHAPTER, workdir))
    page.goto(server.url, timeout=180_000)
    find_lab(page, timeout=180)
    check_slider_redraws_plot(page, timeout=30)


def test_dashboard_shows_the_lab_without_code(workdir, start_server, page):
    server = start_server("voila", copy_notebook(DASHBOARD, workdir))
    page.goto(server.url, timeout=120_000)
    find_lab(page, timeout=120)
    text = page.inner_text("body")
    assert "fedavg_lab(" not in text and "import" not in text  # sources stripped
    code = ".jp-CodeCell .jp-InputArea, .jp-InputArea-editor, .highlight, .CodeMirror, .cm-editor"
    assert page.locator(code).count() == 0
    check_slider_redraws_plot(page, timeout=30)
