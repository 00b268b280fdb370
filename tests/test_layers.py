"""Imports run downhill: no module of the product imports one on a floor above it.

Floors, bottom to top (docs/architecture.md draws them): the ground floor of small shared helpers;
the concerns in pipeline order (a concern may use the public names of one below it, such as its
asset keys); the code location, which gathers them; the application on top (the `pod` command, the
in-process runner, the UI process, run recovery). Nothing the code location is made of imports the
development tooling (`pod_devtools`) or the tests; the `pod` command reaches the tooling for its
`synth` and `bench` subcommands only.
"""

import ast
from pathlib import Path

from pod_pipeline.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "pod_pipeline"
FLOORS = [
    ("ground", ["pod_pipeline", "pod_pipeline.settings", "pod_pipeline.sql", "pod_pipeline.identifiers",
                "pod_pipeline.markdown", "pod_pipeline.seeds", "pod_pipeline.csvsafe", "pod_pipeline.worklock",
                "pod_pipeline.resources", "pod_pipeline.preload", "pod_pipeline.collector"]),
    ("ingest", ["pod_pipeline.ingest"]),
    ("transform", ["pod_pipeline.transform"]),
    ("quality", ["pod_pipeline.quality"]),
    ("analysis", ["pod_pipeline.analysis"]),
    ("delivery", ["pod_pipeline.delivery"]),
    ("code location", ["pod_pipeline.automation", "pod_pipeline.definitions"]),
    ("application", ["pod_pipeline.app"]),
]


def floor(module: str) -> int:
    """The floor of a module: that of the longest prefix listed."""
    best = max(((len(prefix), number) for number, (_, prefixes) in enumerate(FLOORS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is on no floor: add it to FLOORS and docs/architecture.md"
    return best[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules a file imports (a `from package import name` of a submodule counts as the submodule)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                submodule = PROJECT_ROOT.joinpath(*candidate.split("."))
                found.add(candidate if submodule.with_suffix(".py").exists() or submodule.is_dir() else base)
    return found


def test_every_import_runs_downhill() -> None:
    uphill = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for imported in sorted(imports(path)):
            if imported.split(".")[0] == "tests" or (
                    imported.split(".")[0] == "pod_devtools" and FLOORS[floor(importer)][0] != "application"):
                uphill.append(f"{importer} imports tooling: {imported}")
            elif imported.startswith("pod_pipeline") and floor(imported) > floor(importer):
                uphill.append(f"{importer} ({FLOORS[floor(importer)][0]}) imports {imported} "
                              f"({FLOORS[floor(imported)][0]})")
    assert uphill == []


def test_the_check_sees_imports_and_floors() -> None:
    assert floor("pod_pipeline.ingest.load") < floor("pod_pipeline.app.runner")
    assert "pod_pipeline.app.runner" in imports(PACKAGE / "app" / "cli.py")
    assert "pod_pipeline.settings" in imports(PACKAGE / "resources.py")
