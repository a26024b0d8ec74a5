"""The widget lab works in a real JupyterLab: run the chapter 4.3 notebook, move the slider.

A temporary copy of ``notebooks/04_3_federated_learning_code.ipynb`` is opened in JupyterLab
(127.0.0.1, token) in headless Chromium; all cells run; dragging the "nodes (clients)" slider
must redraw the plot, and so must typing a number in the box beside it, with "running..." in the
status line while it trains. JupyterLab with the course's settings asks no news question.
``test_the_check_catches_a_disconnected_slider`` runs the same check on a notebook whose lab no
longer listens to its controls, and requires it to fail.
"""

from __future__ import annotations

import pytest

from tests.e2e._lab import (
    check_slider_redraws_plot,
    check_typed_nodes_redraw,
    find_lab,
    run_all_cells_in_jupyterlab,
    truncated_buttons,
)
from tests.e2e.conftest import NOTEBOOKS, ROOT, copy_notebook

CHAPTER = NOTEBOOKS / "04_3_federated_learning_code.ipynb"
DASHBOARD = NOTEBOOKS / "dashboard.ipynb"


def test_slider_redraws_the_plot_in_jupyterlab(workdir, start_server, page):
    server = start_server("lab", copy_notebook(CHAPTER, workdir))
    run_all_cells_in_jupyterlab(page, server.url, timeout=180)
    change = check_slider_redraws_plot(page, timeout=30)
    assert float(change["nodes_after"]) > float(change["nodes_before"])


def test_the_check_catches_a_disconnected_slider(workdir, start_server, page):
    broken = copy_notebook(DASHBOARD, workdir, disconnect=True)
    server = start_server("lab", broken)
    run_all_cells_in_jupyterlab(page, server.url, timeout=120)
    with pytest.raises(AssertionError, match="the plot did not change"):
        check_slider_redraws_plot(page, timeout=8)


def test_typing_nodes_says_running_then_redraws(workdir, start_server, page):
    """Type a value (no dragging), see "running..." while it trains, then the new plot."""
    server = start_server("lab", copy_notebook(DASHBOARD, workdir))
    run_all_cells_in_jupyterlab(page, server.url, timeout=180)
    lab = find_lab(page, timeout=60)
    assert truncated_buttons(lab) == []                       # "complete", not "compl..."
    result = check_typed_nodes_redraw(page, value=1000, timeout=90)
    assert result["seen"] and all(text.startswith("running") for text in result["seen"])
    assert result["plot_changed"] and result["box"] == "1000"
    assert float(result["slider_after"]) > float(result["slider_before"])  # the slider follows
    assert "final test accuracy" in result["status"] and "running" not in result["status"]


@pytest.mark.parametrize("settings", ["course", "none"])
def test_no_news_popup_with_the_course_settings(settings, workdir, start_server, page):
    """jupyter/overrides.json (what `make lab` installs) turns JupyterLab's news question off;
    without it the question appears, which shows that this check can fail."""
    folder = ROOT / "jupyter" if settings == "course" else workdir / "no-settings"
    folder.mkdir(exist_ok=True)
    server = start_server("lab", copy_notebook(DASHBOARD, workdir), lab_settings=folder)
    page.goto(server.url)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget",
                           timeout=120_000)
    question = page.locator(".Toastify__toast", has_text="official Jupyter news")
    if settings == "course":
        page.wait_for_timeout(5000)                           # the question comes within 1-2 s
        assert question.count() == 0
    else:
        question.first.wait_for(timeout=30_000)
