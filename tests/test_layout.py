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
    for module in ("config.py", "errors.py", "__main__.py"):
        top_level = {m.split(".")[0] for m in _imported_modules(REPO / "fedlab" / module)}
        assert "tensorflow" not in top_level, module
        assert "tensorflow_federated" not in top_level, module
