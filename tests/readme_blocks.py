"""The README's shell commands, for tests that run exactly what it tells users to type."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(section: str) -> list[list[str]]:
    """The commands of each ```bash block of a README section, one per line, comments removed."""
    text = README.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [
        [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
        for block in blocks
    ]
