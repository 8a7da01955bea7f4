"""The layer contract in pyproject.toml holds: imports go one way, without cycles or privates.

Every import statement counts, including those inside functions; only imports under
``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jupyter_features", "kernels_magic", "registry_client")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name → (file, is a package)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: anywhere in the module, but not under ``if TYPE_CHECKING``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges() -> tuple[dict[str, set[str]], list[str]]:
    """Module → project modules it imports; and every private name imported across modules."""
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for name, (path, is_package) in MODULES.items():
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [_known(a.name) for a in node.names]
                modules = [a.name for a in node.names]
            else:
                base = name if is_package else name.rpartition(".")[0]
                if node.level:
                    parts = base.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    module = ".".join(parts + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
                found = [_known(s) for s in subs] if len(subs) == len(node.names) else [_known(module)]
                found += [_known(s) for s in subs]
                modules = [module, *subs]
                if _known(module):
                    private += [
                        f"{name} imports {a.name} from {module}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
            targets |= {t for t in found if t and t != name}
            private += [
                f"{name} imports the private module {m}"
                for m in modules
                if _known(m) and any(p.startswith("_") and not p.startswith("__") for p in m.split("."))
            ]
        edges[name] = targets
    return edges, private


def _layers() -> list[dict[str, object]]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        layers: list[dict[str, object]] = tomllib.load(fh)["tool"]["jupyter-features"]["layers"]
    return layers


def _placement() -> dict[str, tuple[int, str]]:
    """Module → (layer index, 0 = top; the layer member it belongs to)."""
    members = [(i, str(m)) for i, layer in enumerate(_layers()) for m in layer["modules"]]  # type: ignore[attr-defined]
    out = {}
    for module in MODULES:
        matches = [
            (i, m)
            for i, m in members
            if module == m or (m != "jupyter_features" and module.startswith(m + "."))
        ]
        if matches:
            out[module] = max(matches, key=lambda im: len(im[1]))
    return out


EDGES, PRIVATE = _edges()
PLACEMENT = _placement()


def test_every_module_is_in_a_layer() -> None:
    assert sorted(set(MODULES) - set(PLACEMENT)) == []


def test_layers_only_import_downwards() -> None:
    layers = _layers()
    wrong = []
    for module, targets in EDGES.items():
        here, member = PLACEMENT[module]
        for target in sorted(targets):
            there, other = PLACEMENT[target]
            if there < here:
                wrong.append(f"{module} ({layers[here]['name']}) imports {target} ({layers[there]['name']})")
            elif there == here and other != member and layers[here].get("independent"):
                wrong.append(
                    f"{module} imports {target}: members of '{layers[here]['name']}' are independent"
                )
    assert wrong == []


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in EDGES.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_private_names_cross_modules() -> None:
    assert PRIVATE == []


@pytest.mark.parametrize("bad", ["import jupyter_features.workspace", "from ..workspace import Workspace"])
def test_the_check_sees_function_local_imports(bad: str) -> None:
    tree = ast.parse(f"def f():\n    {bad}\nif TYPE_CHECKING:\n    import jupyter_features.cli\n")
    seen = [ast.unparse(n) for n in _imports(tree)]
    assert seen == [bad]
