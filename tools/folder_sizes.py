"""Print every package folder's direct Python modules and lines, and fail when one holds more than 12
modules or 1,500 lines: a folder that big has stopped saying what it holds (issue 27)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "reports", "harness", "converters", "profiles")
MAX_MODULES = 12
MAX_LINES = 1500


def folder_sizes() -> list[tuple[str, int, int]]:
    """(folder, modules, lines) for every folder of the packages, `__init__.py` counted as a module."""
    rows = []
    for package in PACKAGES:
        for folder in sorted({p.parent for p in (ROOT / package).rglob("*.py")}):
            modules = sorted(folder.glob("*.py"))
            lines = sum(len(p.read_text().splitlines()) for p in modules)
            rows.append((str(folder.relative_to(ROOT)), len(modules), lines))
    return rows


def main() -> int:
    over = 0
    print(f"{'folder':<24} {'modules':>7} {'lines':>6}")
    for folder, modules, lines in folder_sizes():
        flag = modules > MAX_MODULES or lines > MAX_LINES
        over += flag
        print(f"{folder:<24} {modules:>7} {lines:>6}{'  over the limit' if flag else ''}")
    print(f"limits: {MAX_MODULES} modules, {MAX_LINES} lines per folder; {over} over")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
