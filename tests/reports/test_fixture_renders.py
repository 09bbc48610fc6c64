"""Results files committed before the redesign render the same text after it.

The goldens in `tests/fixtures/results/rendered/` were written by the code of b972745's successor before
the harness moved into its rooms; a report that changes them changed what users read. The HTML is
compared by its visible text (the chart SVGs carry generated ids and matplotlib's metadata)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import bench

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
RENDERED = FIXTURES / "rendered"
NAMES = ("smoke-b972745", "classifiers-b972745", "genai-b972745")


class _Text(HTMLParser):
    """The page's text nodes, outside `<style>`, `<script>` and SVG `<metadata>`."""

    SKIPPED = frozenset({"style", "script", "metadata"})

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "\n".join(parser.parts) + "\n"


def render(name: str, out: Path) -> tuple[str, str, str]:
    """The terminal, Markdown and HTML-text renderings of one committed results file."""
    proc = bench(
        "report", str(FIXTURES / f"{name}.json"), "--markdown", str(out / "r.md"), "--html", str(out / "r.html"),
        env={"COLUMNS": "160", "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line.rstrip() for line in proc.stdout.splitlines() if not line.startswith(("html: ", "markdown: "))]
    terminal = "\n".join(lines) + "\n"
    return terminal, (out / "r.md").read_text(), visible_text((out / "r.html").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_a_results_file_from_before_the_redesign_renders_the_same_text(name: str, tmp_path: Path) -> None:
    terminal, markdown, html = render(name, tmp_path)
    assert terminal == (RENDERED / f"{name}.terminal.txt").read_text()
    assert markdown == (RENDERED / f"{name}.md").read_text()
    assert html == (RENDERED / f"{name}.html.txt").read_text()
