"""The course website (``make book``): built offline, opened in Chromium, used as a reader would.

The site is built once per run into a temporary folder by ``book/build.py`` from the committed
notebooks, inside a network namespace that has only the loopback interface when this machine
allows one (``unshare --net`` as root, or ``--map-root-user`` otherwise), so a build step that
fetched anything would fail. Python's ``http.server`` serves it on 127.0.0.1, and every request
the browser makes to any other address is aborted and recorded: each test ends by asserting that
the pages needed none (no CDN MathJax, no widget scripts, no web fonts).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from tests.e2e.conftest import NOTEBOOKS, ROOT

BUILD = ROOT / "book" / "build.py"
LAB_CHAPTER = "notebooks/04_3_federated_learning_code"
MATH_CHAPTER = "notebooks/03_3_federated_learning_algorithm"
CJK = re.compile(r"[\u4e00-\u9fff]")
NETNS_PREFIXES = (["unshare", "--net"], ["unshare", "--map-root-user", "--net"])
_IFACES = "import socket; print(' '.join(sorted(name for _, name in socket.if_nameindex())))"

_missing = [name for name in ("sphinx", "myst_nb", "sphinx_book_theme")
            if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"{', '.join(_missing)} not installed (the `book` extra)")


def _offline_prefix() -> list[str]:
    """A command prefix that runs a program with no network but loopback, or [] if none works."""
    if shutil.which("unshare") is None:
        return []
    for prefix in NETNS_PREFIXES:
        probe = subprocess.run([*prefix, sys.executable, "-c", _IFACES],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.split() == ["lo"]:
            return prefix
    return []


class Site:
    def __init__(self, folder: Path, seconds: float, offline: bool, log: str) -> None:
        self.folder, self.seconds, self.offline, self.log = folder, seconds, offline, log
        self.url = ""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """Build the site (offline when possible) and serve it on 127.0.0.1."""
    work = Path(tempfile.mkdtemp(prefix="course-book-"))
    out = work / "book"
    prefix = _offline_prefix()
    start = time.perf_counter()
    built = subprocess.run([*prefix, sys.executable, str(BUILD), "--out", str(out), "--quiet"],
                           capture_output=True, text=True, cwd=ROOT, timeout=900)
    seconds = time.perf_counter() - start
    log = built.stdout + built.stderr
    assert built.returncode == 0, f"book/build.py failed:\n{log[-4000:]}"
    print(f"\nbook built in {seconds:.1f} s ({'offline' if prefix else 'network not cut'})")
    result = Site(out, seconds, bool(prefix), log)
    broken = re.search(r"book: (\d+) link\(s\) to a page or anchor that does not exist", log)
    if broken:  # a chapter linked before it exists: listed by the build, not an error here
        warnings.warn(f"the book has {broken.group(1)} broken link(s):\n"
                      + "\n".join(line for line in log.splitlines() if "xref_missing" in line),
                      stacklevel=1)
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    result.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield result
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the browser hung up: fine
            super().handle_error(request, client_address)


@pytest.fixture
def browse(page, site: Site) -> Iterator:
    """``browse(path)`` opens a page of the site; requests off 127.0.0.1 are aborted, and the
    test fails at the end if there was any."""
    origin = urlparse(site.url).netloc
    blocked: list[str] = []

    def route(request_route) -> None:
        url = request_route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https") and parsed.netloc == origin:
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    page.context.route("**/*", route)

    def open_page(path: str):
        response = page.goto(site.url + path, wait_until="load", timeout=120_000)
        assert response is not None and response.status == 200, f"{path}: {response}"
        return page

    yield open_page
    assert not blocked, f"the site asked for resources off this machine: {blocked}"


def _html_pages(edition_dir: Path) -> list[Path]:
    return [p for p in edition_dir.rglob("*.html")
            if not {"_static", "_sources", "_images"} & set(p.relative_to(edition_dir).parts)]


# -- the build --------------------------------------------------------------------------------
def test_book_builds_with_no_network(site: Site) -> None:
    if not site.offline:
        pytest.skip("no network namespace here (unshare): the build ran with the network")
    assert (site.folder / "index.html").is_file()
    assert "book: built" in site.log
    print(f"book built offline in {site.seconds:.1f} s")


def test_both_editions_have_every_page_under_the_same_name(site: Site) -> None:
    chapters = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.name != "dashboard.ipynb")
    assert len(chapters) >= 10
    for edition in ("en", "zh"):
        assert (site.folder / edition / "index.html").is_file()
        built = sorted(p.stem for p in (site.folder / edition / "notebooks").glob("*.html"))
        assert built == chapters, edition
        for section in ("exercises", "solutions"):
            expected = sorted(p.stem for p in (ROOT / section).glob("*.ipynb"))
            found = sorted(p.stem for p in (site.folder / edition / section).glob("*.html"))
            assert found == expected, (edition, section)
    assert not (site.folder / "jupyter_execute").exists()


def test_every_page_links_the_same_page_in_the_other_edition(site: Site) -> None:
    checked = 0
    for edition, other in (("en", "zh"), ("zh", "en")):
        base = site.folder / edition
        for page in _html_pages(base):
            html = page.read_text(encoding="utf-8")
            hrefs = re.findall(r'<a class="[^"]*course-lang-switch[^"]*" href="([^"]+)"', html)
            assert len(hrefs) == 1, f"{page}: {len(hrefs)} language switches"
            target = (page.parent / hrefs[0]).resolve()
            assert target == (site.folder / other / page.relative_to(base)).resolve(), page
            assert target.is_file(), page
            # No page may pull a script, stylesheet or font from a CDN.
            remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html)
            assert not remote, f"{page}: {remote}"
            checked += 1
    assert checked >= 2 * 30


# -- in the browser ---------------------------------------------------------------------------
def test_language_switch_opens_the_chinese_page_and_back(browse) -> None:
    page = browse(f"en/{LAB_CHAPTER}.html")
    assert page.evaluate("document.documentElement.lang") == "en"
    english_title = page.inner_text("article h1")
    page.click("a.course-lang-switch")
    page.wait_for_url(f"**/zh/{LAB_CHAPTER}.html", timeout=60_000)
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    chinese_title = page.inner_text("article h1")
    assert CJK.search(chinese_title) and chinese_title != english_title, chinese_title
    body = page.inner_text("article")
    assert "本页尚未译成中文" not in body  # the chapter itself, not the English fallback
    assert len(CJK.findall(body)) > 1000
    page.click("a.course-lang-switch")
    page.wait_for_url(f"**/en/{LAB_CHAPTER}.html", timeout=60_000)
    assert page.inner_text("article h1") == english_title


def test_landing_page_opens_both_editions(browse) -> None:
    page = browse("index.html")
    page.click("a[hreflang='zh-CN']")
    page.wait_for_url("**/zh/index.html", timeout=60_000)
    assert page.inner_text("article h1").startswith("大模型隐私保护")
    assert page.locator("nav a[href*='notebooks/']").count() >= 10


_IMAGES = """() => Array.from(document.querySelectorAll('article img'), img => ({
    src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth}))"""


def _png_outputs(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum("image/png" in output.get("data", {})
               for cell in cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("edition", ["en", "zh"])
@pytest.mark.parametrize("chapter", [LAB_CHAPTER, MATH_CHAPTER])
def test_figures_render(browse, edition: str, chapter: str) -> None:
    page = browse(f"{edition}/{chapter}.html")
    images = page.evaluate(_IMAGES)
    expected = _png_outputs(ROOT / f"{chapter}.ipynb")
    assert expected >= 3 and len(images) >= expected, (len(images), expected)
    broken = [image for image in images if not image["complete"] or image["width"] == 0]
    assert not broken, broken


_LAB_CELLS = """() => {
    const cells = Array.from(document.querySelectorAll('article div.cell'));
    const at = cells.findIndex(c => c.innerText.includes('FedAvgLab('));
    if (at < 0) return null;
    const next = cells.slice(at + 1, at + 3).flatMap(c => Array.from(c.querySelectorAll('img')));
    return {placeholder: cells[at].innerText,
            figure: next.map(img => img.naturalWidth),
            widgets: document.querySelectorAll(
                '.jupyter-widgets, script[type="application/vnd.jupyter.widget-state+json"], '
                + 'script[type="application/vnd.jupyter.widget-view+json"]').length};
}"""


@pytest.mark.parametrize("edition", ["en", "zh"])
def test_widget_lab_is_shown_as_its_static_figure(browse, edition: str) -> None:
    page = browse(f"{edition}/{LAB_CHAPTER}.html")
    lab = page.evaluate(_LAB_CELLS)
    assert lab is not None, "the lab's cell is missing"
    assert lab["widgets"] == 0, "a widget view or state was left on a static page"
    assert "run the notebook in JupyterLab or Voila" in lab["placeholder"]
    assert lab["figure"] and all(width > 0 for width in lab["figure"]), lab


# The article's text without code (code cells may hold TeX strings for plot labels).
_PROSE = """() => {
    const article = document.querySelector('article').cloneNode(true);
    article.querySelectorAll('div.cell, pre, code').forEach(node => node.remove());
    return article.textContent;
}"""


@pytest.mark.parametrize("edition", ["en", "zh"])
def test_math_is_typeset_by_the_bundled_mathjax(browse, edition: str) -> None:
    page = browse(f"{edition}/{MATH_CHAPTER}.html")
    source = page.evaluate("document.querySelector('script[src*=\"mathjax\"]').src")
    assert urlparse(source).netloc == urlparse(page.url).netloc, source
    page.wait_for_function("document.querySelectorAll('article mjx-container').length > 20",
                           timeout=60_000)
    assert page.locator("article mjx-merror").count() == 0
    prose = page.evaluate(_PROSE)
    assert "\\(" not in prose and "\\sum" not in prose, "TeX left untypeset"


@pytest.mark.parametrize("edition, word", [("en", "Exercise 3.3"), ("zh", "练习 3.3")])
def test_chapter_links_its_exercise(browse, edition: str, word: str) -> None:
    page = browse(f"{edition}/{MATH_CHAPTER}.html")
    link = page.locator("article a[href$='exercises/03_3_federated_learning_algorithm.html']")
    assert link.count() >= 1
    href = link.last.get_attribute("href")
    link.last.click()
    page.wait_for_url(urljoin(page.url, href), timeout=60_000)
    assert page.inner_text("article h1").startswith(word)
    assert page.locator("a.course-lang-switch").count() == 1


@pytest.mark.parametrize("edition, query", [("en", "secure aggregation"), ("zh", "差分隐私")])
def test_search_finds_a_course_term(browse, edition: str, query: str) -> None:
    page = browse(f"{edition}/index.html")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(urljoin(page.url, f"search.html?q={query}"), wait_until="load")
    page.wait_for_function("document.querySelectorAll('#search-results li').length >= 3",
                           timeout=60_000)
    assert not errors, errors


# -- staging (no browser needed, but kept with the site's tests) --------------------------------
def _build_module():
    spec = importlib.util.spec_from_file_location("_course_book_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("repo_file, staged_file, link, expected", [
    ("notebooks/zh/01_background.ipynb", "notebooks/01_background.ipynb",
     "../../exercises/zh/03_3_x.ipynb", "../exercises/03_3_x.ipynb"),
    ("notebooks/zh/01_background.ipynb", "notebooks/01_background.ipynb",
     "02_core_concepts.ipynb#glossary", "02_core_concepts.ipynb#glossary"),
    ("solutions/zh/03_3_x.ipynb", "solutions/03_3_x.ipynb",
     "../../notebooks/zh/03_3_x.ipynb", "../notebooks/03_3_x.ipynb"),
    ("notebooks/06_faq.ipynb", "notebooks/06_faq.ipynb",
     "../notebooks/03_1_x.ipynb#key-size-dates", "03_1_x.ipynb#key-size-dates"),
    ("notebooks/01_background.ipynb", "notebooks/01_background.ipynb",
     "https://example.org/a.ipynb", "https://example.org/a.ipynb"),
    ("notebooks/01_background.ipynb", "notebooks/01_background.ipynb",
     "../README.md", "../README.md"),  # not part of the site: left as it is
])
def test_links_are_rewritten_to_the_staged_layout(repo_file, staged_file, link, expected) -> None:
    build = _build_module()
    edition = "zh" if "/zh/" in repo_file else "en"
    text = f"see [this]({link}) and `code`"
    assert build._rewrite_links(text, repo_file, staged_file, edition) == \
        f"see [this]({expected}) and `code`"


def test_html_anchors_become_myst_labels() -> None:
    build = _build_module()
    text = '<a id="key-size-dates"></a>\n\n## 5. Key sizes\n\ninline <a id="x"></a> stays'
    assert build._HTML_ANCHOR.sub(r"(\1)=", text) == \
        '(key-size-dates)=\n\n## 5. Key sizes\n\ninline <a id="x"></a> stays'
