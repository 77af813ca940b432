"""No import cycle among the package's modules: the module-level imports (those run at import time, not
the ones under `if TYPE_CHECKING:` or inside functions) form a graph without cycles.

Anyone can run the same check: `python -m pytest tests/unit/test_import_cycles.py -q`. The same file checks
that only the web layer (web/, the routers, app.py) imports `novita_gpu.web`, the layers, and that the
client distribution (novita_gpu_client, client/) imports nothing of the server."""

from __future__ import annotations

import ast
from pathlib import Path

import novita_gpu
import novita_gpu_client

ROOT = Path(novita_gpu.__file__).parent
CLIENT_ROOT = Path(novita_gpu_client.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_at_load(tree: ast.Module, package: str, modules: set[str], *, typing_too: bool = False) -> set[str]:
    """Modules imported when the module loads: not inside functions, nor under `if TYPE_CHECKING:`
    (unless `typing_too`)."""
    names: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if not typing_too and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join([*parts, node.module] if node.module else parts)
            # `from pkg import submodule` needs the submodule (its parent is loaded first anyway);
            # `from pkg import name` needs pkg itself.
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        pending.extend(ast.iter_child_nodes(node))
    return {n for n in names if n.startswith("novita_gpu")}


def graph(*, typing_too: bool = False) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = imported_at_load(ast.parse(path.read_text()), package, set(modules), typing_too=typing_too)
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_package_has_no_import_cycle_counting_type_hints() -> None:
    """Imports under `if TYPE_CHECKING:` are a dependency too: a cycle there is a tangle a reader follows."""
    cycle = find_cycle(graph(typing_too=True))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_nothing_below_the_entry_points_imports_the_app() -> None:
    """Not even for type hints: the services container has its own module (services.py)."""
    importers = sorted(name for name, targets in graph(typing_too=True).items() if "novita_gpu.app" in targets)
    assert all(name.startswith("novita_gpu.cli") for name in importers), importers


# The web layer: web/, the routers and the entry point app.py.
_WEB_LAYER_MODULES = {"novita_gpu.app"}


def in_web_layer(name: str) -> bool:
    return name.startswith("novita_gpu.web.") or name.endswith(".router") or name in _WEB_LAYER_MODULES


def imported_anywhere(tree: ast.Module, package: str) -> set[str]:
    """Every module an import names, wherever the import sits (in a function, under TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join([*parts, node.module] if node.module else parts)
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    return names


def test_only_the_web_layer_imports_web() -> None:
    """Services raise domain errors (errors.py) and return domain results, which web/errors.py alone turns
    into HTTP: below the routers nothing imports novita_gpu.web, not even lazily or for type hints."""
    importers = []
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        imported = imported_anywhere(ast.parse(path.read_text()), package)
        if not in_web_layer(name) and any(i == "novita_gpu.web" or i.startswith("novita_gpu.web.") for i in imported):
            importers.append(name)
    assert sorted(importers) == []


def test_the_web_layer_check_sees_lazy_imports() -> None:
    lazy = ast.parse("def f():\n    from novita_gpu.web.errors import ApiError\n")
    assert "novita_gpu.web.errors" in imported_anywhere(lazy, "novita_gpu.instances")
    relative = ast.parse("from ..web import errors\n")
    assert "novita_gpu.web.errors" in imported_anywhere(relative, "novita_gpu.instances")


# -- layers -------------------------------------------------------------------------------------------
# kit/ is the platform every domain stands on; the domain packages sit above it; web/, cli/, sdk/, the
# routers, services.py and app.py are the edges. A lower layer never imports a higher one, not even
# lazily or for type hints (docs/architecture.md).
KIT = "novita_gpu.kit"
# /health's checks read the whole assembled service, as the routers do.
EDGES = (
    "novita_gpu.web",
    "novita_gpu.cli",
    "novita_gpu.sdk",
    "novita_gpu.app",
    "novita_gpu.services",
    "novita_gpu.observability.health",
)


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def imports_of(name: str) -> set[str]:
    path = ROOT.parent / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT.parent / name.replace(".", "/") / "__init__.py"
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return {i for i in imported_anywhere(ast.parse(path.read_text()), package) if i.startswith("novita_gpu.")}


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    """`importer -> imported` for each import that goes up a layer."""
    found = []
    for name, imported in sorted(edges.items()):
        for target in sorted(imported):
            if target == "novita_gpu" or target.startswith(f"{name}."):
                continue
            if within(name, (KIT,)) and not within(target, (KIT,)):
                found.append(f"{name} -> {target} (the platform imports no domain and no edge)")
            elif not within(name, EDGES) and not in_web_layer(name) and within(target, EDGES):
                found.append(f"{name} -> {target} (a domain imports no edge)")
    return found


def all_imports() -> dict[str, set[str]]:
    return {module_name(p): imports_of(module_name(p)) for p in ROOT.rglob("*.py")}


def test_no_module_imports_a_higher_layer() -> None:
    assert layer_violations(all_imports()) == []


def test_the_layer_check_finds_each_kind_of_violation() -> None:
    assert layer_violations({"novita_gpu.kit.db": {"novita_gpu.instances.lifecycle"}}) == [
        "novita_gpu.kit.db -> novita_gpu.instances.lifecycle (the platform imports no domain and no edge)"
    ]
    assert layer_violations({"novita_gpu.instances.service": {"novita_gpu.cli.output"}}) == [
        "novita_gpu.instances.service -> novita_gpu.cli.output (a domain imports no edge)"
    ]
    assert layer_violations({"novita_gpu.instances.router": {"novita_gpu.web.deps"}}) == []


# -- the client distribution ----------------------------------------------------------------------------
# novita_gpu_client installs without the server (client/pyproject.toml: httpx only), so none of its modules
# may import novita_gpu, not even lazily or for type hints; the server imports the client, never the
# reverse. (Its command line loads the server's commands through entry points, which the server declares.)


def server_imports(sources: dict[str, str]) -> list[str]:
    """`module -> imported` for each import of novita_gpu in these client modules ({name: source}): each
    module named (`from a.b import c` names a.b and a.b.c, as `imported_anywhere` reads it)."""
    found = []
    for name, source in sorted(sources.items()):
        package = name if name.endswith(".__init__") else name.rsplit(".", 1)[0]
        for imported in sorted(imported_anywhere(ast.parse(source), package.removesuffix(".__init__"))):
            if imported == "novita_gpu" or imported.startswith("novita_gpu."):
                found.append(f"{name.removesuffix('.__init__')} -> {imported}")
    return found


def client_sources() -> dict[str, str]:
    return {
        ".".join(["novita_gpu_client", *path.relative_to(CLIENT_ROOT).with_suffix("").parts]): path.read_text()
        for path in CLIENT_ROOT.rglob("*.py")
    }


def test_the_client_imports_nothing_of_the_server() -> None:
    sources = client_sources()
    assert "novita_gpu_client.core" in sources and "novita_gpu_client.cli.session" in sources
    assert server_imports(sources) == []


def test_the_client_check_finds_any_import_of_the_server() -> None:
    assert server_imports(
        {
            "novita_gpu_client.results": "from novita_gpu.kit.retry_timing import parse_retry_after\n",
            "novita_gpu_client.cli.__init__": "from ..cli import session\nimport novita_gpu\n",
            "novita_gpu_client.cli.refs": "def f():\n    from novita_gpu.instances import schemas\n",
            "novita_gpu_client.core": "from novita_gpu_client import calls\nfrom . import results\n",
        }
    ) == [
        "novita_gpu_client.cli -> novita_gpu",
        "novita_gpu_client.cli.refs -> novita_gpu.instances",
        "novita_gpu_client.cli.refs -> novita_gpu.instances.schemas",
        "novita_gpu_client.results -> novita_gpu.kit.retry_timing",
        "novita_gpu_client.results -> novita_gpu.kit.retry_timing.parse_retry_after",
    ]
