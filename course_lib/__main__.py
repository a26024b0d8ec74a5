"""``python -m course_lib ...``: the headless entry points of :mod:`course_lib.cli`."""

from __future__ import annotations

import sys

from course_lib.cli import main

if __name__ == "__main__":
    sys.exit(main())
