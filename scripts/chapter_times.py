"""Chapter times: the rule stated in TEACHING.md, applied to the committed notebooks.

The rule (TEACHING.md, "Chapter times"), for a class that reads and runs a chapter together:

- **reading**: 200 English words a minute for technical prose, 300 汉字 a minute for Chinese,
  counted in the markdown cells (fenced code blocks, HTML tags and link targets left out);
- **code**: one minute per code cell, to read it, run it and look at what it prints or draws;
- **run**: the notebook's measured wall time, rounded up to whole minutes (``--run`` measures it
  and records it in ``scripts/chapter_times.json``; until then the course's budget, 1 minute);
- **exercise**: the minutes the exercise announces in its first cell (``solutions/<chapter>``);
- **total**: the four added. A chapter whose total is over 90 minutes must be split.

The chapters are the notebooks that the README's course map links, in its order
(``README.md`` for the English edition, ``README.zh-CN.md`` and ``notebooks/zh/`` with
``--lang zh``); a linked notebook or exercise that does not exist yet gets "(to be measured)"
("（待测）").
The Chinese edition shares the English one's code, run times and exercise times.

Usage::

    python scripts/chapter_times.py                     # the table (markdown) on stdout
    python scripts/chapter_times.py --lang zh           # the Chinese edition's table
    python scripts/chapter_times.py --update TEACHING.md
    python scripts/chapter_times.py --lang zh --update TEACHING.zh-CN.md
    python scripts/chapter_times.py --run               # execute every chapter (a copy), record
    python scripts/chapter_times.py --run notebooks/06_faq.ipynb   # ... or only these

``--update FILE`` replaces what lies between the lines ``<!-- chapter-times:begin -->`` and
``<!-- chapter-times:end -->`` of FILE with the table, and leaves the rest of the file alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 200        # English technical prose
HANZI_PER_MINUTE = 300        # Chinese technical prose
MINUTES_PER_CODE_CELL = 1.0   # read the cell, run it, look at its output
RUN_BUDGET_SECONDS = 60       # every notebook must run in under a minute
SPLIT_ABOVE_MINUTES = 90      # a longer chapter must be split
RUN_TIMES = "scripts/chapter_times.json"
BEGIN, END = "<!-- chapter-times:begin -->", "<!-- chapter-times:end -->"
PENDING = {"en": "(to be measured)", "zh": "（待测）"}

_README = {"en": "README.md", "zh": "README.zh-CN.md"}
_LINK = {"en": re.compile(r"\]\((notebooks/(\d[^/)]*)\.ipynb)\)"),
         "zh": re.compile(r"\]\((notebooks/zh/(\d[^/)]*)\.ipynb)\)")}
_HEADERS = {
    "en": ("chapter", "notebook", "words", "汉字", "code cells", "reading min", "code min",
           "run min", "exercise min", "total min"),
    "zh": ("章节", "笔记本", "英文词数", "汉字数", "代码单元格", "阅读（分钟）", "代码（分钟）",
           "运行（分钟）", "练习（分钟）", "合计（分钟）"),
}
_SPLIT = {"en": "over {limit}: split", "zh": "超过 {limit}，需拆分"}
_SUM = {"en": ("all chapters", "chapters measured so far"), "zh": ("全部章节", "已测章节")}
_HOURS = {"en": "{minutes} (≈ {hours:.1f} h)", "zh": "{minutes}（约 {hours:.1f} 小时）"}

# What a reader does not read as prose: fenced code, HTML tags and comments, link targets, URLs.
_NOT_PROSE = re.compile(r"```.*?```|~~~.*?~~~|<!--.*?-->|<[^>\n]+>|\]\([^)]*\)|https?://\S+",
                        re.S)
_HANZI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’.\-][A-Za-z0-9]+)*")
_EXERCISE_MINUTES = re.compile(r"About\s+(\d+)\s+minutes")


def count_text(markdown: str) -> tuple[int, int]:
    """(English words, 汉字) a reader reads in ``markdown``.

    >>> count_text("Encrypt **16 bytes** with AES-256-GCM（认证加密）. ```x = 1```")
    (5, 4)
    """
    prose = _NOT_PROSE.sub(" ", markdown)
    return len(_WORD.findall(_HANZI.sub(" ", prose))), len(_HANZI.findall(prose))


@dataclass
class Notebook:
    words: int
    hanzi: int
    code_cells: int


def measure_notebook(path: Path) -> Notebook:
    """Words and 汉字 in the markdown cells, and the number of code cells, of one notebook."""
    nb = nbformat.read(path, as_version=4)
    words = hanzi = code = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            w, h = count_text(cell.source)
            words, hanzi = words + w, hanzi + h
        elif cell.cell_type == "code":
            code += 1
    return Notebook(words, hanzi, code)


def exercise_minutes(solution: Path) -> int | None:
    """The minutes an exercise announces in its first cell ("About 20 minutes"), or None."""
    if not solution.exists():
        return None
    nb = nbformat.read(solution, as_version=4)
    found = _EXERCISE_MINUTES.search(nb.cells[0].source) if nb.cells else None
    return int(found.group(1)) if found else None


def chapters(root: Path, lang: str) -> list[tuple[str, str]]:
    """(chapter number, notebook stem) for each chapter the README's course map links, in order."""
    readme = root / _README[lang]
    if not readme.exists():
        raise SystemExit(f"{readme}: missing (the course map lists the chapters)")
    found, seen = [], set()
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        for match in _LINK[lang].finditer(line):
            stem = match.group(2)
            if stem in seen:
                continue
            seen.add(stem)
            label = line.strip("|").split("|")[0].strip()
            number = label.split()[0] if label else stem
            found.append((number, stem))
    return found


def load_run_times(root: Path) -> dict[str, float]:
    path = root / RUN_TIMES
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: float(entry["seconds"]) for name, entry in data.get("notebooks", {}).items()}


@dataclass
class Row:
    number: str
    stem: str
    link: str
    notebook: Notebook | None
    run_seconds: float | None        # None: not measured, the budget is used
    exercise: int | None

    @property
    def reading(self) -> int:
        nb = self.notebook
        return max(1, round(nb.words / WORDS_PER_MINUTE + nb.hanzi / HANZI_PER_MINUTE))

    @property
    def code(self) -> int:
        return math.ceil(self.notebook.code_cells * MINUTES_PER_CODE_CELL)

    @property
    def run(self) -> int:
        seconds = RUN_BUDGET_SECONDS if self.run_seconds is None else self.run_seconds
        return max(1, math.ceil(seconds / 60))

    @property
    def total(self) -> int | None:
        if self.notebook is None or self.exercise is None:
            return None
        return self.reading + self.code + self.run + self.exercise


def rows(root: Path = ROOT, lang: str = "en") -> list[Row]:
    """One row per chapter of the course map, measured from the committed files."""
    if lang not in _README:
        raise ValueError(f"`lang` must be one of {tuple(_README)}, got {lang!r}")
    times = load_run_times(root)
    out = []
    for number, stem in chapters(root, lang):
        rel = f"notebooks/{stem}.ipynb" if lang == "en" else f"notebooks/zh/{stem}.ipynb"
        path = root / rel
        notebook = measure_notebook(path) if path.exists() else None
        out.append(Row(number, stem, rel, notebook, times.get(f"notebooks/{stem}.ipynb"),
                       exercise_minutes(root / "solutions" / f"{stem}.ipynb")))
    return out


def table(root: Path = ROOT, lang: str = "en") -> str:
    """The chapter-time table, in Markdown."""
    header = _HEADERS[lang]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    measured, complete = [], True
    for row in rows(root, lang):
        cells = [row.number, f"[{row.stem}]({row.link})"]
        if row.notebook is None:
            complete = False
            cells += [PENDING[lang]] + [""] * 7
        else:
            nb = row.notebook
            run = f"{row.run}" if row.run_seconds is not None else f"≤ {row.run}"
            exercise = PENDING[lang] if row.exercise is None else f"{row.exercise}"
            total = PENDING[lang] if row.total is None else f"{row.total}"
            complete = complete and row.total is not None
            if row.total is not None:
                measured.append(row.total)
                if row.total > SPLIT_ABOVE_MINUTES:
                    total = f"**{row.total}** ({_SPLIT[lang].format(limit=SPLIT_ABOVE_MINUTES)})"
            cells += [f"{nb.words:,}", f"{nb.hanzi:,}", f"{nb.code_cells}", f"{row.reading}",
                      f"{row.code}", run, exercise, total]
        lines.append("| " + " | ".join(cells) + " |")
    if measured:
        label = _SUM[lang][0 if complete else 1]
        total = _HOURS[lang].format(minutes=sum(measured), hours=sum(measured) / 60)
        lines.append(f"| {label} | | | | | | | | | {total} |")
    return "\n".join(lines)


def update(path: Path, text: str) -> bool:
    """Replace the table between the markers of ``path``; True if the file changed."""
    old = path.read_text(encoding="utf-8")
    if old.count(BEGIN) != 1 or old.count(END) != 1 or old.index(BEGIN) > old.index(END):
        raise SystemExit(f"{path}: needs one line {BEGIN} and, after it, one line {END}")
    head, rest = old.split(BEGIN)
    _, tail = rest.split(END)
    new = f"{head}{BEGIN}\n{text}\n{END}{tail}"
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old


def run_notebooks(root: Path, notebooks: list[Path], timeout: int = 600) -> None:
    """Execute each notebook (in memory, never saved) and record its wall time."""
    import tempfile

    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    path = root / RUN_TIMES
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.setdefault("about", "wall time of one top-to-bottom run of each notebook, in seconds "
                    "(scripts/chapter_times.py --run); the machine's load changes it")
    entries = data.setdefault("notebooks", {})
    for nb_path in notebooks:
        nb_path = nb_path.resolve()
        nb = nbformat.read(nb_path, as_version=4)
        with tempfile.TemporaryDirectory(prefix="chapter-times-") as sockets:
            # IPC: the kernel's sockets are files only this user can open, not TCP ports
            km = KernelManager(kernel_name="python3", transport="ipc",
                               connection_file=str(Path(sockets) / "kernel.json"))
            client = NotebookClient(nb, km=km, timeout=timeout, record_timing=False,
                                    resources={"metadata": {"path": str(nb_path.parent)}})
            start = time.perf_counter()
            try:
                client.execute()
                seconds = time.perf_counter() - start
            finally:
                if km.has_kernel:  # the client does not stop a kernel it was given
                    km.shutdown_kernel(now=True)
        key = nb_path.relative_to(root).as_posix()
        entries[key] = {"seconds": round(seconds, 1), "measured": datetime.date.today().isoformat()}
        print(f"{key}: {seconds:.1f} s", flush=True)
        data["notebooks"] = dict(sorted(entries.items()))
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=sorted(_README), default="en")
    parser.add_argument("--update", type=Path, metavar="FILE",
                        help="write the table between the chapter-times markers of FILE")
    parser.add_argument("--run", nargs="*", type=Path, metavar="NOTEBOOK",
                        help="execute these notebooks (default: every chapter) and record times")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.run is not None:
        todo = args.run or [root / r.link for r in rows(root, "en") if r.notebook is not None]
        run_notebooks(root, todo)
    text = table(root, args.lang)
    if args.update is not None:
        changed = update(args.update, text)
        print(f"{args.update}: {'updated' if changed else 'already current'}")
    elif args.run is None:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
