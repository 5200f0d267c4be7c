"""The package's shape, checked from its source: layers run one way, no import cycles, no reaching into
another package's private names, and importing `bot` never imports the Hub emulator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOT = REPO / "bot"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import in the file, lazy ones inside functions too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((module, [alias.name for alias in node.names]))
    return found


def _graph(root: Path = BOT) -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(path):
            # "from bot.cli import bench" imports the module bot.cli.bench.
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


@pytest.mark.parametrize("package", ["bot", "hub_emulator"])
def test_no_import_cycles(package: str):
    assert _cycles(_graph(REPO / package)) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(("lower", "higher"), [
    ("bot.detect", "bot.zoo"),          # the detector does not depend on the models it is benchmarked on
    ("bot.detect", "bot.hub"),
    ("bot.detect", "bot.state"),
    ("bot.encoders", "bot.hub"),
    ("bot.scan_record", "bot.detect"),  # the record is read by the store and the site without the detector
    ("bot.state", "bot.detect"),
    ("bot.site", "bot.detect"),
    ("bot.publish", "bot.detect"),
    ("bot.hub", "bot.publish"),
    ("bot.hub", "bot.mentions"),
    # a base's calibration is made by `clip-audit calibrate`; what scans read of it lives in bot.anchors
    ("bot.anchors", "bot.calibration"),
    ("bot.scanning", "bot.calibration"),
    ("bot.zoo", "bot.calibration"),
    ("bot.detect", "bot.calibration"),
])
def test_layers_run_one_way(lower: str, higher: str):
    graph = _graph()
    reaches = sorted(f"{name} -> {target}" for name, targets in graph.items() if name.startswith(lower)
                     for target in targets if target == higher or target.startswith(higher + "."))
    assert reaches == []


def test_nothing_imports_a_private_name_across_packages():
    crossings = []
    for path in BOT.rglob("*.py"):
        package = _module_name(path).rpartition(".")[0]
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and module.rpartition(".")[0] != package:
                crossings.append(f"{_module_name(path)}: from {module} import {', '.join(private)}")
    assert crossings == []


def test_nothing_in_bot_imports_the_emulator():
    users = [f"{_module_name(path)} -> {module}" for path in BOT.rglob("*.py") for module, _ in _imports(path)
             if module == "hub_emulator" or module.startswith("hub_emulator.")]
    assert users == []


def test_importing_every_bot_module_leaves_the_emulator_unloaded():
    names = sorted(_module_name(path) for path in BOT.rglob("*.py") if path.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'hub_emulator' or m.startswith('hub_emulator.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
