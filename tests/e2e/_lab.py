"""What the browser tests do on a page that shows ``course_lib.widgets.fedavg_lab``.

The check: find the lab (the widget box holding the "nodes (clients)" slider), take the SHA-256
of the plot's PNG bytes, drag the slider's handle with the mouse, and require that the handle's
value changed and that a *different* PNG is shown within ``timeout`` seconds. A slider that
moves but redraws nothing fails with an ``AssertionError``.
"""

from __future__ import annotations

import time
from typing import Any

NODES_LABEL = "nodes (clients)"

_DIGEST = """async (img) => {
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const hash = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(hash), b => b.toString(16).padStart(2, "0")).join("");
}"""

# JupyterLab (started with --LabApp.expose_app_in_browser): every code cell has run, or one
# failed, and the kernel is idle.
_NOTEBOOK_DONE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.content || !panel.sessionContext.session) return false;
    const kernel = panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.filter(c => c.model.type === "code");
    const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === "error"));
    return kernel && kernel.status === "idle" && (failed || cells.every(
        c => c.model.executionCount !== null));
}"""

_NOTEBOOK_ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(c => c.model.type === "code")
    .flatMap(c => c.model.outputs.toJSON())
    .filter(o => o.output_type === "error")
    .map(o => o.ename + ": " + o.evalue)"""

_KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const session = panel && panel.sessionContext && panel.sessionContext.session;
    return Boolean(session && session.kernel && session.kernel.status === "idle");
}"""


def run_all_cells_in_jupyterlab(page: Any, url: str, *, timeout: float) -> None:
    """Open ``url`` in JupyterLab, run every cell, wait until done; fail on any error output."""
    page.goto(url)
    page.wait_for_function(_KERNEL_IDLE, timeout=timeout * 1000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(_NOTEBOOK_DONE, timeout=timeout * 1000, polling=250)
    errors = page.evaluate(_NOTEBOOK_ERRORS)
    assert errors == [], f"cells raised: {errors}"


def find_lab(page: Any, *, timeout: float) -> Any:
    """The lab's outer widget box, once its plot is shown; a traceback on the page fails fast."""
    lab = page.locator(".widget-vbox", has=page.locator(".widget-label",
                                                        has_text=NODES_LABEL)).last
    img = lab.locator("img").first
    traceback = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call")
    deadline = time.monotonic() + timeout
    while not (img.count() and img.is_visible()):
        if traceback.count():
            raise AssertionError(f"a cell raised:\n{traceback.first.inner_text()[-1500:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no lab plot on the page after {timeout:g} s")
        page.wait_for_timeout(250)
    return lab


def plot_digest(lab: Any) -> tuple[str, str]:
    """``(src, sha256 of the PNG bytes)`` of the lab's plot."""
    img = lab.locator("img").first
    return img.get_attribute("src"), img.evaluate(_DIGEST)


def move_nodes_slider(page: Any, lab: Any, *, pixels: int = 25) -> tuple[str, str]:
    """Drag the nodes slider's handle ``pixels`` to the right; return its value before, after."""
    handle = lab.locator(".widget-slider", has=page.locator(".widget-label",
                                                             has_text=NODES_LABEL))
    handle = handle.locator(".noUi-handle").first
    before = handle.get_attribute("aria-valuenow")
    handle.scroll_into_view_if_needed()
    lab.locator("img").first.scroll_into_view_if_needed()  # the plot in view too, if it fits
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=10)
    page.mouse.up()
    return before, handle.get_attribute("aria-valuenow")


def _wait_until_settled(page: Any, img: Any, *, timeout: float, quiet: float = 1.0) -> None:
    deadline = page.evaluate("() => performance.now()") + timeout * 1000
    last, since = img.get_attribute("src"), page.evaluate("() => performance.now()")
    while True:
        page.wait_for_timeout(100)
        now, src = page.evaluate("() => performance.now()"), img.get_attribute("src")
        if src != last:
            last, since = src, now
        elif now - since >= quiet * 1000 or now > deadline:
            return


def check_slider_redraws_plot(page: Any, *, timeout: float = 30.0) -> dict[str, str]:
    """Move the nodes slider and require a new plot within ``timeout`` s (else AssertionError)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    lab = find_lab(page, timeout=timeout)
    src, digest = plot_digest(lab)
    before, after = move_nodes_slider(page, lab)
    assert after != before, f"the nodes slider did not move (value {before})"
    img = lab.locator("img").first
    try:
        page.wait_for_function("([img, old]) => img.src !== old", arg=[img.element_handle(), src],
                               timeout=timeout * 1000, polling=100)
    except PlaywrightTimeout:
        raise AssertionError(f"the plot did not change within {timeout:g} s after the nodes "
                             f"slider moved from {before} to {after}") from None
    _wait_until_settled(page, img, timeout=timeout)  # a long run redraws while it trains
    _, new_digest = plot_digest(lab)
    assert new_digest != digest, "the plot's image was replaced by identical bytes"
    return {"nodes_before": before, "nodes_after": after, "plot_before": digest,
            "plot_after": new_digest}


# Records every "running..." text the lab shows, however briefly (a run may take 0.2 s).
_WATCH_STATUS = """(lab) => {
    window.__courseStatus = [];
    const look = () => {
        const found = lab.innerText.match(/running[^\\n]*/);
        if (found) window.__courseStatus.push(found[0]);
    };
    new MutationObserver(look).observe(lab, {subtree: true, childList: true,
                                             characterData: true});
}"""


def nodes_box(page: Any, lab: Any) -> Any:
    """The number box beside the nodes slider (where a value can be typed)."""
    row = lab.locator(".widget-hbox", has=page.locator(".widget-label", has_text=NODES_LABEL))
    return row.locator("input").first


def check_typed_nodes_redraw(page: Any, *, value: int, timeout: float = 60.0) -> dict[str, Any]:
    """Type ``value`` in the nodes box and press Enter; require "running" in the status during
    the run, a new plot, the slider moved, and the summary at the end."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    lab = find_lab(page, timeout=timeout)
    src, digest = plot_digest(lab)
    handle = lab.locator(".widget-slider", has=page.locator(".widget-label",
                                                             has_text=NODES_LABEL))
    handle = handle.locator(".noUi-handle").first
    slider_before = handle.get_attribute("aria-valuenow")
    lab.element_handle().evaluate(_WATCH_STATUS)
    box = nodes_box(page, lab)
    box.scroll_into_view_if_needed()
    box.fill(str(value))
    box.press("Enter")
    img = lab.locator("img").first
    try:
        page.wait_for_function("([img, old]) => img.src !== old", arg=[img.element_handle(), src],
                               timeout=timeout * 1000, polling=100)
        page.wait_for_function("(lab) => lab.innerText.includes('final test accuracy')",
                               arg=lab.element_handle(), timeout=timeout * 1000, polling=100)
    except PlaywrightTimeout:
        raise AssertionError(f"no new plot and summary within {timeout:g} s after typing "
                             f"{value} in the nodes box") from None
    _wait_until_settled(page, img, timeout=timeout)
    _, new_digest = plot_digest(lab)
    return {"seen": page.evaluate("() => window.__courseStatus"),
            "box": box.input_value(), "slider_before": slider_before,
            "slider_after": handle.get_attribute("aria-valuenow"),
            "plot_changed": new_digest != digest, "status": lab.inner_text()}


def truncated_buttons(lab: Any) -> list[str]:
    """The labels of the lab's toggle buttons whose text does not fit (shown as "compl...")."""
    return lab.evaluate("""(lab) => Array.from(lab.querySelectorAll("button"))
        .filter(b => b.offsetParent !== null && b.scrollWidth > b.clientWidth + 1)
        .map(b => b.innerText)""")
