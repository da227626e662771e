"""The import boundaries of docs/architecture.md, checked in the test suite as in CI (.ci/run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
from django.conf import settings

PACKAGES = ("classify", "reviewer", "integrations", "dashboard", "config")


def test_the_import_contracts_hold():
    """pyproject.toml's contracts: pure pipeline and images, backends without the ORM or Celery,
    classify independent of reviewer, and the layers inside each app."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=settings.BASE_DIR, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_module_imports_itself_back():
    """No import cycle between project modules, not even through an import inside a function."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm, iterative, over the project's modules."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next((c for c in children if c.split(".")[0] in PACKAGES), None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == module:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[module] = min(low[module], index[child])
    return components
