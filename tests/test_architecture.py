"""The layout's rules, checked on the source: no import cycle among the project's modules,
bench's core never imports report (only the command line does), and CUDA specifics live in
bench/device.py alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("bench", "variants", "report")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its file (function-local imports too: they
    hide a cycle from the interpreter, not from the design)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                up = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                mod = ".".join(up + ([mod] if mod else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_only_the_command_line_imports_report() -> None:
    graph = _graph()
    importers = {m for m, deps in graph.items()
                 if not m.startswith("report") and any(d.startswith("report") for d in deps)}
    assert importers == {"bench.cli"}
    assert not any(d.startswith(("bench", "report")) for m, deps in graph.items()
                   if m.startswith("variants") for d in deps)


def test_cuda_only_in_the_device_module() -> None:
    """`grep -rn '"cuda"' bench variants report`: the device module and argument parsing."""
    hits = []
    for name, path in _modules().items():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"[\"']cuda[\"']|\.type == |torch\.cuda\.", line):
                hits.append((name, i, line.strip()))
    assert {h[0] for h in hits} <= {"bench.device"}, hits


# bench/ is one package in two layers. The library trains and records: a new application
# (a tracker export, another executor) is written against it. The applications drive it and
# may import each other; the library never imports an application.
LIBRARY = {
    "bench", "bench.config", "bench.data", "bench.datasets", "bench.device", "bench.engine",
    "bench.env", "bench.errors", "bench.fingerprint", "bench.fsio", "bench.idx", "bench.loop",
    "bench.metrics", "bench.packed", "bench.providers", "bench.records", "bench.resident",
    "bench.runner", "bench.safe_pickle", "bench.suites",
}


def test_the_library_never_imports_an_application() -> None:
    graph = _graph()
    bench_modules = {m for m in graph if m.startswith("bench")}
    apps = bench_modules - LIBRARY
    assert {"bench.cli", "bench.gate", "bench.perf", "bench.executor_ray", "bench.export",
            "bench.d2l"} <= apps
    assert LIBRARY <= bench_modules, "a library module was renamed: update LIBRARY"
    wrong = {(m, d) for m in LIBRARY for d in graph[m] if d in apps or d.startswith("report")}
    assert wrong == set()
