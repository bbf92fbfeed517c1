"""Imports flow one way: consensus <- node <- cli. The core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "consensus": {
        "node",
        "cli",
        "asyncio",
        "aiohttp",
        "lmdb",
        "uvloop",
        "socket",
        "threading",
        "time",
        "os",
        "datetime",
        "subprocess",
        "select",
        "selectors",
    },
    "node": {"cli"},
    "cli": set(),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_flow_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no python files under {package}/"
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert violations == []


def global_random_uses(path: Path) -> list[str]:
    """Uses of the module-level random generator; only the `random.Random` class (a seeded
    generator passed in) is allowed in the core."""
    tree = ast.parse(path.read_text(), filename=str(path))
    uses: list[str] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            uses.append(f"{path.name}:{node.lineno} random.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            uses += [
                f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name != "Random"
            ]
    return uses


def test_core_uses_no_global_random() -> None:
    uses = [
        u for path in sorted((ROOT / "consensus").rglob("*.py")) for u in global_random_uses(path)
    ]
    assert uses == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom node.api import x\n")
    names = [name for _, name in imported_modules(bad)]
    assert names == ["time", "node.api"]
    rng = tmp_path / "rng.py"
    rng.write_text("import random\nrandom.Random(1)\nrandom.shuffle([])\n")
    assert global_random_uses(rng) == ["rng.py:3 random.shuffle"]
