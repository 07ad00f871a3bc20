"""Print the third-party requirements of this repository's packages, one per line.

    python3 scripts/requirements_of.py triton 'tensorflow-cpu==2.21.0'   # client + server[triton]
    python3 scripts/requirements_of.py dashboard                         # client + dashboard
    python3 scripts/requirements_of.py all 'tensorflow-cpu==2.21.0'      # both (the wheelhouse)

Used by scripts/wheelhouse.sh and docker/Dockerfile, which installs these in a layer of their
own before the packages themselves, so a change of the sources rebuilds in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
OWN = {"gradcam-client", "gradcam-server", "gradcam-dashboard"}
IMAGES = {
    "triton": [("client", []), ("server", ["triton"])],
    "dashboard": [("client", []), ("dashboard", [])],
}
IMAGES["all"] = IMAGES["triton"] + IMAGES["dashboard"]


def requirements(image: str, extra: list[str]) -> list[str]:
    """The requirements of `image`'s packages that are not the packages themselves."""
    found = set(extra)
    for package, extras in IMAGES[image]:
        project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
        deps = list(project["dependencies"])
        for name in extras:
            deps += project["optional-dependencies"][name]
        for dep in deps:
            name = dep.split("[")[0].split(";")[0]
            for sign in "<>=!~ ":
                name = name.split(sign)[0]
            if name not in OWN:
                found.add(dep)
    return sorted(found)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in IMAGES:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(IMAGES)} [EXTRA REQUIREMENT ...]")
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
