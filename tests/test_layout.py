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


def test_only_fedlab_tff_imports_tensorflow_federated() -> None:
    importers = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "fedlab").rglob("*.py")
        if any(m.split(".")[0] == "tensorflow_federated" for m in _imported_modules(path))
    }
    assert importers, "fedlab must use TFF somewhere"
    assert all(p.startswith("fedlab/tff/") for p in importers), importers


def test_error_formatting_and_config_do_not_import_tensorflow() -> None:
    # A bad value must be reported in seconds, before TensorFlow (~15 s to import here) loads.
    for module in ("config.py", "errors.py", "__main__.py"):
        top_level = {m.split(".")[0] for m in _imported_modules(REPO / "fedlab" / module)}
        assert "tensorflow" not in top_level, module
        assert "tensorflow_federated" not in top_level, module


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
