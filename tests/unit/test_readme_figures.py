"""Every figure in the README's performance table is in the results file its row links to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_ROWS = 12
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")
LINK = re.compile(r"\]\((bench/results/[^)]+)\)")


def performance_rows(readme: str) -> list[list[str]]:
    """The cells of the table under '## Performance', header and rule left out."""
    section = readme.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def appears(number: str, text: str) -> bool:
    """Whether `number` is in `text` as a number of its own (not part of a longer one)."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d]|\.\d)", text) is not None


def test_the_headline_table_is_short_and_every_figure_is_in_its_results_file() -> None:
    rows = performance_rows((ROOT / "README.md").read_text())
    assert 0 < len(rows) <= MAX_ROWS, (
        f"{len(rows)} rows; the README's table keeps at most {MAX_ROWS}"
    )
    for what, figure, _goal, results in rows:
        sources = LINK.findall(results)
        assert sources, f"row {what!r} links no file in bench/results/"
        text = "\n".join((ROOT / source).read_text() for source in sources)
        missing = [n for n in NUMBER.findall(figure) if not appears(n, text)]
        assert not missing, f"row {what!r}: {missing} not in {', '.join(sources)}"


def test_a_figure_missing_from_its_results_file_is_caught() -> None:
    assert appears("1.35", "end-to-end/SavedModel loop ratio: 1.35 (target >= 1.5)")
    assert not appears("1.3", "ratio: 1.35")
    assert not appears("5", "latency 25 ms, 5.5 %")
    assert appears("3.3e-06", "gradcam 3.3e-06, gradcampp 1.2e-06")
