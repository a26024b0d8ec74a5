"""The Chinese edition in a real browser: its text is drawn with a CJK font, not as empty boxes.

Chromium's DevTools protocol says which fonts drew a node's text (``CSS.getPlatformFontsForNode``:
a family name and a glyph count per font). A page whose Chinese is drawn as empty boxes reports
a Latin font (or none) for those glyphs; here every Chinese character of the checked node must
come from a CJK font (Noto Sans CJK, installed by ``.ci/run`` as ``fonts-noto-cjk``).

- JupyterLab opens ``notebooks/zh/01_background.ipynb``: its first heading is drawn in CJK.
- The same check, in a Chromium whose fontconfig sees no CJK font, must fail (the test of the
  test).
- Voila serves ``notebooks/zh/dashboard.ipynb`` from a folder named ``zh`` (as ``make dashboard
  DASHBOARD_LANG=zh`` does): the heading and the lab's labels are drawn in CJK, and the lab is
  Chinese: its status line, and its plot's title (the ``Title`` text chunk of the PNG the page
  shows, which the lab writes from the figure's title).
- JupyterLab runs the Chinese dashboard from a folder *not* named ``zh``: the lab still speaks
  Chinese, from the notebook's ``metadata.edition`` (the kernel's ``JPY_SESSION_NAME``).
- Voila started with ``COURSE_LANG=zh`` (what ``make dashboard DASHBOARD_LANG=zh`` sets) passes
  it to its kernel: even the English dashboard's lab is then Chinese.

Set ``COURSE_E2E_SCREENSHOTS`` to a folder to keep a screenshot of each page there.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._lab import run_all_cells_in_jupyterlab
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, NOTEBOOKS, copy_notebook

ZH = NOTEBOOKS / "zh"
NODES_LABEL = "节点数（客户端数）"   # the Chinese lab's label of its nodes slider
CJK_FAMILY = re.compile(r"CJK|Source Han|WenQuanYi|YaHei|SimHei|PingFang|Hiragino|Heiti", re.I)
SCREENSHOTS = os.environ.get("COURSE_E2E_SCREENSHOTS")
HEADING = ".jp-RenderedMarkdown h1"


def _han(text: str) -> int:
    """How many Chinese characters ``text`` holds."""
    return sum("\u4e00" <= ch <= "\u9fff" for ch in text)


def platform_fonts(page: Any, selector: str) -> list[dict]:
    """The fonts Chromium drew the text of the first node matching ``selector`` with
    (``familyName``, ``glyphCount``, ...), from the DevTools protocol."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"nothing on the page matches {selector!r}"
        return cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    finally:
        cdp.detach()


def check_drawn_in_cjk(page: Any, selector: str) -> dict[str, Any]:
    """Require that every Chinese character of ``selector``'s text comes from a CJK font."""
    element = page.locator(selector).first
    element.wait_for(timeout=60_000)
    text = element.inner_text()
    han = _han(text)
    assert han >= 2, f"{selector!r} holds no Chinese to check: {text!r}"
    fonts = platform_fonts(page, selector)
    cjk = sum(f["glyphCount"] for f in fonts if CJK_FAMILY.search(f["familyName"]))
    drawn = {f["familyName"]: f["glyphCount"] for f in fonts}
    assert cjk >= han, (f"{text!r}: {han} Chinese characters, but only {cjk} glyphs from a CJK "
                        f"font (fonts used: {drawn}): empty boxes")
    return {"text": text, "fonts": drawn}


def _screenshot(target: Any, name: str, workdir: Path) -> Path:
    """A screenshot of a page or an element, kept only in ``COURSE_E2E_SCREENSHOTS``."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else workdir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    target.screenshot(path=str(path))
    return path


def chinese_lab(page: Any, *, timeout: float) -> Any:
    """The Chinese lab's widget box, once its plot and summary are shown."""
    lab = page.locator(".widget-vbox", has=page.locator(".widget-label",
                                                        has_text=NODES_LABEL)).last
    lab.locator("img").first.wait_for(timeout=timeout * 1000)
    page.wait_for_function("(lab) => lab.innerText.includes('最终测试准确率')",
                           arg=lab.element_handle(), timeout=timeout * 1000, polling=250)
    return lab


_PNG_BYTES = """async (img) => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""


def plot_title(lab: Any) -> str:
    """The title of the plot the page shows, from the PNG's own ``Title`` text chunk."""
    import PIL.Image

    data = base64.b64decode(lab.locator("img").first.evaluate(_PNG_BYTES))
    with PIL.Image.open(io.BytesIO(data)) as png:
        return png.text.get("Title", "")


def _mark(lab: Any, css: str, text: str, name: str) -> str:
    """Give the first ``css`` element inside ``lab`` holding ``text`` a test id; its selector."""
    found = lab.evaluate("""(lab, [css, text, name]) => {
        const el = Array.from(lab.querySelectorAll(css)).find(e => e.innerText.includes(text));
        if (el) el.setAttribute("data-course-e2e", name);
        return Boolean(el);
    }""", [css, text, name])
    assert found, f"no {css} holding {text!r} in the lab"
    return f"[data-course-e2e='{name}']"


def check_chinese_lab(page: Any, *, timeout: float) -> dict[str, str]:
    """The lab speaks Chinese: labels drawn in CJK, the status line and the plot's title."""
    lab = chinese_lab(page, timeout=timeout)
    check_drawn_in_cjk(page, _mark(lab, ".widget-label", NODES_LABEL, "nodes"))
    status = lab.inner_text()
    assert "最终测试准确率" in status and "final test accuracy" not in status
    title = plot_title(lab)
    assert "个客户端" in title and "clients" not in title, f"plot title: {title!r}"
    return {"status": status, "title": title, "lab": lab}


def test_a_chinese_notebook_is_drawn_with_a_cjk_font_in_jupyterlab(workdir, start_server,
                                                                    page):
    notebook = copy_notebook(ZH / "01_background.ipynb", workdir, disconnect=False)
    server = start_server("lab", notebook)
    page.goto(server.url)
    drawn = check_drawn_in_cjk(page, HEADING)
    assert "背景" in drawn["text"]
    _screenshot(page, "zh-01-jupyterlab", workdir)


def test_the_font_check_fails_where_chromium_has_no_cjk_font(workdir, start_server):
    """Chromium with a fontconfig that sees only DejaVu: the same heading is empty boxes."""
    from playwright.sync_api import sync_playwright

    dejavu = Path("/usr/share/fonts/truetype/dejavu")
    if not dejavu.is_dir():
        pytest.skip("no DejaVu fonts to build a Latin-only fontconfig from")
    config = workdir / "fonts.conf"
    config.write_text(f"""<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>{dejavu}</dir><cachedir>{workdir / "fc-cache"}</cachedir></fontconfig>""")
    notebook = copy_notebook(ZH / "01_background.ipynb", workdir, disconnect=False)
    server = start_server("lab", notebook)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(workdir / "latin-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
            env={**os.environ, "FONTCONFIG_FILE": str(config)})
        try:
            latin = context.new_page()
            latin.goto(server.url)
            with pytest.raises(AssertionError, match="empty boxes"):
                check_drawn_in_cjk(latin, HEADING)
            _screenshot(latin, "zh-01-without-cjk-font", workdir)
        finally:
            context.close()


def test_the_chinese_dashboard_in_voila_shows_a_chinese_lab(workdir, start_server, page):
    pytest.importorskip("voila", reason="Voila is not installed (the `e2e` or `dashboard` extra)")
    folder = workdir / "zh"  # the kernel starts here: lang="auto" finds the Chinese edition
    folder.mkdir()
    server = start_server("voila", copy_notebook(ZH / "dashboard.ipynb", folder,
                                                 disconnect=False))
    page.goto(server.url, timeout=180_000)
    result = check_chinese_lab(page, timeout=180)
    drawn = check_drawn_in_cjk(page, "h1")
    assert "联邦学习" in drawn["text"]
    assert "fedavg_lab(" not in page.inner_text("body")                # no code shown
    _screenshot(result["lab"], "zh-dashboard-voila", workdir)


def test_the_chinese_dashboard_in_jupyterlab_reads_its_edition(workdir, start_server, page):
    """Outside a folder named zh, JupyterLab's JPY_SESSION_NAME leads to the notebook's
    ``metadata.edition.lang``."""
    notebook = copy_notebook(ZH / "dashboard.ipynb", workdir, disconnect=False)
    server = start_server("lab", notebook)
    run_all_cells_in_jupyterlab(page, server.url, timeout=180)
    result = check_chinese_lab(page, timeout=120)
    assert result["title"].startswith("FedAvg，Dirichlet α=0.1：10 个客户端")
    _screenshot(result["lab"], "zh-dashboard-jupyterlab", workdir)


def test_course_lang_reaches_the_kernel_through_voila(workdir, start_server, page, monkeypatch):
    pytest.importorskip("voila", reason="Voila is not installed (the `e2e` or `dashboard` extra)")
    monkeypatch.setenv("COURSE_LANG", "zh")  # the servers started below inherit it
    server = start_server("voila", copy_notebook(NOTEBOOKS / "dashboard.ipynb", workdir,
                                                 disconnect=False))
    page.goto(server.url, timeout=180_000)
    check_chinese_lab(page, timeout=180)
