"""The two editions: the Chinese one mirrors the English cell for cell and follows the glossary.

The mechanism (scripts/sync_editions.py) is tested on a small notebook made here; the real
edition is then checked the way CI does (``--check``), and its prose against the glossary.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from course_lib.glossary import GLOSSARY, lookup, markdown_table, rejected_patterns

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sync_editions",
                                              ROOT / "scripts" / "sync_editions.py")
editions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(editions)


def _english() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A title", id="title"),
                nbformat.v4.new_code_cell("print(1 + 1)", id="code"),
                nbformat.v4.new_markdown_cell("Some prose about a **nonce**.", id="prose")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    return nb


def _translated() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    english = _english()
    chinese = editions.rebuild(english, None, "x.ipynb")
    editions.stamp(chinese, english, {"title": "# 标题", "prose": "关于**一次性数**的说明。"})
    return english, chinese


def test_untranslated_cells_are_reported_missing():
    english = _english()
    chinese = editions.rebuild(english, None, "x.ipynb")
    found = editions.problems(english, chinese, "zh/x.ipynb")
    assert [p.split(": ")[1] for p in found] == ["not translated yet"] * 2
    assert chinese.cells[1] == english.cells[1]  # code and outputs copied as they are
    assert editions.problems(english, None, "zh/x.ipynb")[0].endswith("then translate)")


def test_a_stamped_translation_is_in_step_and_survives_a_rebuild():
    english, chinese = _translated()
    assert editions.problems(english, chinese, "zh/x.ipynb") == []
    rebuilt = editions.rebuild(english, chinese, "x.ipynb")
    assert rebuilt.cells[0].source == "# 标题"
    assert editions.problems(english, rebuilt, "zh/x.ipynb") == []


def test_a_changed_english_cell_makes_the_check_fail_until_restamped():
    english, chinese = _translated()
    english.cells[2].source = "Some prose about a **nonce**, and more."
    found = editions.problems(english, chinese, "zh/x.ipynb")
    assert found == ["zh/x.ipynb cell prose: the English changed since it was translated"]
    editions.stamp(chinese, english, {"prose": "关于**一次性数**的说明，以及更多。"})
    assert editions.problems(english, chinese, "zh/x.ipynb") == []


def test_code_is_never_edited_in_the_chinese_edition():
    english, chinese = _translated()
    chinese.cells[1].source = "print(2 + 2)"
    assert "never edit it by hand" in editions.problems(english, chinese, "zh/x.ipynb")[0]
    english.cells.insert(1, nbformat.v4.new_code_cell("x = 1", id="new"))
    assert "cells differ" in editions.problems(english, chinese, "zh/x.ipynb")[0]
    rebuilt = editions.rebuild(english, chinese, "x.ipynb")  # a rebuild copies the code again
    assert [c.id for c in rebuilt.cells] == ["title", "new", "code", "prose"]
    assert editions.problems(english, rebuilt, "zh/x.ipynb") == []


def test_stamp_refuses_unknown_or_code_cells():
    english, chinese = _translated()
    with pytest.raises(SystemExit, match="not a markdown cell"):
        editions.stamp(chinese, english, {"code": "x"})
    with pytest.raises(SystemExit, match="no such cells"):
        editions.stamp(chinese, english, {"nope": "x"})


# -- the glossary -----------------------------------------------------------------------------
def test_glossary_is_one_term_one_rendering():
    english = [t.english.lower() for t in GLOSSARY]
    chinese = [t.chinese for t in GLOSSARY]
    assert len(set(english)) == len(english) and len(set(chinese)) == len(chinese)
    for pattern, term in rejected_patterns():
        others = [t for t in GLOSSARY if pattern.search(t.chinese)]
        assert not others, f"{term.english}: rejected {pattern.pattern!r} is another term's name"
    assert lookup("nonce").chinese == "一次性数"
    assert markdown_table(lang="zh").count("\n") == len(GLOSSARY) + 1


_CODE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|<[^>]+>|\]\([^)]*\)|https?://\S+",
                   re.S)


def _prose(text: str) -> str:
    """Markdown without code, formulas, tags and link targets: what a reader reads as text."""
    return _CODE.sub(" ", text)


def _edition_files() -> list[Path]:
    files = [p for folder in editions.FOLDERS
             for p in sorted((ROOT / folder / "zh").glob("*.ipynb"))]
    files += [p for p in (ROOT / "README.zh-CN.md", ROOT / "TEACHING.zh-CN.md") if p.exists()]
    return files


def _markdown_of(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".md":
        return [("", path.read_text(encoding="utf-8"))]
    nb = nbformat.read(path, as_version=4)
    return [(c.get("id"), c.source) for c in nb.cells if c.cell_type == "markdown"]


def _all_course_text() -> list[tuple[Path, str, str]]:
    english = [p for folder in editions.FOLDERS for p in sorted((ROOT / folder).glob("*.ipynb"))]
    english += [ROOT / "README.md", ROOT / "TEACHING.md"]
    return [(p, cid, text) for p in english + _edition_files() for cid, text in _markdown_of(p)]


def test_no_rejected_rendering_anywhere():
    """Neither edition uses a rendering the glossary rejects (the English glosses included)."""
    hits = [f"{path.relative_to(ROOT)} {cid}: {pattern.pattern!r} (use {term.chinese})"
            for path, cid, text in _all_course_text()
            for pattern, term in rejected_patterns() if pattern.search(_prose(text))]
    assert not hits, "\n".join(hits)


_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.mark.parametrize("path", _edition_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_chinese_prose_is_mostly_chinese(path):
    """Every translated cell reads as Chinese: code, formulas and names aside."""
    glossary_names = {w.lower() for t in GLOSSARY for w in _LATIN_WORD.findall(t.chinese)}
    english_cells = []
    for cid, text in _markdown_of(path):
        prose = _prose(text)
        words = [w for w in _LATIN_WORD.findall(prose) if w.lower() not in glossary_names]
        chars = len(_CJK.findall(prose))
        if len(words) > 8 and chars < 2 * len(words):  # ~2 characters per English word
            english_cells.append(f"{cid}: {chars} Chinese characters, {len(words)} English words")
    assert not english_cells, "\n".join(english_cells)
