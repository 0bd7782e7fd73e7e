"""The layout promises of the README: one package imports TFF, and bad input is cheap."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_tff_backend_imports_tensorflow_federated() -> None:
    importers = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "fedlab").rglob("*.py")
        if any(m.split(".")[0] == "tensorflow_federated" for m in _imported_modules(path))
    }
    assert importers, "fedlab must use TFF somewhere"
    assert all(p.startswith("fedlab/backends/tff/") for p in importers), importers


def test_error_formatting_and_config_do_not_import_tensorflow() -> None:
    # A bad value must be reported in seconds, before TensorFlow (~15 s to import here) loads.
    for module in (
        "config.py",
        "errors.py",
        "describe.py",
        "validation.py",
        "plugin.py",
        "__main__.py",
    ):
        top_level = {m.split(".")[0] for m in _imported_modules(REPO / "fedlab" / module)}
        assert "tensorflow" not in top_level, module
        assert "tensorflow_federated" not in top_level, module


PLUGIN_PACKAGES = (
    "algorithms",
    "aggregators",
    "optimizers",
    "models",
    "data",
    "privacy",
    "compression",
    "attacks",
)


def _imported_at_import_time(source: str) -> set[str]:
    """The modules that running ``source`` as a module imports: every import statement outside
    function bodies (a class body or a top-level ``try``/``if`` runs at import too), except
    under ``if TYPE_CHECKING:``."""
    names: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit(children)

    visit(ast.parse(source).body)
    return names


def test_the_import_time_check_sees_what_runs_at_import() -> None:
    found = _imported_at_import_time(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import tensorflow as tf\n"
        "try:\n    import tensorflow_federated\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import keras\n"
        "class A:\n    import numpy\n"
        "def f():\n    import optuna\n"
    )
    assert found == {"__future__", "typing", "tensorflow", "tensorflow_federated", "numpy"}


def test_plug_in_modules_do_not_import_tensorflow_at_import_time() -> None:
    # The registries import every plug-in module to check a config's names before TensorFlow
    # (~15 s to import here) loads; building a model or training may import it inside functions.
    paths = [REPO / "fedlab" / "plugin.py"]
    for package in PLUGIN_PACKAGES:
        paths.extend(sorted((REPO / "fedlab" / package).rglob("*.py")))
    assert REPO / "fedlab" / "models" / "cnn.py" in paths
    importers = {}
    for path in paths:
        imported = {m.split(".")[0] for m in _imported_at_import_time(path.read_text())}
        if heavy := imported & {"tensorflow", "tensorflow_federated"}:
            importers[path.relative_to(REPO).as_posix()] = sorted(heavy)
    assert importers == {}


def _imported_at_run_time(*args: str, cwd: Path) -> set[str]:
    """Every module ``python -m fedlab ARGS`` imports (``-X importtime``)."""
    import subprocess
    import sys

    from tests.conftest import cli_env

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fedlab", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


def test_composing_a_config_imports_no_cluster_library(tmp_path: Path) -> None:
    # Ray (about 1 s to import) and submitit are for hydra/launcher=ray / submitit_* only.
    modules = _imported_at_run_time("--cfg", "job", cwd=tmp_path)
    assert "hydra" in modules
    assert not {m for m in modules if m.split(".")[0] in ("ray", "submitit", "psycopg2")}


def test_composing_a_ray_placement_imports_no_ray(tmp_path: Path) -> None:
    # placement=ray is a config like any other until a run starts its actors.
    modules = _imported_at_run_time("--cfg", "job", "placement=ray", cwd=tmp_path)
    assert not {m for m in modules if m.split(".")[0] == "ray"}


def test_a_plain_local_run_imports_no_ray(tmp_path: Path) -> None:
    # The cost of placement=ray is paid only by runs that choose it: a local run of engine=fast
    # imports neither Ray nor the module that drives the actors; nor TFF, which only engine=tff
    # needs (tests/test_packaging.py runs it where importing TFF fails).
    modules = _imported_at_run_time(
        "engine=fast", "model=logreg", "rounds=1", "C=0.05", "tracking=none",
        "checkpoint_every=0", cwd=tmp_path,
    )  # fmt: skip
    assert "fedlab.backends.fast.engine" in modules  # it did run the rounds
    assert not {m for m in modules if m.split(".")[0] in ("ray", "submitit", "psycopg2")}
    assert "fedlab.backends.fast.placement" not in modules
    assert not {m for m in modules if m.split(".")[0] == "tensorflow_federated"}


def test_only_the_ray_placement_imports_ray() -> None:
    # fedlab.sweep reads sys.modules to learn whether a Ray launcher runs the job; it never
    # imports Ray itself.
    importers = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "fedlab").rglob("*.py")
        if any(m.split(".")[0] == "ray" for m in _imported_modules(path))
    }
    assert importers == {"fedlab/backends/fast/placement.py"}, importers


def _import_graph() -> dict[str, set[str]]:
    """fedlab's modules and, for each, the fedlab modules it imports anywhere in its file
    (function-local imports included): ``from pkg import name`` is an edge to ``pkg`` (its
    ``__init__``), ``from pkg import submodule`` and ``import pkg.submodule`` to the submodule."""
    modules = {}
    for path in (REPO / "fedlab").rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                submodules = [
                    f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules
                ]
                names = [a.name for a in node.names if f"{base}.{a.name}" not in modules]
                targets = submodules + ([base] if names else [])
            for target in targets:
                while target and target not in modules:  # a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_fedlabs_modules() -> None:
    """Function-local imports included: a cycle dodged by importing inside a function is still
    a cycle of the design (the issue-19 refactor removed the last ones)."""
    graph = _import_graph()
    assert "fedlab.errors" in graph and "fedlab.experiment" in graph["fedlab.__main__"]
    assert graph["fedlab.errors"] == set()  # the ground floor imports nothing of fedlab
    assert _cycles(graph) == []
