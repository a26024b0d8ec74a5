"""The guides, README and TEACHING, in both editions: links that lead somewhere, no drift.

The Chinese guides (README.zh-CN.md, TEACHING.zh-CN.md) are complete editions of the English ones,
written by hand. These checks catch what a reader would trip over: a link to a file that is not
there, a guide without a way to its other edition, and a section or a ``make`` command added to
one edition only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDITIONS = {"README.md": "README.zh-CN.md", "TEACHING.md": "TEACHING.zh-CN.md"}
DOCS = sorted({*EDITIONS, *EDITIONS.values()})

# Files the guides may link before they exist (a chapter being written). Each entry must still be
# missing: once its file exists, remove it here, so that a link that breaks later is caught.
PENDING: set[str] = set()

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MAKE = re.compile(r"(?:`|^[ \t]*|&&[ \t]*|\$[ \t])make ([a-z][a-z0-9-]*)", re.M)


def _read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def links(text: str) -> list[str]:
    """Link targets in Markdown prose (not in code blocks or code spans)."""
    return _LINK.findall(_CODE_SPAN.sub("", _FENCE.sub("", text)))


def relative_targets(text: str) -> list[str]:
    """The targets that name a file of the repository, anchors dropped."""
    out = []
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, or an anchor in the same page
        out.append(target.split("#", 1)[0])
    return out


def headings(text: str) -> list[str]:
    """Markdown headings outside code blocks, as their level marks ('#', '##', ...)."""
    return [m.group(1) for m in re.finditer(r"^(#{1,6}) \S", _FENCE.sub("", text), re.M)]


def make_commands(text: str) -> set[str]:
    """Every ``make TARGET`` the text shows (in code spans, code blocks or command lines)."""
    return set(_MAKE.findall(text))


def test_the_helpers_see_what_a_reader_sees():
    text = ("See [a](a.md#part), [web](https://x.org), [here](#top) and `[no](code.md)`.\n"
            "```\n# not a heading\nmake lab\n[no](in_code.md)\n```\n## A heading\n"
            "Run `make test CONSTRAINTS=`, then cd x && make e2e; `make` therefore installs.")
    assert relative_targets(text) == ["a.md"]
    assert headings(text) == ["##"]
    assert make_commands(text) == {"lab", "test", "e2e"}


@pytest.mark.parametrize("english", sorted(EDITIONS))
def test_each_edition_links_the_other_at_its_top(english):
    chinese = EDITIONS[english]
    assert (ROOT / chinese).exists(), f"{chinese} is missing"
    for name, other in ((english, chinese), (chinese, english)):
        top = _read(name).split("\n# ", 1)[0]  # what comes before the title
        assert other in links(top), f"{name} must link {other} above its title"


@pytest.mark.parametrize("name", DOCS)
def test_every_relative_link_leads_to_a_file(name):
    broken = []
    for target in relative_targets(_read(name)):
        path = (ROOT / name).parent / target
        rel = path.resolve().relative_to(ROOT).as_posix() if path.resolve().is_relative_to(ROOT) \
            else target
        if not path.exists() and rel not in PENDING:
            broken.append(target)
    assert not broken, f"{name}: links to missing files: {broken}"


def test_pending_links_are_still_pending():
    arrived = sorted(p for p in PENDING if (ROOT / p).exists())
    assert not arrived, f"these files exist now, remove them from PENDING: {arrived}"


@pytest.mark.parametrize("english", sorted(EDITIONS))
def test_the_chinese_edition_does_not_drift(english):
    en, zh = _read(english), _read(EDITIONS[english])
    assert headings(zh) == headings(en), (
        f"{EDITIONS[english]} has {len(headings(zh))} headings, {english} {len(headings(en))}: "
        "a section was added to, or removed from, one edition only")
    assert make_commands(zh) == make_commands(en), (
        f"make commands only in {english}: {sorted(make_commands(en) - make_commands(zh))}; "
        f"only in {EDITIONS[english]}: {sorted(make_commands(zh) - make_commands(en))}")


def _chapters(text: str, folder: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"\]\({folder}/(\d[^/)]*)\.ipynb\)", text)]


def test_the_chinese_readme_maps_the_chinese_edition_of_every_chapter():
    en, zh = _read("README.md"), _read("README.zh-CN.md")
    chapters = list(dict.fromkeys(_chapters(en, "notebooks")))
    assert len(chapters) >= 12
    assert list(dict.fromkeys(_chapters(zh, "notebooks/zh"))) == chapters
    assert list(dict.fromkeys(_chapters(zh, "exercises/zh"))) == chapters
    assert list(dict.fromkeys(_chapters(en, "notebooks/zh"))) == chapters  # the 中文版 column
