"""Keep the Chinese edition in step with the English one, cell for cell.

Usage::

    python scripts/sync_editions.py                 # rebuild every zh notebook from its English one
    python scripts/sync_editions.py --check         # exit 1, naming each cell, if out of step
    python scripts/sync_editions.py --status        # translated / stale / missing, per notebook
    python scripts/sync_editions.py --apply T.json  # set translations: {"nb": {"cell id": "文本"}}
    python scripts/sync_editions.py --stamp notebooks/zh/X.ipynb --cell ID [--cell ID ...]

Pairs: ``notebooks/X.ipynb`` and ``notebooks/zh/X.ipynb``, ``solutions/X.ipynb`` and
``solutions/zh/X.ipynb`` (``exercises/zh/`` is generated from ``solutions/zh/`` by
``scripts/make_exercises.py``, like ``exercises/`` from ``solutions/``).

The rules (DESIGN.md, "Two editions, one source"):

- **code and raw cells** of a Chinese notebook are the English cells, copied with their
  outputs, metadata and ids; nobody edits them by hand (a rebuild overwrites them);
- **markdown cells** hold the translation; each records in its metadata
  (``metadata.edition.en_sha256``) the SHA-256 of the English cell's source it translates.
  When the English cell changes, its hash no longer matches and ``--check`` fails until the
  translation is updated and stamped again (``--apply`` or ``--stamp``);
- a markdown cell with no translation yet holds the English text with ``en_sha256: null``
  (``--check`` reports it as missing).

Cells are matched by their nbformat cell id, so the Chinese notebook has exactly the English
notebook's cells, in its order. The notebook's own metadata is the English one's, plus
``metadata.edition = {"lang": "zh-CN", "source": <the English file>}``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("notebooks", "solutions")
LANG = "zh"


def en_hash(source: str) -> str:
    """SHA-256 (hex) of an English cell's source, the way the edition records it."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def pairs(root: Path = ROOT) -> list[tuple[Path, Path]]:
    """(English notebook, Chinese notebook) for every English notebook of the course."""
    found = []
    for folder in FOLDERS:
        for english in sorted((root / folder).glob("*.ipynb")):
            found.append((english, root / folder / LANG / english.name))
    return found


def _read(path: Path) -> nbformat.NotebookNode | None:
    return nbformat.read(path, as_version=4) if path.exists() else None


def rebuild(english: nbformat.NotebookNode, chinese: nbformat.NotebookNode | None,
            source: str) -> nbformat.NotebookNode:
    """The Chinese notebook for ``english`` (file name ``source``), keeping ``chinese``'s
    translations."""
    kept = {}
    if chinese is not None:
        kept = {c.get("id"): c for c in chinese.cells if c.cell_type == "markdown"}
    out = copy.deepcopy(english)
    for i, cell in enumerate(out.cells):
        if cell.cell_type != "markdown":
            continue  # code and raw cells: the English ones, outputs and all
        old = kept.get(cell.get("id"))
        edition = dict(old.metadata.get("edition", {})) if old is not None else {}
        if old is not None and edition.get("en_sha256"):
            cell.source = old.source
        else:
            edition = {"en_sha256": None}  # untranslated: the English text stands in
        cell.metadata["edition"] = edition
        out.cells[i] = cell
    out.metadata["edition"] = {"lang": "zh-CN", "source": f"../{source}"}
    return out


def problems(english: nbformat.NotebookNode, chinese: nbformat.NotebookNode | None,
             label: str) -> list[str]:
    """Every way ``chinese`` is out of step with ``english``, one line each."""
    if chinese is None:
        return [f"{label}: missing (run scripts/sync_editions.py, then translate)"]
    found = []
    en_ids = [c.get("id") for c in english.cells]
    zh_ids = [c.get("id") for c in chinese.cells]
    if en_ids != zh_ids:
        found.append(f"{label}: cells differ from the English notebook's (run "
                     f"scripts/sync_editions.py)")
        return found
    for en, zh in zip(english.cells, chinese.cells):
        where = f"{label} cell {en.get('id')}"
        if en.cell_type != zh.cell_type:
            found.append(f"{where}: cell type differs")
        elif en.cell_type != "markdown":
            if _strip(en) != _strip(zh):
                found.append(f"{where}: code/raw cell differs from the English (never edit it "
                             f"by hand; run scripts/sync_editions.py)")
        else:
            recorded = zh.metadata.get("edition", {}).get("en_sha256")
            if not recorded:
                found.append(f"{where}: not translated yet")
            elif recorded != en_hash(en.source):
                found.append(f"{where}: the English changed since it was translated")
            meta_en = {k: v for k, v in en.metadata.items() if k != "edition"}
            meta_zh = {k: v for k, v in zh.metadata.items() if k != "edition"}
            if meta_en != meta_zh:
                found.append(f"{where}: metadata differs from the English cell's")
    return found


def _strip(cell: nbformat.NotebookNode) -> str:
    return json.dumps(cell, sort_keys=True)


def stamp(chinese: nbformat.NotebookNode, english: nbformat.NotebookNode,
          texts: dict[str, str | None]) -> list[str]:
    """Record that the given cells translate the current English; set their text if given."""
    by_id = {c.get("id"): c for c in english.cells}
    done = []
    for cell in chinese.cells:
        cid = cell.get("id")
        if cid not in texts:
            continue
        if cell.cell_type != "markdown" or cid not in by_id:
            raise SystemExit(f"cell {cid} is not a markdown cell of the English notebook")
        if texts[cid] is not None:
            cell.source = texts[cid]
        cell.metadata.setdefault("edition", {})["en_sha256"] = en_hash(by_id[cid].source)
        done.append(cid)
    missing = set(texts) - set(done)
    if missing:
        raise SystemExit(f"no such cells: {sorted(missing)}")
    return done


def _load_pair(english_path: Path, chinese_path: Path) -> tuple:
    return nbformat.read(english_path, as_version=4), _read(chinese_path)


def _write(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="report, change nothing")
    group.add_argument("--status", action="store_true", help="counts per notebook")
    group.add_argument("--apply", type=Path, metavar="JSON",
                       help='translations {"notebooks/zh/X.ipynb": {"cell id": "text"}}')
    group.add_argument("--stamp", type=Path, metavar="ZH_NOTEBOOK",
                       help="mark --cell IDs as translating the current English")
    parser.add_argument("--cell", action="append", default=[], help="a cell id (with --stamp)")
    args = parser.parse_args(argv)

    if args.apply or args.stamp:
        if args.apply:
            requests = json.loads(args.apply.read_text(encoding="utf-8"))
        else:
            requests = {str(args.stamp): {cid: None for cid in args.cell}}
        for target, texts in requests.items():
            chinese_path = (ROOT / target).resolve() if not Path(target).is_absolute() \
                else Path(target)
            english_path = chinese_path.parent.parent / chinese_path.name
            english, chinese = _load_pair(english_path, chinese_path)
            chinese = rebuild(english, chinese, english_path.name)
            done = stamp(chinese, english, texts)
            _write(chinese, chinese_path)
            print(f"{chinese_path.relative_to(ROOT)}: stamped {len(done)} cell(s)")
        return 0

    all_problems = []
    for english_path, chinese_path in pairs():
        english, chinese = _load_pair(english_path, chinese_path)
        label = str(chinese_path.relative_to(ROOT))
        if args.check or args.status:
            found = problems(english, chinese, label)
            if args.status:
                md = sum(c.cell_type == "markdown" for c in english.cells)
                stale = sum("English changed" in p for p in found)
                missing = sum("not translated" in p for p in found)
                state = "missing" if chinese is None else \
                    f"{md - stale - missing}/{md} translated, {stale} stale, {missing} to do"
                print(f"{label}: {state}")
            all_problems += found
        else:
            _write(rebuild(english, chinese, english_path.name), chinese_path)
    if args.check:
        for line in all_problems:
            print(line)
        if all_problems:
            print(f"{len(all_problems)} problem(s): the Chinese edition is out of step with the "
                  f"English")
            return 1
        print(f"the Chinese edition is in step ({len(pairs())} notebooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
