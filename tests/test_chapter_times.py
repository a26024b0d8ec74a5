"""scripts/chapter_times.py: the chapter-time rule of TEACHING.md, on a small course made here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("chapter_times",
                                              ROOT / "scripts" / "chapter_times.py")
chapter_times = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = chapter_times  # dataclasses look their module up there
spec.loader.exec_module(chapter_times)


def test_counts_prose_words_and_hanzi_not_code_or_link_targets():
    text = ("Encrypt **16 bytes** with AES-256-GCM（认证加密）, see [chapter 3.1](../x/y.ipynb).\n"
            "```python\nkey = generate_key()  # not read as prose\n```\n<img src='a.png'>")
    # Encrypt, 16, bytes, with, AES-256-GCM, see, chapter, 3.1; 认证加密
    assert chapter_times.count_text(text) == (8, 4)
    assert chapter_times.count_text("差分隐私 DP") == (1, 4)


def _notebook(path: Path, words: int, code_cells: int, first: str = "# A chapter") -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(first),
                nbformat.v4.new_markdown_cell(" ".join(["word"] * words))]
    nb.cells += [nbformat.v4.new_code_cell("x = 1") for _ in range(code_cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    (tmp_path / "README.md").write_text(
        "# Course\n\n| chapter | notebook | exercise |\n|---|---|---|\n"
        "| 1 One · 一 | [01_one](notebooks/01_one.ipynb) | [exercise](exercises/01_one.ipynb) |\n"
        "| 2 Two | [02_two](notebooks/02_two.ipynb) | [exercise](exercises/02_two.ipynb) |\n"
        "| 3 Three | [03_three](notebooks/03_three.ipynb) | — |\n"
        "See also [01_one](notebooks/01_one.ipynb) and [the lab](notebooks/dashboard.ipynb).\n",
        encoding="utf-8")
    # chapter 1: 398 + 2 words ("# A chapter") = 400 words, 3 code cells, a measured run, 20 min
    _notebook(tmp_path / "notebooks" / "01_one.ipynb", 398, 3)
    _notebook(tmp_path / "solutions" / "01_one.ipynb", 5, 1,
              first="# Exercise 1\n\nAbout 20\nminutes; 8 points.")
    # chapter 2: 18,000 words (90 min of reading alone), no exercise yet; chapter 3 missing
    _notebook(tmp_path / "notebooks" / "02_two.ipynb", 17998, 1)
    (tmp_path / "scripts").mkdir()
    (tmp_path / chapter_times.RUN_TIMES).write_text(json.dumps(
        {"notebooks": {"notebooks/01_one.ipynb": {"seconds": 61.0}}}), encoding="utf-8")
    return tmp_path


def test_the_rule_applied_to_each_chapter_of_the_course_map(course):
    one, two, three = chapter_times.rows(course)
    assert [r.number for r in (one, two, three)] == ["1", "2", "3"]
    # 400 words / 200 a minute + 3 code cells + 61 s rounded up + the 20 minutes announced
    assert (one.reading, one.code, one.run, one.exercise, one.total) == (2, 3, 2, 20, 27)
    assert (two.reading, two.run, two.exercise, two.total) == (90, 1, None, None)
    assert three.notebook is None and three.total is None


def test_the_table_flags_what_is_missing_and_what_must_be_split(course):
    lines = chapter_times.table(course).splitlines()
    assert lines[0].startswith("| chapter | notebook | words |") and len(lines) == 2 + 3 + 1
    assert lines[2] == ("| 1 | [01_one](notebooks/01_one.ipynb) | 400 | 0 | 3 | 2 | 3 | 2 | 20 "
                        "| 27 |")
    assert "≤ 1 | (to be measured) | (to be measured) |" in lines[3]
    assert lines[4].startswith("| 3 | [03_three](notebooks/03_three.ipynb) | (to be measured) |")
    assert lines[5] == "| chapters measured so far | | | | | | | | | 27 (≈ 0.5 h) |"
    # an exercise for chapter 2 brings it over 90 minutes: the table says it must be split
    _notebook(course / "solutions" / "02_two.ipynb", 1, 1, first="About 15 minutes")
    assert "| **107** (over 90: split) |" in chapter_times.table(course)
    (course / "README.md").write_text("| 1 | [01_one](notebooks/01_one.ipynb) |\n")
    assert chapter_times.table(course).endswith("| all chapters | | | | | | | | | 27 (≈ 0.5 h) |")


def test_the_chinese_edition_reads_hanzi_at_300_a_minute(course):
    (course / "README.zh-CN.md").write_text(
        "| 章节 | 笔记本 |\n|---|---|\n| 1 一 | [01_one](notebooks/zh/01_one.ipynb) |\n"
        "| 2 二 | [02_two](notebooks/zh/02_two.ipynb) |\n", encoding="utf-8")
    _notebook(course / "notebooks" / "zh" / "01_one.ipynb", 0, 3, first="中" * 900)
    one, two = chapter_times.rows(course, "zh")
    assert (one.notebook.hanzi, one.reading, one.total) == (900, 3, 3 + 3 + 2 + 20)
    assert two.notebook is None  # not translated yet
    lines = chapter_times.table(course, "zh").splitlines()
    assert lines[0].startswith("| 章节 | 笔记本 |") and "| （待测） |" in lines[3]
    assert lines[4] == "| 已测章节 | | | | | | | | | 28（约 0.5 小时） |"
    with pytest.raises(ValueError, match="`lang` must be one of"):
        chapter_times.rows(course, "fr")


def test_update_rewrites_only_the_marked_table(course):
    doc = course / "TEACHING.md"
    doc.write_text(f"# Guide\n\nBefore.\n\n{chapter_times.BEGIN}\nold table\n"
                   f"{chapter_times.END}\n\nAfter.\n", encoding="utf-8")
    assert chapter_times.main(["--root", str(course), "--update", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert "old table" not in text and chapter_times.table(course) in text
    assert text.startswith("# Guide\n\nBefore.\n\n") and text.endswith("\n\nAfter.\n")
    assert chapter_times.update(doc, chapter_times.table(course)) is False  # already current
    doc.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="needs one line"):
        chapter_times.update(doc, "x")
