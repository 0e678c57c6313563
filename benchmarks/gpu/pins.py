"""Print the requirement lines fetch-wheels.sh downloads: each package of wheels.txt at the version
the environment running this script has, so the device runs what the CPU tests ran; a package not
installed here is left unpinned (its newest wheel). Run with the project's environment:
    .venv/bin/python benchmarks/gpu/pins.py
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

WHEELS = Path(__file__).with_name("wheels.txt")


def names(path: Path = WHEELS) -> list[str]:
    """The packages wheels.txt lists, one per line ('#' starts a comment)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def requirements(path: Path = WHEELS) -> list[str]:
    """``name==version`` for each package installed here, else ``name``."""
    found = []
    for name in names(path):
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            found.append(name)
    return found


if __name__ == "__main__":
    print("\n".join(requirements()))
