"""Sphinx configuration of the course website, shared by both editions.

``book/build.py`` stages each edition's notebooks into ``build/book-src/<edition>/`` and builds
it with this file (``-c book``); the edition comes from ``COURSE_BOOK_EDITION`` ("en" or "zh").
Nothing here executes a notebook or reaches the network: outputs are the committed ones, MathJax
is served from the site itself (sphinx-mathjax-offline) and no widget script is loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

EDITION = os.environ.get("COURSE_BOOK_EDITION", "en")
if EDITION not in ("en", "zh"):
    raise ValueError(f"COURSE_BOOK_EDITION must be 'en' or 'zh', got {EDITION!r}")
OTHER = "zh" if EDITION == "en" else "en"

project = "Privacy protection for large models" if EDITION == "en" else "大模型隐私保护"
author = "The model-privacy-course authors"
copyright = "2026, " + author  # noqa: A001 (Sphinx's name)
language = "en" if EDITION == "en" else "zh_CN"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["course.css"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# -- notebooks: committed outputs only ---------------------------------------------------------
nb_execution_mode = "off"
# A widget needs a live kernel; on a static page its view would be an empty box (and would pull
# require.js and the widget manager from a CDN). The text/plain placeholder wins instead, and the
# chapter's static figure of the same run follows it.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # chapters start at "#", sections may skip a level

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "article_header_end": ["lang-switch.html", "article-header-buttons.html"],
    "use_download_button": True,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
# Chinese search: Sphinx cuts the text with jieba; build.py adds the glossary's terms to its
# dictionary so that a term is found as it is typed.
if EDITION == "zh" and os.environ.get("COURSE_BOOK_SEARCH_DICT"):
    html_search_options = {"dict": os.environ["COURSE_BOOK_SEARCH_DICT"]}
try:  # jieba reports loading its dictionary at INFO level; the build log need not show it
    import jieba

    jieba.setLogLevel(logging.WARNING)
except ImportError:
    pass
SWITCH_LABEL = {"en": "中文", "zh": "English"}
SWITCH_TITLE = {"en": "阅读本页的中文版", "zh": "Read this page in English"}
html_context = {"edition": EDITION, "other_edition": OTHER,
                "lang_switch_label": SWITCH_LABEL[EDITION],
                "lang_switch_title": SWITCH_TITLE[EDITION]}


def _other_edition_url(app, pagename: str) -> str:
    """Relative URL of ``pagename`` in the other edition (its index when it has no such page)."""
    up = "../" * (pagename.count("/") + 1)
    other_src = Path(app.srcdir).parent / OTHER
    has_page = any((other_src / f"{pagename}{suffix}").is_file() for suffix in (".ipynb", ".md"))
    if has_page or pagename in ("genindex", "search"):
        return f"{up}{OTHER}/{pagename}.html"
    return f"{up}{OTHER}/index.html"


def _page_context(app, pagename, templatename, context, doctree) -> None:
    context["lang_switch_url"] = _other_edition_url(app, pagename)


# Sphinx 9.0 gives the Chinese search the English stemmer's code but names it ChineseStemmer, so
# the search page stops with "ChineseStemmer is not defined". Until Sphinx defines it, this
# constructor (run before language_data.js) hands out the English stemmer it ships; Chinese
# words need none (jieba, in the book extra, cuts them at build time).
_ZH_STEMMER = ("window.ChineseStemmer = window.ChineseStemmer || "
               "function () { return new EnglishStemmer(); };")


def setup(app):
    app.connect("html-page-context", _page_context)
    if EDITION == "zh":
        app.add_js_file(None, body=_ZH_STEMMER, priority=1)
