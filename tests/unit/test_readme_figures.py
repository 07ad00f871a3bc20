"""Every figure in the README's performance table is in the results file its row links to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_ROWS = 12
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")
LINK = re.compile(r"\]\((bench/results/[^)]+)\)")
DATE = re.compile(r"20\d\d-\d\d-\d\d")


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


def dated_with_load(results: Path) -> bool:
    """Whether a results file, or the JSON written beside it, gives its date and the load."""
    texts = [path.read_text() for path in (results, results.with_suffix(".json")) if path.exists()]
    return any(DATE.search(text) and "load" in text for text in texts)


def test_every_results_file_the_table_links_gives_its_date_and_the_machines_load() -> None:
    rows = performance_rows((ROOT / "README.md").read_text())
    sources = sorted({source for row in rows for source in LINK.findall(row[-1])})
    undated = [source for source in sources if not dated_with_load(ROOT / source)]
    assert not undated, f"no date or load average in {undated} (nor in the JSON beside them)"


def test_a_figure_missing_from_its_results_file_is_caught() -> None:
    assert appears("1.35", "end-to-end/SavedModel loop ratio: 1.35 (target >= 1.5)")
    assert not appears("1.3", "ratio: 1.35")
    assert not appears("5", "latency 25 ms, 5.5 %")
    assert appears("3.3e-06", "gradcam 3.3e-06, gradcampp 1.2e-06")


def test_a_results_file_without_date_or_load_is_caught(tmp_path: Path) -> None:
    results = tmp_path / "bench.md"
    results.write_text("| ratio | 0.97 |\n")
    assert not dated_with_load(results)
    results.with_suffix(".json").write_text('{"load_average": [1.0], "time": "2026-11-29 16:29"}')
    assert dated_with_load(results)
