"""Build the course website: both editions, from the committed notebooks, offline.

    python book/build.py [--out build/book] [--no-solutions] [--quiet]

Writes ``<out>/en/`` (notebooks/, exercises/, solutions/ in English), ``<out>/zh/`` (the same
file names, from notebooks/zh/, exercises/zh/, solutions/zh/) and ``<out>/index.html``, a landing
page that links both. Nothing is executed and nothing is fetched: Sphinx + MyST-NB render the
outputs stored in the notebooks (``nb_execution_mode = "off"`` in book/conf.py).

Each edition is first staged into ``build/book-src/<edition>/`` so that both have one layout
(``notebooks/X``, ``exercises/X``, ``solutions/X``) and a page's counterpart has the same path:

- relative links between notebooks are rewritten to that layout (``../../exercises/zh/X.ipynb``
  in notebooks/zh/ becomes ``../exercises/X.ipynb``);
- saved widget state is dropped (a static page cannot run a widget; its text placeholder and the
  chapter's static figure are shown instead);
- each chapter ends with a link to its exercise;
- a page the Chinese edition does not have yet is the English page under a note saying so, so
  the language switch always lands on the same page.
A Sphinx warning fails the build. A link to a page or anchor that does not exist (a chapter
not written yet, say) is listed at the end and fails the build only with ``--strict``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
EDITIONS = ("en", "zh")
SECTIONS = ("notebooks", "exercises", "solutions")
# Not part of the book: the Voila dashboard is an app, not a page.
SKIP = {"dashboard.ipynb"}
# Where an edition's files live in the repository.
SOURCE_DIRS = {ed: {s: (s if ed == "en" else f"{s}/zh") for s in SECTIONS} for ed in EDITIONS}
CAPTIONS = {"en": {"notebooks": "Chapters", "exercises": "Exercises", "solutions": "Solutions"},
            "zh": {"notebooks": "章节", "exercises": "练习", "solutions": "参考答案"}}
EXERCISE_LINK = {"en": "**Exercise for this chapter:** [{title}]({href})",
                 "zh": "**本章练习**：[{title}]({href})"}
UNTRANSLATED = ("```{{admonition}} 本页尚未译成中文\n:class: warning\n"
                "中文版还没有这一页，下面暂时显示英文版（<a href=\"{href}\">English</a>）。\n```")
SOLUTIONS_NOTE = {"en": "The solution pages show one worked answer with the checks that grade it.",
                  "zh": "参考答案页面给出一份完整解答，以及用来评分的检查。"}
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")
# A notebook marks a link target for Jupyter with an empty HTML anchor on its own line; Sphinx
# needs it as a MyST label to resolve ``chapter.ipynb#name`` (the page keeps the same id).
_HTML_ANCHOR = re.compile(r'^<a (?:id|name)="([\w.-]+)"></a>[ \t]*$', re.M)


def _title(nb: dict) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _staged_path(repo_path: str, edition: str) -> str | None:
    """Path inside the staged edition of a repository path (posix), or None if not staged."""
    for section in SECTIONS:
        for source in (SOURCE_DIRS[edition][section], section):
            prefix = source + "/"
            if repo_path.startswith(prefix) and "/" not in repo_path[len(prefix):]:
                return f"{section}/{repo_path[len(prefix):]}"
    return None


def _rewrite_links(text: str, repo_file: str, staged_file: str, edition: str) -> str:
    """Rewrite relative links of ``text`` (a cell of ``repo_file``) for its staged place."""

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_file), path))
        staged = _staged_path(resolved, edition)
        if staged is None:
            return match.group(0)
        new = posixpath.relpath(staged, posixpath.dirname(staged_file))
        return match.group(1) + new + ("#" + anchor if anchor else "") + match.group(3)

    return _LINK.sub(fix, text)


def _markdown_cell(text: str) -> dict:
    return {"cell_type": "markdown", "id": hashlib.sha1(text.encode()).hexdigest()[:8],
            "metadata": {}, "source": text}


def stage(edition: str, target: Path, *, solutions: bool = True) -> dict[str, list[str]]:
    """Stage one edition into ``target``; returns the staged pages per section (and fallbacks)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pages: dict[str, list[str]] = {"untranslated": []}
    sections = SECTIONS if solutions else SECTIONS[:2]
    for section in sections:
        (target / section).mkdir()
        pages[section] = []
        for english in sorted((ROOT / section).glob("*.ipynb")):
            if english.name in SKIP:
                continue
            source = ROOT / SOURCE_DIRS[edition][section] / english.name
            fallback = not source.is_file()
            if fallback:
                source = english
                pages["untranslated"].append(f"{section}/{english.name}")
            repo_file = source.relative_to(ROOT).as_posix()
            staged_file = f"{section}/{english.name}"
            nb = json.loads(source.read_text(encoding="utf-8"))
            nb.get("metadata", {}).pop("widgets", None)
            for cell in nb["cells"]:
                if cell["cell_type"] == "markdown":
                    text = "".join(cell["source"])
                    text = _HTML_ANCHOR.sub(r"(\1)=", text)
                    cell["source"] = _rewrite_links(text, repo_file, staged_file, edition)
            if fallback:
                href = f"../../en/{section}/{english.stem}.html"
                nb["cells"].insert(0, _markdown_cell(UNTRANSLATED.format(href=href)))
            if section == "notebooks":
                exercise = _exercise_for(english.name, edition)
                if exercise:
                    nb["cells"].append(_markdown_cell(EXERCISE_LINK[edition].format(
                        title=exercise, href=f"../exercises/{english.name}")))
            (target / staged_file).write_text(json.dumps(nb, ensure_ascii=False),
                                              encoding="utf-8")
            pages[section].append(english.stem)
    index = (BOOK / edition / "index.md").read_text(encoding="utf-8")
    if solutions:  # index.md ends with the paragraph on exercises; this sentence joins it
        joiner = " " if edition == "en" else ""
        index = index.rstrip("\n") + joiner + SOLUTIONS_NOTE[edition] + "\n"
    for section in sections:
        index += (f"\n```{{toctree}}\n:caption: {CAPTIONS[edition][section]}\n:maxdepth: 1\n\n"
                  + "".join(f"{section}/{page}\n" for page in pages[section]) + "```\n")
    (target / "index.md").write_text(index, encoding="utf-8")
    return pages


def _exercise_for(name: str, edition: str) -> str | None:
    for folder in (SOURCE_DIRS[edition]["exercises"], "exercises"):
        path = ROOT / folder / name
        if path.is_file():
            return _title(json.loads(path.read_text(encoding="utf-8"))) or name
    return None


def search_terms(target: Path) -> Path:
    """Write the glossary's Chinese terms as a jieba user dictionary (one word a line).

    Sphinx cuts Chinese text into words with jieba when it builds the search index, and the
    search page looks a query up as typed: with the course's terms in the dictionary,
    "差分隐私" is indexed as one word (and as 差分, 隐私), so searching for a term finds it.
    glossary.py is loaded from its file (it imports nothing of the course).
    """
    spec = importlib.util.spec_from_file_location("_course_glossary",
                                                  ROOT / "course_lib" / "glossary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    words = sorted({word for term in module.GLOSSARY
                    for word in re.findall(r"[\u4e00-\u9fff]{2,}", term.chinese)})
    target.write_text("".join(f"{word}\n" for word in words), encoding="utf-8")
    return target


def build_edition(edition: str, srcdir: Path, outdir: Path, doctrees: Path, *,
                  quiet: bool, search_dict: Path | None = None) -> subprocess.Popen:
    """Start ``sphinx-build`` for one edition (a process each: Sphinx registers its nodes
    globally, so two builds in one process clash). Warnings also go to ``<doctrees>.log``."""
    if outdir.exists():
        shutil.rmtree(outdir)
    env = dict(os.environ, COURSE_BOOK_EDITION=edition)
    if search_dict is not None:
        env["COURSE_BOOK_SEARCH_DICT"] = str(search_dict)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK), "-E",
               "-d", str(doctrees), "-w", str(doctrees.with_suffix(".log")),
               str(srcdir), str(outdir)]
    if quiet:
        command.insert(3, "-q")
    return subprocess.Popen(command, env=env, cwd=ROOT)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE):")


def warnings_of(log: Path) -> tuple[list[str], list[str]]:
    """(broken links, other problems) from a Sphinx warning log."""
    links, other = [], []
    text = log.read_text(encoding="utf-8") if log.is_file() else ""
    for line in _ANSI.sub("", text).splitlines():
        if _PROBLEM.search(line):
            (links if "[myst.xref_missing]" in line else other).append(line)
    return links, other


LANDING = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Privacy protection for large models · 大模型隐私保护</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem;
       line-height: 1.6; color: #222; }
a.edition { display: block; font-size: 1.25rem; margin: 1rem 0; }
</style>
</head>
<body>
<h1>Privacy protection for large models · <span lang="zh-CN">大模型隐私保护</span></h1>
<p>A hands-on course: data encryption, model encryption, federated learning, and the
protections and attacks around them.</p>
<p lang="zh-CN">动手实践的课程：数据加密、模型加密、联邦学习，以及围绕它们的防护与攻击。</p>
<a class="edition" href="en/index.html" hreflang="en">English edition</a>
<a class="edition" href="zh/index.html" hreflang="zh-CN" lang="zh-CN">中文版</a>
</body>
</html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book",
                        help="output folder (default: build/book)")
    parser.add_argument("--stage", type=Path, default=None,
                        help="staging folder (default: <out>-src)")
    parser.add_argument("--no-solutions", action="store_true",
                        help="leave the solutions (with their hidden tests) out of the site")
    parser.add_argument("--jobs", type=int, default=1,
                        help="editions built at the same time (default 1; 2 uses two cores)")
    parser.add_argument("--strict", action="store_true",
                        help="a link to a missing page or anchor fails the build too")
    parser.add_argument("--quiet", action="store_true", help="print warnings and the summary only")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    stage_root = (args.stage or out.with_name(out.name + "-src")).resolve()
    start = time.perf_counter()
    untranslated: list[str] = []
    for edition in EDITIONS:
        pages = stage(edition, stage_root / edition, solutions=not args.no_solutions)
        if edition == "zh":
            untranslated = pages["untranslated"]
    terms = search_terms(stage_root / "search-terms-zh.txt")
    jobs = max(1, min(args.jobs, len(EDITIONS)))
    failed, links, other = [], [], []
    for first in range(0, len(EDITIONS), jobs):
        batch = {edition: build_edition(edition, stage_root / edition, out / edition,
                                        stage_root / f".doctrees-{edition}", quiet=args.quiet,
                                        search_dict=terms if edition == "zh" else None)
                 for edition in EDITIONS[first:first + jobs]}
        for edition, process in batch.items():
            if process.wait() != 0:
                failed.append(edition)
            found = warnings_of(stage_root / f".doctrees-{edition}.log")
            links += found[0]
            other += found[1]
    if links:
        print(f"book: {len(links)} link(s) to a page or anchor that does not exist (above)"
              + ("" if args.strict else "; --strict makes them errors"), file=sys.stderr)
    if failed or other or (links and args.strict):
        print(f"book: failed ({', '.join(failed) or 'no'} edition(s) stopped; "
              f"{len(other)} warning(s) besides links; see above)", file=sys.stderr)
        return 1
    # MyST-NB's intermediate copies of the output images (beside the outdir): already in _images/.
    shutil.rmtree(out / "jupyter_execute", ignore_errors=True)
    (out / "index.html").write_text(LANDING, encoding="utf-8")
    seconds = time.perf_counter() - start
    print(f"book: built {out}/index.html (en/, zh/) in {seconds:.1f} s"
          + (f"; {len(untranslated)} page(s) not yet translated, shown in English: "
             + ", ".join(untranslated) if untranslated else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
