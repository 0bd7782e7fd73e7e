"""fedlab as a package: what the wheel holds, what it declares, and what runs without the extras.

The slow test builds the wheel, installs it into a fresh virtual environment from the lock's
exact versions (the base only, then ``[tff]``) and runs the console scripts from a directory
outside the checkout, as a researcher who installed fedlab would.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from importlib.resources import files
from pathlib import Path

import pytest

from fedlab import backends
from tests.conftest import CONF, REPO, cli_env

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
DIST = PROJECT["name"]
TINY = ["model=logreg", "rounds=1", "C=0.05", "tracking=none", "checkpoint_every=0"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_wheel_lists_every_package_and_maps_conf_into_it() -> None:
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "fedlab").rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == on_disk | {"fedlab.conf"}, "pyproject.toml's packages: add or remove these"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"fedlab.conf": "conf"}
    # The checkout's editable install reads the same folder as the CLI (pkg://fedlab.conf).
    assert Path(str(files("fedlab.conf"))).resolve() == CONF.resolve()


def test_the_console_scripts_and_the_extras_name() -> None:
    assert PROJECT["scripts"] == {
        "fedlab": "fedlab.__main__:main",
        "fedlab-report": "fedlab.report.cli:main",
    }
    assert backends.DISTRIBUTION == DIST
    extras = PROJECT["optional-dependencies"]
    for _module, _what, extra, _instead in backends.OPTIONAL.values():
        assert extra in extras


def _imports(path: Path) -> set[str]:
    """Top-level modules ``path`` imports, or finds by name (``importlib.util.find_spec``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "find_spec"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {name.split(".")[0] for name in found} - set(sys.stdlib_module_names) - {"fedlab"}


def test_every_package_fedlab_imports_is_declared_where_it_is_needed() -> None:
    # A module of an extra's corner may use that extra's packages; everything else only the base.
    corners = {"fedlab/backends/tff/": "tff", "fedlab/backends/fast/placement.py": "cluster"}
    base = {_name(r) for r in PROJECT["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in PROJECT["optional-dependencies"].items()}
    providers = packages_distributions()
    undeclared = {}
    for path in sorted((REPO / "fedlab").rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        extra = next((e for prefix, e in corners.items() if where.startswith(prefix)), None)
        allowed = base | extras.get(extra, set())
        for module in _imports(path):
            dists = {_name(d) for d in providers.get(module, [])}
            assert dists, f"{where} imports {module}, which no installed distribution provides"
            if not dists & allowed:
                undeclared[f"{where}: {module}"] = sorted(dists)
    assert undeclared == {}, "declare these in pyproject.toml (the base or the file's extra)"


def test_a_missing_extra_is_one_line_naming_it(monkeypatch) -> None:
    for choice, (module, what, extra, instead) in backends.OPTIONAL.items():
        backends.check_installed(choice)  # installed here (the dev group has every extra)
        monkeypatch.setitem(sys.modules, module, None)  # as Python marks a module not there
        with pytest.raises(backends.NotInstalledError) as err:
            backends.check_installed(choice)
        assert str(err.value) == (
            f"{choice} needs {what}, which is not installed here: "
            f"pip install '{DIST}[{extra}]'; allowed without it: {instead}"
        )
    backends.check_installed("engine=fast")


# ``python -m fedlab`` where importing tensorflow_federated fails, as where it is not installed:
# a None in sys.modules makes ``import`` raise ModuleNotFoundError and ``find_spec`` return None.
WITHOUT_TFF = (
    "import runpy, sys; sys.modules['tensorflow_federated'] = None; "
    "runpy.run_module('fedlab', run_name='__main__', alter_sys=True)"
)


def test_without_tff_engine_fast_runs_and_engine_tff_is_one_line(tmp_path) -> None:
    def fedlab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", WITHOUT_TFF, *args],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )

    fast = fedlab(*TINY)
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert fast.stdout.startswith("After 1 rounds: final test accuracy"), fast.stdout
    tff = fedlab("engine=tff", *TINY)
    assert tff.returncode == 2, tff.stderr[-3000:]
    assert tff.stderr.strip().splitlines() == [
        f"fedlab: error: engine=tff needs TensorFlow Federated, which is not installed here: "
        f"pip install '{DIST}[tff]'; allowed without it: engine=fast"
    ]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_the_wheel_installs_from_the_lock_and_runs_outside_the_checkout(tmp_path) -> None:
    uv = Path(sys.executable).with_name("uv")  # the dev group's
    # The wheel, built from the sdist as an installer does (and no build/ left in the checkout):
    # the package, the configs mapped into it, TFF's worker shim, the two commands.
    _run(uv, "build", "--out-dir", tmp_path / "dist", REPO, cwd=REPO)
    (wheel,) = (tmp_path / "dist").glob("fedlab_hydra-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    configs = {f"fedlab/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert "fedlab/backends/tff/loopback_bind.c" in names
    assert "fedlab = fedlab.__main__:main" in scripts
    assert "fedlab-report = fedlab.report.cli:main" in scripts

    # The base from the lock's exact versions (no extras), then the wheel, neither resolved again:
    # --no-deps is how the lock's overrides reach an installer that cannot read them.
    def export(*extras: str) -> Path:
        out = tmp_path / f"requirements{''.join('-' + e for e in extras)}.txt"
        flags = [f"--extra={e}" for e in extras]
        _run(uv, "export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project", *flags,
             "--output-file", out, cwd=REPO)  # fmt: skip
        return out

    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(uv, "venv", "--python", sys.executable, venv, cwd=tmp_path)
    _run(uv, "pip", "install", "--python", python, "--no-deps", "-r", export(), cwd=tmp_path)
    _run(uv, "pip", "install", "--python", python, "--no-deps", wheel, cwd=tmp_path)

    # From a directory outside the checkout, with nothing of it on the path.
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in cli_env().items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the shim is compiled from the wheel's copy
    where = _run(python, "-c", "import fedlab; print(fedlab.__file__)", cwd=work, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    fedlab, report = venv / "bin" / "fedlab", venv / "bin" / "fedlab-report"
    assert "engine" in _run(fedlab, "--help", cwd=work, env=env).stdout
    job = _run(fedlab, "--cfg", "job", *TINY, cwd=work, env=env).stdout
    assert "name: logreg" in job and "rounds: 1" in job
    ran = _run(fedlab, *TINY, cwd=work, env=env).stdout
    assert ran.startswith("After 1 rounds: final test accuracy"), ran
    assert "--experiment" in _run(report, "--help", cwd=work, env=env).stdout
    refused = subprocess.run(
        [fedlab, "engine=tff", *TINY], cwd=work, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"fedlab: error: engine=tff needs TensorFlow Federated, which is not installed here: "
        f"pip install '{DIST}[tff]'; allowed without it: engine=fast"
    ]

    # [tff] added: engine=tff runs from the wheel, its worker shim built from the wheel's source.
    _run(uv, "pip", "install", "--python", python, "--no-deps", "-r", export("tff"), cwd=tmp_path)
    ran = _run(fedlab, "engine=tff", *TINY, cwd=work, env=env).stdout
    assert ran.startswith("After 1 rounds: final test accuracy"), ran
    assert list((tmp_path / "cache" / "fedlab").glob("loopback_bind-*.so"))
