"""The package's layout rules, checked from source (nothing is imported):

* no import cycle inside ``lmi_gevent``: every import counts, at module level or inside a
  function, except those under ``if TYPE_CHECKING:``;
* no module takes another module's private names (``from .x import _y``, ``x._y``);
* the emulator imports nothing of the runtime: it is an independent check of the runtime, so
  it states the platform's rules itself.

    python tools/layout_check.py        exit 1 and one line per problem, or exit 0
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lmi_gevent"
EMULATOR = f"{PACKAGE}.emulator"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs, skipping the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    here = module.split(".") if is_package else module.split(".")[:-1]
    here = here[: len(here) - node.level + 1]
    return ".".join(here + ([node.module] if node.module else []))


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The package module ``name`` is or lives in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


class Module:
    def __init__(self, name: str, path: Path, known: dict[str, Path]) -> None:
        self.name = name
        self.is_package = path.name == "__init__.py"
        self.tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        self.known = known
        self.depends: set[str] = set()
        self.module_aliases: dict[str, str] = {}  # local name -> package module it names
        self.private_imports: list[str] = []
        for node in _runtime_imports(self.tree):
            self._note(node)

    def _note(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name, self.known)
                if target:
                    self._depend(target)
                    if alias.asname:
                        self.module_aliases[alias.asname] = alias.name
            return
        base = _base(self.name, self.is_package, node)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in self.known:  # a submodule: `from . import x`
                self._depend(full)
                self.module_aliases[alias.asname or alias.name] = full
                continue
            target = _owner(base, self.known)
            if target:
                self._depend(target)
                if alias.name.startswith("_") and not alias.name.startswith("__") \
                        and target != self.name:
                    self.private_imports.append(f"{alias.name} from {target}")

    def _depend(self, target: str) -> None:
        # A package's own __init__, run implicitly by importing a submodule, is no edge.
        if target != self.name and not self.name.startswith(target + "."):
            self.depends.add(target)

    def private_reads(self) -> list[str]:
        """``alias._name`` where alias names another package module."""
        reads = []
        for node in ast.walk(self.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in self.module_aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                reads.append(f"{self.module_aliases[node.value.id]}.{node.attr} "
                             f"(line {node.lineno})")
        return reads


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def problems(root: Path = ROOT) -> list[str]:
    known = modules(root)
    parsed = {name: Module(name, path, known) for name, path in known.items()}
    found = [f"import cycle: {' <-> '.join(component)}"
             for component in cycles({name: m.depends for name, m in parsed.items()})]
    for name, module in sorted(parsed.items()):
        if name == EMULATOR or name.startswith(EMULATOR + "."):
            found += [f"{name} imports {target}, outside the emulator" for target in
                      sorted(module.depends) if not target.startswith(EMULATOR)
                      and target != PACKAGE]
        found += [f"{name} imports the private {what}" for what in module.private_imports]
        found += [f"{name} reads the private {what}" for what in module.private_reads()]
    return found


if __name__ == "__main__":
    listed = problems()
    for line in listed:
        print(line)
    print(f"{len(listed)} layout problem(s) in {PACKAGE}")
    sys.exit(1 if listed else 0)
