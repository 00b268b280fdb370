"""Fail when an installed package drifts from the exact pins in pyproject.toml.

An unpinned install of the Dagster family silently resolves to a 2021 dagster-dbt and dbt-core 1.5;
CI runs this before the tests so a drifted environment fails loudly instead.
"""

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
FAMILY = ("dagster", "dagster-webserver", "dagster-dbt", "dagster-postgres", "dbt-core", "dbt-duckdb",
          "duckdb", "great-expectations")


def pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + [
        r for extra in project.get("optional-dependencies", {}).values() for r in extra
    ]
    found = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", requirement)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def drift(expected: dict[str, str]) -> list[str]:
    problems = [f"{name} is not pinned with == in pyproject.toml" for name in FAMILY if name not in expected]
    for name, version in sorted(expected.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is pinned but not installed")
            continue
        if installed != version:
            problems.append(f"{name}: installed {installed}, pinned {version}")
    return problems


def main() -> int:
    problems = drift(pins())
    for problem in problems:
        print(f"check_pins: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_pins: {len(pins())} pinned packages match (Dagster family: {', '.join(FAMILY)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
