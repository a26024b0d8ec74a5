"""Execute course notebooks in place so that they are committed with their outputs.

Usage: python scripts/execute_notebooks.py notebooks/04_1_data_encryption_code.ipynb [...]

Each notebook runs in a fresh kernel of the current environment with the notebook's own folder
as working directory (as in JupyterLab and under nbval). Timing metadata is not recorded, so a
re-run changes only outputs that really changed. The wall time of each run is printed: every
notebook must stay under 60 s under nbval.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        elapsed = execute(path, args.timeout)
        flag = "" if elapsed < 60 else "   <-- over the 60 s budget"
        print(f"{path}: executed in {elapsed:.1f} s{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
