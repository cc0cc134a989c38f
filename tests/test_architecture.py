"""The package reads as its flow, and stays that way: the import graph of imgclone/ (function-level imports too).

- no cycle between modules;
- imports only go down the layers below (a package imports its own modules and those of lower layers, never a
  package beside or above it);
- argparse only in cli/, guestfs only in guest/appliance.py, subprocess only in host/run.py;
- no module over 450 lines.

docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imgclone"
MAX_LINES = 450
# top to bottom; packages on one line are peers (neither imports the other); "" is the base modules
LAYERS = (
    ("cli",),
    ("copy",),
    ("phases",),
    ("alt",),
    ("capture", "check"),
    ("storage", "plan", "probe", "archive"),
    ("guest",),
    ("host",),
    ("fs",),
    ("model",),
    ("",),  # errors.py, log.py, faults.py, units.py, __init__.py
)
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
ONLY_IN = {"argparse": "cli/", "guestfs": "guest/appliance.py", "subprocess": "host/run.py"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(imgclone modules this file imports, other top-level modules it imports), anywhere in the file."""
    tree = ast.parse(path.read_text())
    own, other = set(), set()
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for name in names:
            if name.split(".")[0] == "imgclone":
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                own.add(name)
            else:
                other.add(name.split(".")[0])
    own.discard(me)
    return own, other


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else ""


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known)[0] for name, path in known.items()}


def test_no_import_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m) :] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_imports_only_go_down() -> None:
    wrong = []
    for mod, targets in sorted(graph().items()):
        if mod == "imgclone.__main__":
            continue  # the entry point: `python -m imgclone` runs cli/main.py
        a = package_of(mod)
        for t in sorted(targets):
            b = package_of(t)
            if a != b and RANK[b] <= RANK[a]:
                wrong.append(f"{mod} → {t} ({a or 'base'} may not import {b or 'base'})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


@pytest.mark.parametrize(("module", "where"), sorted(ONLY_IN.items()))
def test_module_used_only_where_it_belongs(module: str, where: str) -> None:
    known = modules()
    users = [p.relative_to(PACKAGE).as_posix() for p in known.values() if module in imports(p, known)[1]]
    assert users and all(u.startswith(where) for u in users), f"{module} outside {where}: {users}"


def test_no_module_over_the_limit() -> None:
    big = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_package_has_a_layer() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(RANK), f"packages with no layer in LAYERS: {sorted(packages - set(RANK))}"
