"""The widget lab works in a real JupyterLab: run the chapter 4.3 notebook, move the slider.

A temporary copy of ``notebooks/04_3_federated_learning_code.ipynb`` is opened in JupyterLab
(127.0.0.1, token) in headless Chromium; all cells run; dragging the "nodes (clients)" slider
must redraw the plot. ``test_the_check_catches_a_disconnected_slider`` runs the same check
on a notebook whose lab no longer listens to its controls, and requires it to fail.
"""

from __future__ import annotations

import pytest

from tests.e2e._lab import check_slider_redraws_plot, run_all_cells_in_jupyterlab
from tests.e2e.conftest import NOTEBOOKS, copy_notebook

CHAPTER = NOTEBOOKS / "04_3_federated_learning_code.ipynb"
DASHBOARD = NOTEBOOKS / "dashboard.ipynb"


def test_slider_redraws_the_plot_in_jupyterlab(workdir, start_server, page):
    server = start_server("lab", copy_notebook(CHAPTER, workdir))
    run_all_cells_in_jupyterlab(page, server.url, timeout=180)
    change = check_slider_redraws_plot(page, timeout=30)
    assert int(change["nodes_after"].split(".")[0]) > int(change["nodes_before"].split(".")[0])


def test_the_check_catches_a_disconnected_slider(workdir, start_server, page):
    broken = copy_notebook(DASHBOARD, workdir, disconnect=True)
    server = start_server("lab", broken)
    run_all_cells_in_jupyterlab(page, server.url, timeout=120)
    with pytest.raises(AssertionError, match="the plot did not change"):
        check_slider_redraws_plot(page, timeout=8)
